"""Light augmentation of image and token inputs, for distillation from a small calibration set.

With tens of samples the student memorises the teacher's answers on exactly those inputs;
a random resized crop, a horizontal flip and a little noise show it new inputs every step,
and the teacher answers them too, so no label is needed. Applied on the batch in torch
(one affine resampling for the whole batch), to float rank-4 inputs only.

Token ids (integer inputs that pick rows of an embedding table) get the text counterpart:
each id is replaced, with a small probability, by a row of its table drawn uniformly, as
BERT's pre-training does. Sixty sentences hold about a thousand tokens; a 3-layer encoder
pruned on them reproduced them to cosine 0.9999 and held-out sentences to 0.87.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from smart_onnx.data._dataset import Dataset
from smart_onnx.model import InputSpec

__all__ = ["AUGMENT_BELOW", "TOKEN_RATE", "Augmenter", "ImageAugmenter", "TokenAugmenter", "augmented_views"]

# Calibration sets smaller than this are augmented by default.
AUGMENT_BELOW = 500
# The fraction of token ids replaced by random rows of their table.
TOKEN_RATE = 0.15


class ImageAugmenter:
    """Random resized crop (area ``scale``, aspect ``ratio``), horizontal flip, Gaussian noise.

    Args:
        inputs: the model's inputs; float rank-4 ones whose channel axis (1 or 3) has 1 or 3
            channels are augmented, others pass through unchanged.
        seed: the random stream (one generator, so a run is reproducible).
        scale: range of the crop's area as a fraction of the image.
        ratio: range of the crop's aspect ratio.
        noise: noise standard deviation as a fraction of the batch's standard deviation.
    """

    def __init__(self, inputs: Sequence[InputSpec], seed: int = 0, *, scale: tuple[float, float] = (0.5, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: bool = True, noise: float = 0.02) -> None:
        self.channels_first = {}
        for spec in inputs:
            if spec.is_float() and spec.rank == 4:
                if spec.shape[1] in (1, 3):
                    self.channels_first[spec.name] = True
                elif spec.shape[3] in (1, 3):
                    self.channels_first[spec.name] = False
        self.generator = torch.Generator().manual_seed(seed)
        self.scale, self.ratio, self.flip, self.noise = scale, ratio, flip, noise

    @property
    def active(self) -> bool:
        """Whether any input is an image this augmenter changes."""
        return bool(self.channels_first)

    def __call__(self, feeds: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: self._augment(v, self.channels_first[k]) if k in self.channels_first else v
                for k, v in feeds.items()}

    def _uniform(self, n: int, lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=self.generator, dtype=torch.float64)

    def _augment(self, x: torch.Tensor, channels_first: bool) -> torch.Tensor:
        images = x if channels_first else x.permute(0, 3, 1, 2)
        n = images.shape[0]
        area = self._uniform(n, *self.scale)
        aspect = torch.exp(self._uniform(n, math.log(self.ratio[0]), math.log(self.ratio[1])))
        sx = torch.sqrt(area * aspect).clamp(max=1.0)  # crop width / image width
        sy = torch.sqrt(area / aspect).clamp(max=1.0)
        tx = (1 - sx) * self._uniform(n, -1.0, 1.0)  # the crop stays inside the image
        ty = (1 - sy) * self._uniform(n, -1.0, 1.0)
        flip = torch.where(torch.rand(n, generator=self.generator) < 0.5, -1.0, 1.0).double() if self.flip else 1.0
        theta = torch.zeros(n, 2, 3, dtype=torch.float64)
        theta[:, 0, 0], theta[:, 0, 2] = sx * flip, tx
        theta[:, 1, 1], theta[:, 1, 2] = sy, ty
        grid = F.affine_grid(theta.to(images), list(images.shape), align_corners=False)
        out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
        if self.noise > 0:
            noise = torch.randn(out.shape, generator=self.generator, dtype=torch.float32).to(out)
            out = out + self.noise * float(images.std()) * noise
        return out if channels_first else out.permute(0, 2, 3, 1).contiguous()


class TokenAugmenter:
    """Each token id replaced, with probability ``rate``, by a row of its table drawn uniformly.

    Args:
        tables: input name -> the rows of the embedding table its ids index (see graph/tables.py
            ``token_inputs``); other inputs pass through unchanged.
        seed: the random stream.
        rate: the probability of replacing each id.
    """

    def __init__(self, tables: Mapping[str, int], seed: int = 0, *, rate: float = TOKEN_RATE) -> None:
        self.tables = {name: rows for name, rows in tables.items() if rows > 0}
        self.generator = torch.Generator().manual_seed(seed)
        self.rate = rate

    @property
    def active(self) -> bool:
        """Whether any input holds token ids this augmenter changes."""
        return bool(self.tables) and self.rate > 0

    def __call__(self, feeds: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = dict(feeds)
        for name, rows in self.tables.items():
            ids = out.get(name)
            if ids is None:
                continue
            replace = torch.rand(ids.shape, generator=self.generator) < self.rate
            drawn = torch.randint(0, rows, ids.shape, generator=self.generator, dtype=torch.int64)
            out[name] = torch.where(replace.to(ids.device), drawn.to(ids), ids)
        return out


class Augmenter:
    """Image and token augmentation together: each changes its own inputs, in turn."""

    def __init__(self, inputs: Sequence[InputSpec], tables: Mapping[str, int], seed: int = 0) -> None:
        self.inputs, self.tables = inputs, tables
        self.parts = [a for a in (ImageAugmenter(inputs, seed), TokenAugmenter(tables, seed)) if a.active]

    def reseeded(self, seed: int) -> Augmenter:
        """The same augmentation of the same inputs, drawn from another random stream."""
        return Augmenter(self.inputs, self.tables, seed)

    @property
    def active(self) -> bool:
        """Whether any input is one this augmenter changes."""
        return bool(self.parts)

    @property
    def kinds(self) -> list[str]:
        """What is augmented: ``image``, ``tokens`` (the refit takes views of token inputs only)."""
        return ["image" if isinstance(a, ImageAugmenter) else "tokens" for a in self.parts]

    def __call__(self, feeds: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = dict(feeds)
        for part in self.parts:
            out = part(out)
        return out


def augmented_views(data: Dataset, augmenter: Augmenter | ImageAugmenter, batch_size: int = 64) -> Dataset:
    """One fixed augmented view of every sample of ``data`` (labels kept), drawn once from ``augmenter``.

    Inputs the model was not fitted on, for judging a fine-tune when the samples are too few to
    hold any out: the refit solves its least squares on exactly the calibration samples, so on
    those it is the best any weights can do, and a check on them would always choose it.
    """
    parts: dict[str, list[np.ndarray]] = {k: [] for k in data.arrays}
    for batch in data.batches(batch_size):
        views = augmenter({k: torch.from_numpy(np.ascontiguousarray(a)) for k, a in batch.inputs.items()})
        for k, v in views.items():
            parts[k].append(v.numpy())
    return Dataset({k: np.concatenate(v) for k, v in parts.items()}, data.labels,
                   f"augmented views of {data.source}")
