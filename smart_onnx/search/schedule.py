"""Temperature schedule of the structural search."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["ExponentialTemperature"]


@dataclass(frozen=True)
class ExponentialTemperature:
    """tau(step) decays exponentially from ``start`` to ``end`` over ``steps``.

    The decreasing temperature is what lets the mask leave non-sparse local minima
    early (soft, many units half-on) and settle near a hard top-k at the end.
    """

    start: float
    end: float
    steps: int

    def __call__(self, step: int) -> float:
        if self.steps <= 1:
            return self.end
        frac = min(max(step / (self.steps - 1), 0.0), 1.0)
        return self.start * math.exp(frac * math.log(self.end / self.start))
