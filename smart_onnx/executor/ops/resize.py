"""Resize (opset 11-19) and Upsample (opset 9), computed exactly as onnxruntime does.

Each resized axis is interpolated separately: source coordinates come from the ONNX
coordinate transformation evaluated in float32 (as onnxruntime does, so ties round the
same way), turned into taps (source index, weight) for nearest, linear or cubic mode,
and gathered with ``index_select``. This is differentiable and exact for every mode,
antialiasing (opset 18) included.

Known difference: with ``half_pixel_symmetric`` (opset 19), nearest mode and a
fractional scale, onnxruntime rounds source coordinates that lie a few ulps above
``k + 0.5`` down to ``k``; this module rounds them to ``k + 1`` as the formula says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from smart_onnx.errors import GraphError
from smart_onnx.executor.base import NodeContext, OpModule
from smart_onnx.executor.registry import register

__all__: list[str] = []  # handlers are reached through the registry

_F = np.float32
_COORDS = ("half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel", "tf_half_pixel_for_nn",
           "tf_crop_and_resize", "half_pixel_symmetric")  # fmt: skip
_NEAREST = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
_MODES = ("nearest", "linear", "cubic")
_POLICIES = ("stretch", "not_larger", "not_smaller")


@dataclass(frozen=True)
class _Config:
    mode: str = "nearest"
    coord: str = "half_pixel"
    nearest: str = "round_prefer_floor"  # "simple": Upsample's truncation
    cubic_a: float = -0.75
    exclude_outside: bool = False
    extrapolation: float = 0.0
    axes: tuple[int, ...] | None = None
    policy: str = "stretch"
    antialias: bool = False


def _source_coords(cfg: _Config, out_len: int, scale: np.float32, in_len: int, roi: tuple[float, float]) -> np.ndarray:
    """Float32 source coordinate of every output index along one axis."""
    x = np.arange(out_len, dtype=_F)
    half = _F(0.5)
    if cfg.coord in ("half_pixel", "pytorch_half_pixel"):
        if cfg.coord == "pytorch_half_pixel" and out_len <= 1:
            return np.zeros_like(x)
        return (x + half) / scale - half
    if cfg.coord == "asymmetric":
        return x / scale
    if cfg.coord == "tf_half_pixel_for_nn":
        return (x + half) / scale
    if cfg.coord == "align_corners":
        return np.zeros_like(x) if out_len == 1 else x * _F(in_len - 1) / _F(out_len - 1)
    if cfg.coord == "tf_crop_and_resize":
        start, end = _F(roi[0]), _F(roi[1])
        if out_len == 1:
            return np.full_like(x, _F(0.5 * (float(start) + float(end)) * (in_len - 1)))
        return start * _F(in_len - 1) + (x * (end - start) * _F(in_len - 1)) / _F(out_len - 1)
    # half_pixel_symmetric: onnxruntime mixes float and double here; mirror it.
    adjustment = _F(out_len) / (scale * _F(in_len))
    offset = float((_F(in_len) / _F(2)) * (_F(1) - adjustment))
    return (offset + (x.astype(np.float64) + 0.5) / float(scale) - 0.5).astype(_F)


def _round_half_away(v: np.ndarray) -> np.ndarray:
    v64 = v.astype(np.float64)
    return np.sign(v64) * np.floor(np.abs(v64) + 0.5)


def _nearest_index(mode: str, orig: np.ndarray, downsample: bool) -> np.ndarray:
    if mode == "round_prefer_floor":
        tie = orig == np.trunc(orig) + _F(0.5)
        idx = np.where(tie, np.floor(orig), _round_half_away(orig))
    elif mode == "round_prefer_ceil":
        idx = _round_half_away(orig)
    elif mode == "floor":
        idx = np.floor(orig)
    elif mode == "ceil" or downsample:
        idx = np.ceil(orig)
    else:  # simple, upsampling
        idx = np.trunc(orig)
    return idx.astype(np.int64)


def _cubic_coeffs(s: np.ndarray, a: np.float32) -> list[np.ndarray]:
    one, two = _F(1), _F(2)
    s1, s2, s3 = s + one, one - s, two - s
    return [
        ((a * s1 - 5 * a) * s1 + 8 * a) * s1 - 4 * a,
        ((a + 2) * s - (a + 3)) * s * s + one,
        ((a + 2) * s2 - (a + 3)) * s2 * s2 + one,
        ((a * s3 - 5 * a) * s3 + 8 * a) * s3 - 4 * a,
    ]


def _filter(cfg: _Config, v: np.ndarray) -> np.ndarray:
    """The antialiasing kernel (Pillow's triangle or Keys cubic) at float32 distances ``v``."""
    v, a = np.abs(v), _F(cfg.cubic_a)
    if cfg.mode == "linear":
        return np.where(v < 1, _F(1) - v, _F(0))
    inner = ((a + 2) * v - (a + 3)) * v * v + _F(1)
    return np.where(v < 1, inner, np.where(v < 2, (((v - 5) * v + 8) * v - 4) * a, _F(0)))


def _antialias_taps(cfg: _Config, orig: np.ndarray, in_len: int, rscale: np.float32) -> list[tuple[np.ndarray, ...]]:
    """onnxruntime's antialiased weights: the kernel stretched by 1/scale when downsampling; with
    exclude_outside=0, the weight of taps outside the input folds onto the edge samples."""
    scale = _F(1) / rscale
    support = _F(1 if cfg.mode == "linear" else 2) * max(scale, _F(1))
    window = int(np.ceil(support)) * 2 + 1
    inv = _F(1) / scale if scale >= 1 else _F(1)
    starts = np.zeros(len(orig), np.int64)
    weights = np.zeros((len(orig), window), _F)
    for i, center in enumerate(orig + _F(0.5)):
        lo, hi = int(np.floor(center - support + _F(0.5))), int(np.floor(center + support + _F(0.5)))
        hi = lo + min(max(hi - lo, 0), window)
        lo_cut, hi_cut = min(max(lo, 0), in_len), min(max(hi, 0), in_len)
        a, n = (lo_cut, hi_cut - lo_cut) if cfg.exclude_outside else (lo, hi - lo)
        buf = np.zeros(window, _F)
        buf[:n] = _filter(cfg, (np.arange(a, a + n).astype(_F) - center + _F(0.5)) * inv)
        total = buf[:n].sum(dtype=_F)
        if not cfg.exclude_outside and lo_cut < hi_cut:
            neg, bound = min(max(-a, 0), n - 1), min(max(n + a - in_len, 0), n - 1)
            buf[neg] += buf[:neg].sum(dtype=_F)
            buf[n - bound - 1] += buf[n - bound : n].sum(dtype=_F)
            buf[: hi_cut - lo_cut] = buf[neg : neg + hi_cut - lo_cut].copy()
        weights[i, : hi_cut - lo_cut] = buf[: hi_cut - lo_cut] * (_F(1) if total == 0 else _F(1) / total)
        starts[i] = lo_cut
    return [(np.clip(starts + k, 0, in_len - 1), weights[:, k]) for k in range(window)]


def _taps(cfg: _Config, orig: np.ndarray, in_len: int, scale: np.float32) -> list[tuple[np.ndarray, np.ndarray]]:
    """(source indices, weights) pairs whose weighted sum is each output element."""
    last = in_len - 1
    if cfg.antialias:
        return _antialias_taps(cfg, orig, in_len, scale)
    if cfg.mode == "nearest":
        idx = np.clip(_nearest_index(cfg.nearest, orig, bool(scale < 1)), 0, last)
        return [(idx, np.ones_like(orig))]
    if cfg.mode == "linear":
        v = np.clip(orig, _F(0), _F(last))
        lo = np.minimum(v.astype(np.int64), last)
        hi = np.minimum(lo + 1, last)
        w_lo, w_hi = np.abs(v - hi.astype(_F)), np.abs(v - lo.astype(_F))
        same = lo == hi
        return [(lo, np.where(same, _F(0.5), w_lo)), (hi, np.where(same, _F(0.5), w_hi))]
    base = np.floor(orig).astype(np.int64)
    coeffs = _cubic_coeffs((orig - np.floor(orig)).astype(_F), _F(cfg.cubic_a))
    indices = [base + k for k in (-1, 0, 1, 2)]
    if cfg.exclude_outside:
        coeffs = [np.where((i < 0) | (i > last), _F(0), c) for i, c in zip(indices, coeffs)]
        total = sum(coeffs)
        coeffs = [c / total for c in coeffs]
    return [(np.clip(i, 0, last), c) for i, c in zip(indices, coeffs)]


# Per axis: [(source indices, float32 weights)] and the mask of outputs that take extrapolation_value.
_AxisPlan = tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor | None]


def _axis_plan(cfg: _Config, in_len: int, out_len: int, scale: np.float32, roi: tuple[float, float]) -> _AxisPlan:
    orig = _source_coords(cfg, out_len, scale, in_len, roi)
    taps = [(torch.from_numpy(i), torch.from_numpy(w.astype(_F))) for i, w in _taps(cfg, orig, in_len, scale)]
    outside = torch.from_numpy((orig < 0) | (orig > in_len - 1)) if cfg.coord == "tf_crop_and_resize" else None
    return taps, outside


def _resize_axis(x: torch.Tensor, cfg: _Config, axis: int, plan: _AxisPlan) -> torch.Tensor:
    taps, outside = plan
    view = [1] * x.dim()
    view[axis] = -1
    y: torch.Tensor | None = None
    for idx, w in taps:
        part = x.index_select(axis, idx)
        if cfg.mode != "nearest":
            part = part * w.to(x.dtype).reshape(view)
        y = part if y is None else y + part
    assert y is not None
    if outside is not None:
        y = torch.where(outside.reshape(view), torch.tensor(cfg.extrapolation, dtype=y.dtype, device=y.device), y)
    return y


class _ResizeBase(OpModule):
    def __init__(self, cfg: _Config) -> None:
        super().__init__()
        self.cfg = cfg
        # (in, out, scale, roi, device) -> taps: shapes repeat every batch, so compute them once
        self._plans: dict[tuple, _AxisPlan] = {}

    def _axis_plan(
        self, in_len: int, out_len: int, scale: np.float32, roi: tuple[float, float], device: torch.device
    ) -> _AxisPlan:
        key = (in_len, out_len, float(scale), roi, str(device))
        if key not in self._plans:
            taps, outside = _axis_plan(self.cfg, in_len, out_len, scale, roi)
            self._plans[key] = (
                [(i.to(device), w.to(device)) for i, w in taps],
                None if outside is None else outside.to(device),
            )
        return self._plans[key]

    def _plan(
        self, shape: Sequence[int], roi: list[float] | None, scales: list[float] | None, sizes: list[int] | None
    ) -> list[tuple[int, int, np.float32, tuple[float, float]]]:
        """(axis, output length, float32 scale, roi) for every axis that changes."""
        rank = len(shape)
        axes = [a + rank if a < 0 else a for a in (self.cfg.axes or range(rank))]
        out = {a: int(shape[a]) for a in axes}
        if sizes:
            scale = {a: _F(s) / _F(shape[a]) for a, s in zip(axes, sizes)}
            out.update(zip(axes, (int(s) for s in sizes)))
            if self.cfg.policy != "stretch":
                pick = min(scale.values()) if self.cfg.policy == "not_larger" else max(scale.values())
                scale = dict.fromkeys(axes, pick)
                out = {a: int(_round_half_away(np.array([pick * _F(shape[a])]))[0]) for a in axes}
        elif scales:
            scale = {a: _F(s) for a, s in zip(axes, scales)}
            out = {a: int(scale[a] * _F(shape[a])) for a in axes}
        else:
            where = f"node {getattr(self, 'onnx_node', '?')!r} ({type(self).__name__})"
            raise GraphError(f"{where} needs a non-empty scales or sizes input, got neither")
        if all(out[a] == shape[a] for a in axes):
            return []  # onnxruntime copies the input unchanged
        n = len(axes)
        rois = {a: (roi[i], roi[n + i]) if roi else (0.0, 1.0) for i, a in enumerate(axes)}
        # onnxruntime's antialias path skips the axes of unchanged size, the others those of scale 1
        changed = (lambda a: out[a] != shape[a]) if self.cfg.antialias else (lambda a: scale[a] != _F(1))
        return [(a, out[a], scale[a], rois[a]) for a in axes if changed(a)]

    def _run(
        self, x: torch.Tensor, roi: list[float] | None, scales: list[float] | None, sizes: list[int] | None
    ) -> torch.Tensor:
        plan = self._plan(list(x.shape), roi, scales, sizes)
        if not plan:
            return x
        dtype = x.dtype
        y = x if x.is_floating_point() or self.cfg.mode == "nearest" else x.float()
        for axis, out_len, scale, axis_roi in plan:
            y = _resize_axis(y, self.cfg, axis, self._axis_plan(y.shape[axis], out_len, scale, axis_roi, y.device))
        return y if y.dtype == dtype else y.round().to(dtype)


def _floats(t: torch.Tensor | None) -> list[float] | None:
    return None if t is None or t.numel() == 0 else [float(v) for v in t.reshape(-1).tolist()]


def _choice(ctx: NodeContext, name: str, default: str, allowed: Sequence[str]) -> str:
    value = ctx.attrs.get(name, default)
    if value not in allowed:
        raise GraphError(f"{ctx.describe()} has {name}={value!r}; supported values are {list(allowed)}")
    return value


@register("Resize", versions=(11, 13, 18, 19))
class Resize(_ResizeBase):
    """ONNX Resize: nearest/linear/cubic, every coordinate transformation mode, scales or sizes."""

    static_inputs = frozenset({1, 2, 3})

    @classmethod
    def from_node(cls, ctx: NodeContext) -> OpModule:
        coords = _COORDS if ctx.version >= 19 else _COORDS[:-1]
        mode = _choice(ctx, "mode", "nearest", _MODES)
        antialias = bool(ctx.attrs.get("antialias", 0))
        if antialias and mode == "nearest":
            raise GraphError(f"{ctx.describe()} has antialias=1 with mode 'nearest'; it needs 'linear' or 'cubic'")
        cfg = _Config(
            mode=mode,
            coord=_choice(ctx, "coordinate_transformation_mode", "half_pixel", coords),
            nearest=_choice(ctx, "nearest_mode", "round_prefer_floor", _NEAREST),
            cubic_a=float(ctx.attrs.get("cubic_coeff_a", -0.75)),
            exclude_outside=bool(ctx.attrs.get("exclude_outside", 0)),
            extrapolation=float(ctx.attrs.get("extrapolation_value", 0.0)),
            axes=tuple(ctx.attrs["axes"]) if ctx.attrs.get("axes") else None,
            policy=_choice(ctx, "keep_aspect_ratio_policy", "stretch", _POLICIES),
            antialias=antialias,
        )
        if cfg.exclude_outside and mode != "cubic" and not antialias:
            raise GraphError(f"{ctx.describe()} has exclude_outside=1 with mode {mode!r}; it needs cubic or antialias")
        return cls(cfg)

    def forward(
        self,
        x: torch.Tensor,
        roi: torch.Tensor | None = None,
        scales: torch.Tensor | None = None,
        sizes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        size_list = None if sizes is None or sizes.numel() == 0 else self.ints(sizes)
        return self._run(x, _floats(roi), _floats(scales), size_list)


@register("Upsample", versions=(9,))
class Upsample(_ResizeBase):
    """ONNX Upsample-9: asymmetric coordinates, nearest by truncation, or linear."""

    static_inputs = frozenset({1})

    @classmethod
    def from_node(cls, ctx: NodeContext) -> OpModule:
        mode = _choice(ctx, "mode", "nearest", _MODES[:2])
        return cls(_Config(mode=mode, coord="asymmetric", nearest="simple"))

    def forward(self, x: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        return self._run(x, None, _floats(scales), None)
