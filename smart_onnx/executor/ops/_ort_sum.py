"""A float32 sum over the last axis in onnxruntime's order, for ReduceSum and ReduceMean.

onnxruntime's CPU reductions over the last axis sum each row with Eigen's vectorised
reduction (packets of 4 floats, two accumulators, the unaligned head and the tail added
one by one after the packets). torch sums in another order. A decomposed LayerNorm that
computes ``E[x^2] - E[x]^2`` cancels almost every digit, so a different order alone moves
the normalised output by about 1e-4 of its scale; summing in the same order makes the two
agree bit for bit. Rows are assumed to start at a 16-byte aligned buffer, as onnxruntime's
allocator gives.
"""

from __future__ import annotations

import torch

__all__ = ["ort_order_sum"]

_PACKET = 4  # floats per SSE/NEON packet


def _row_sum(x: torch.Tensor, start: int) -> torch.Tensor:
    """Eigen's redux for rows whose first aligned element is at ``start`` (keepdim on the last axis)."""
    n = x.shape[-1]
    end = start + (n - start) // _PACKET * _PACKET
    end2 = start + (n - start) // (2 * _PACKET) * (2 * _PACKET)
    if end <= start:  # no whole packet: a plain left-to-right sum
        out = x[..., 0:1]
        for i in range(1, n):
            out = out + x[..., i:i + 1]
        return out
    acc = x[..., start:start + _PACKET]
    if end - start > _PACKET:
        acc1 = x[..., start + _PACKET:start + 2 * _PACKET]
        for i in range(start + 2 * _PACKET, end2, 2 * _PACKET):
            acc = acc + x[..., i:i + _PACKET]
            acc1 = acc1 + x[..., i + _PACKET:i + 2 * _PACKET]
        acc = acc + acc1
        if end > end2:
            acc = acc + x[..., end2:end2 + _PACKET]
    out = (acc[..., 0:1] + acc[..., 2:3]) + (acc[..., 1:2] + acc[..., 3:4])
    for i in [*range(start), *range(end, n)]:
        out = out + x[..., i:i + 1]
    return out


def ort_order_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over the last axis (kept as size 1) in onnxruntime's float32 order."""
    n = x.shape[-1]
    x = x.contiguous()
    if n % _PACKET == 0:
        return _row_sum(x, 0)
    rows = torch.arange(x.numel() // max(n, 1), device=x.device).reshape(*x.shape[:-1], 1)
    start = (-(rows * n)) % _PACKET  # where each row's first aligned element is
    out = torch.zeros((*x.shape[:-1], 1), dtype=x.dtype, device=x.device)
    for s in range(_PACKET):
        out = torch.where(start == s, _row_sum(x, s), out)
    return out
