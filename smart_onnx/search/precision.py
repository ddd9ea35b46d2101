"""Mixed precision on CUDA: the executor's forward passes under autocast, scores, masks and losses in fp32.

``precision="auto"`` on a CUDA device runs the student's and the teacher's forward passes under
``torch.autocast``: bfloat16 where the GPU supports it (no loss scaling needed), else float16
with a :class:`torch.amp.GradScaler` (the loss scaled before backward, the steps unscaled and
skipped while gradients overflow, as every rank sees the same all-reduced gradients). The
weights stay fp32 parameters (autocast casts per op), and the unit scores, the soft mask and
the losses are computed outside autocast in fp32. On the CPU, and with ``precision="fp32"``,
nothing changes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence

import torch

__all__ = ["PRECISIONS", "Precision", "autocast_dtype", "to_fp32"]

PRECISIONS = ("auto", "fp32")


def autocast_dtype(device: str | torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype for ``device``: None on CPU or with ``fp32``; bf16 where CUDA supports it, else fp16."""
    device = torch.device(device)
    if precision == "fp32" or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


class Precision:
    """Autocast and loss scaling for one run (see the module docstring)."""

    def __init__(self, device: str | torch.device, precision: str = "auto") -> None:
        self.device = torch.device(device)
        self.dtype = autocast_dtype(self.device, precision)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.dtype == torch.float16 else None

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """The forward passes' context: autocast to :attr:`dtype`, or nothing."""
        if self.dtype is None:
            yield
            return
        with torch.autocast(device_type=self.device.type, dtype=self.dtype):
            yield

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, optimizers: Sequence[torch.optim.Optimizer]) -> None:
        if self.scaler is None:
            for optimizer in optimizers:
                optimizer.step()
            return
        for optimizer in optimizers:
            self.scaler.step(optimizer)
        self.scaler.update()


def to_fp32(values: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Floating tensors cast to fp32 (what autocast left in half precision), others as they are."""
    return {k: v.float() if v.dtype in (torch.float16, torch.bfloat16) else v for k, v in values.items()}
