"""Closed-form layer-wise reconstruction of the kept weights after hardening.

Hardening zeroes whole units (blocks, N:M groups, channels), but the surviving weights
were trained beside the pruned ones. Per layer this solves the least-squares problem of
OBS/SparseGPT with our structured mask fixed instead of chosen: the kept weights of each
output row that best reproduce the *dense* layer's output on the *dense* input, fed the
input the *pruned* model produces. That input includes every refit upstream, so each layer
also absorbs the error of the layers before it. Only sums are kept (float64, D x D per
layer; float32 products per sample), never the activations of all samples.

Layers of which none is upstream of another's input share one pass over the data, so a
ResNet costs a pass per conv depth (its shortcut convs ride along), not one per conv. A pass
does not run the models from their inputs: each batch resumes from the live values its
previous pass kept before the first layer still to refit (every node before it has its final
weights), so all passes together cost about two forward passes, not one per depth.

Data-parallel (torchrun, see search/distributed.py): each rank runs only its share of the
batches of a pass (batch ``k`` on rank ``k % N``, and keeps the snapshots of those) and the
sums are all-reduced, so every rank solves the same system; the solve is cheap next to the
pass and every rank needs the new weights for the next pass, so each solves it rather than
wait for rank 0's, and then takes rank 0's refitted weights (a broadcast of those layers only)
to stay bit-identical.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
import torch
import torch.nn.functional as F

from smart_onnx.data import Dataset
from smart_onnx.executor import Executor
from smart_onnx.executor.ops.conv import auto_pads, spatial, torch_pad
from smart_onnx.graph import PrunableLayer
from smart_onnx.graph.view import attr
from smart_onnx.model import iter_graphs, subgraph_free_names
from smart_onnx.search.distributed import batch_shard, broadcast_tensors, clock, rank, reduce_sum, reduce_tensors
from smart_onnx.search.loader import to_device

__all__ = ["LayerRefit", "RefitReport", "refit_layers"]

Transforms = Mapping[str, Callable[[torch.Tensor], torch.Tensor]]

_CHUNK_ELEMENTS = 2**23  # rows x features unfolded at once (32 MiB of float32): bounds a batch's memory
_PRODUCT_ROWS = 16384  # Gemm/MatMul rows per float32 product summed into the float64 sums
_MAX_FEATURES = 8192  # more inputs per output would need sums of over 0.5 GiB each
_REPRODUCE_TOL = 1e-3  # relative error allowed between our X W^T + b and the dense node's own output
# Fewer calibration rows per solved feature overfit: on a 64-32-10 MLP at 50% 4x4 blocks the held-out
# output error rose after refitting from 48 samples (0.75 rows per feature) and fell from 130 (2 per feature).
# A row's solve has only its kept weights (and bias) as features, and a heavily pruned layer takes fewer rows,
# but more per feature: on that MLP at 24 samples and fresh samples drawn as views, 2 rows per kept weight raised the
# held-out error (0.698 -> 0.737, five masks), 4 lowered it (0.606). Re-choosing blocks weighs all of the inputs.
_MIN_ROWS_PER_FEATURE = 2
_MIN_ROWS_PER_KEPT = 4
# Layers of more inputs keep the searched mask: the greedy block choice costs about inputs^3 per block row.
# MiniLM's three 1536-input FFN projections (72 block rows, 0.84 s each in float32) took its refit at 50 %
# from 18 s to 171 s.
_RESELECT_MAX_FEATURES = 1280
# Live values kept between passes, all batches and both models together; a batch past it is run from the
# inputs again each pass (one 32-channel 112 x 112 activation is 49 MiB a batch of 32).
_SNAPSHOT_BYTES = 512 * 2**20


@dataclass
class LayerRefit:
    """One layer's outcome.

    Attributes:
        name: the layer (node) name.
        error_before: ``||layer(X_p) - Y||^2 / ||Y||^2`` over the calibration rows with the masked
            weights as they were (X_p: the pruned model's input to the layer, Y: the dense node's
            output); None when skipped.
        error_after: the same with the weights kept; never above ``error_before``, because an
            output row whose solution is worse keeps its old weights.
        skipped: why the layer was not refitted, or None.
        rows_refit: output rows that took the new weights.
        samples: calibration rows the sums cover (samples times output positions or tokens).
    """

    name: str
    error_before: float | None = None
    error_after: float | None = None
    skipped: str | None = None
    rows_refit: int = 0
    samples: int = 0


@dataclass
class RefitReport:
    """Every given layer in the given order, the wall time, the passes over the data and the samples each ran."""

    layers: list[LayerRefit]
    seconds: float
    passes: int = 0
    samples: list[int] = field(default_factory=list)


@dataclass
class _Plan:
    layer: PrunableLayer
    node: onnx.NodeProto
    act: str  # the activation the layer multiplies with its weight
    bias_col: bool  # a ones column stands for the bias (refitted or held fixed)
    bias_fit: bool
    alpha: float
    beta: float
    trans_a: bool
    up: int = 0  # bitmask of the planned layers upstream of ``act``
    gram: _Gram | None = None


def _plan(layer: PrunableLayer, node: onnx.NodeProto, ex: Executor, readers: Mapping[str, int]) -> _Plan | str:
    """What refitting this layer needs, or why it cannot be refitted."""
    if layer.op_type not in ("Conv", "Gemm", "MatMul"):
        return f"{layer.op_type} is not refitted"
    if node.input[0] in ex.weights:
        return "its input is a constant, not an activation the model computes"
    if not ex.weights.is_parameter(layer.weight) or readers.get(layer.weight, 0) != 1:
        return "its weight is not a trainable tensor read by this layer alone (tied or constant)"
    if layer.op_type == "Conv" and len(layer.weight_shape) not in (3, 4):
        return "only 1-D and 2-D convolutions are refitted"
    if int(np.prod(layer.canonical_shape[1:])) + 1 > _MAX_FEATURES:
        return f"{int(np.prod(layer.canonical_shape[1:]))} input features per output: the sums would not fit"
    alpha, beta = float(attr(node, "alpha", 1.0)), float(attr(node, "beta", 1.0))
    if alpha == 0.0:
        return "Gemm alpha is 0: the weight has no effect"
    bias_col = layer.bias is not None and beta != 0.0
    bias_fit = bias_col and ex.weights.is_parameter(layer.bias) and readers.get(layer.bias, 0) == 1
    return _Plan(layer, node, node.input[0], bias_col, bias_fit, alpha, beta, bool(attr(node, "transA", 0)))


def _effective(plan: _Plan, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """What the node multiplies with ``[x, 1]``: ``[groups, O/g, D(+1)]`` float64, alpha and beta included."""
    c = w.detach().double().permute(plan.layer.canonical_axes)  # O x I x k, the unfolded column order
    out = c.reshape(plan.layer.groups, c.shape[0] // plan.layer.groups, -1) * plan.alpha
    if plan.bias_col:
        out = torch.cat([out, b.detach().double().reshape(*out.shape[:2], 1) * plan.beta], dim=2)
    return out


def _flat(plan: _Plan, x: torch.Tensor, is_input: bool) -> torch.Tensor:
    """Gemm/MatMul values as 2-D ``[rows, features]`` (tokens flattened); conv values as they are."""
    if plan.layer.op_type == "Conv":
        return x
    x = x.t() if is_input and plan.trans_a else x
    return x.reshape(-1, x.shape[-1])


def _chunks(plan: _Plan, x: torch.Tensor) -> Iterator[slice]:
    """Ranges along axis 0 (samples of a conv input, rows otherwise) small enough to unfold at once, and whose
    per-sample products (``[groups, F, F]`` and ``[groups, F, O]`` each) fit the same bound: a 3x3 conv over
    128 channels has F = 1153, 5.3 MiB a sample, 170 MiB for a chunk of 32 (the CRNN's refit peak)."""
    if plan.layer.op_type != "Conv":
        return (slice(s, s + _PRODUCT_ROWS) for s in range(0, x.shape[0], _PRODUCT_ROWS))
    out_channels, in_per_group, *kernel = plan.layer.weight_shape
    groups = plan.layer.groups
    features = in_per_group * int(np.prod(kernel)) + 1
    per = max(x[0].numel() * int(np.prod(kernel)), groups * features * (features + out_channels // groups))
    step = max(1, _CHUNK_ELEMENTS // max(1, per))
    return (slice(s, s + step) for s in range(0, x.shape[0], step))


def _columns(plan: _Plan, x: torch.Tensor, unfold: bool = True) -> torch.Tensor:
    """A chunk as ``[samples, groups, features, rows]`` float32, rows last: conv inputs unfolded (rows are
    output positions), conv outputs per position, Gemm/MatMul values as one sample of ``[features, rows]``.

    Every layout is a view of a contiguous tensor, so the products below need no copy into row order."""
    if plan.layer.op_type != "Conv":
        return x.float().mT[None, None]
    node, n, kernel = plan.node, x.dim() - 2, list(plan.layer.weight_shape[2:])
    if unfold:
        strides, dilations = spatial(attr(node, "strides"), n, 1), spatial(attr(node, "dilations"), n, 1)
        extent = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
        pads = auto_pads(str(attr(node, "auto_pad", "NOTSET")), list(x.shape[2:]), extent, strides, attr(node, "pads"))
        if any(k != 1 for k in kernel) or any(s != 1 for s in strides) or any(pads):  # else unfolding copies only
            x = F.pad(x, torch_pad(pads)) if any(pads) else x
            if n == 1:
                x, kernel, strides, dilations = x.unsqueeze(2), [1, *kernel], [1, *strides], [1, *dilations]
            x = F.unfold(x, kernel, dilation=dilations, stride=strides)  # [N, C*k, L], C outermost as in W
    c, g = x.shape[1], plan.layer.groups
    return x.float().reshape(x.shape[0], g, c // g, -1)


@dataclass
class _Sums:
    """X_p^T X_p, X_p^T Y and ``||Y||^2`` per output over some of the rows."""

    pp: torch.Tensor
    py: torch.Tensor
    yy: torch.Tensor

    def __sub__(self, other: _Sums) -> _Sums:
        return _Sums(self.pp - other.pp, self.py - other.py, self.yy - other.yy)


class _Gram:
    """Sums over the calibration rows: X_p^T X_p, X_p^T Y and ``||Y||^2`` per output.

    Y is the dense node's own output, which is X_d W_d^T + b_d without unfolding X_d. From the layer's
    multipliers under its mask (``scale``, :func:`_under_masks` with ``ones``): ``need``, the fewest rows its fit
    takes (twice its inputs and bias, or four times the most kept weights and bias of a row, ``most_kept``, where
    that is fewer), and ``pruned``, whether any of its weights is masked. With ``split_for`` (the samples of a
    run that may add views), a pruned layer those samples will leave short of rows also keeps the sums of every
    other sample of each batch apart (``even``), as views may join it: a fit without half of the samples can then
    be judged on that half. Whether it will be short is known at the first batch, from its rows per sample.
    """

    def __init__(self, plan: _Plan, dense_w: torch.Tensor, scale: torch.Tensor, split_for: int | None = None) -> None:
        self.plan, self.wd = plan, dense_w
        kept = scale != 0
        self.most_kept, self.pruned = int(kept.sum(2).max()), not bool(kept.all())
        self.need = min(_MIN_ROWS_PER_FEATURE * scale.shape[2], _MIN_ROWS_PER_KEPT * self.most_kept)
        g, o, d = dense_w.shape
        self.pp, self.py, self.yy = dense_w.new_zeros(g, d, d), dense_w.new_zeros(g, d, o), dense_w.new_zeros(g, o)
        self.rows, self.mismatch, self.norm = 0, 0.0, 0.0
        # not for transA, whose samples are not along axis 0
        self.split_for = split_for if self.pruned and not plan.trans_a else None
        self.even: _Sums | None = None  # the even samples' sums
        self.samples: _Sums | None = None  # the sums of the samples alone, once views are added

    @property
    def total(self) -> _Sums:
        return _Sums(self.pp, self.py, self.yy)

    def hold_samples(self) -> None:
        """Keep the sums so far (the samples') apart before views are added to them."""
        if self.samples is None:
            self.samples = _Sums(self.pp.clone(), self.py.clone(), self.yy.clone())

    def tensors(self) -> list[torch.Tensor]:
        """Every sum kept, in a fixed order (for adding them up over ranks)."""
        parts = [self.total, *(s for s in (self.even, self.samples) if s is not None)]
        return [t for part in parts for t in (part.pp, part.py, part.yy)]

    def add(self, xp: torch.Tensor, y: torch.Tensor, xd: torch.Tensor | None = None) -> None:
        """Add one batch; with the dense input ``xd``, also check X_d W_d^T + b_d against ``y``.

        The products are float32 matrix products over one sample's rows (at most :data:`_PRODUCT_ROWS`
        for Gemm/MatMul; a conv's output positions), summed into float64: about twice the speed of float64
        products and no float64 copy of the rows, at a rounding of about 1e-7 relative per product."""
        if self.split_for is not None:
            outputs = self.wd.shape[0] * self.wd.shape[1]
            if y.numel() / outputs / max(1, y.shape[0]) * self.split_for < self.need:  # rows a sample gives
                self.even = _Sums(self.pp.clone(), self.py.clone(), self.yy.clone())
            self.split_for = None
        if self.even is None or self.samples is not None or xp.shape[0] < 2:
            self._add(xp, y, xd, [self.total])
            return
        for first, sums in ((0, [self.total, self.even]), (1, [self.total])):
            self._add(xp[first::2], y[first::2], None if xd is None else xd[first::2], sums)

    def _add(self, xp: torch.Tensor, y: torch.Tensor, xd: torch.Tensor | None, into: Sequence[_Sums]) -> None:
        plan = self.plan
        xp, y = _flat(plan, xp, True), _flat(plan, y, False)
        for sl in _chunks(plan, xp):
            p, t = _columns(plan, xp[sl]), _columns(plan, y[sl], unfold=False)
            f = p.shape[2]
            pp, py = (p @ p.mT).sum(0, dtype=torch.float64), (p @ t.mT).sum(0, dtype=torch.float64)
            yy = t.square().sum((0, 3), dtype=torch.float64)
            if plan.bias_col:  # the ones column's sums, without concatenating it
                ps, ts = p.sum((0, 3), dtype=torch.float64), t.sum((0, 3), dtype=torch.float64)
            for sums in into:
                sums.pp[:, :f, :f] += pp
                sums.py[:, :f] += py
                if plan.bias_col:
                    sums.pp[:, :f, f] += ps
                    sums.pp[:, f, :f] += ps
                    sums.pp[:, f, f] += p.shape[0] * p.shape[3]
                    sums.py[:, f] += ts
                sums.yy += yy
            self.rows += p.shape[0] * p.shape[3]
            if xd is not None:
                # float32 is plenty for a check against a 1e-3 tolerance
                wd = self.wd.float()
                pred = wd[..., :f] @ _columns(plan, _flat(plan, xd, True)[sl])
                pred = pred + (wd[..., -1:] if plan.bias_col else 0)
                self.mismatch += float((pred - t).square().sum(dtype=torch.float64))
                self.norm += float(t.square().sum(dtype=torch.float64))

    def errors(self, w: torch.Tensor, sums: _Sums | None = None) -> torch.Tensor:
        """``[groups, O/g]`` squared output error of effective weights ``w``, from the sums alone (or ``sums``)."""
        sums = sums or self.total
        return ((w @ sums.pp) * w).sum(2) - 2 * (w * sums.py.mT).sum(2) + sums.yy


def _sum_over_ranks(grams: Sequence[_Gram]) -> None:
    """Add up, in place, the sums each rank accumulated over its batches (identity in one process)."""
    reduce_tensors([t for gram in grams for t in gram.tensors()])
    counts = reduce_sum([x for gram in grams for x in (gram.rows, gram.mismatch, gram.norm)])
    for gram, (rows, mismatch, norm) in zip(grams, zip(*[iter(counts)] * 3)):
        gram.rows, gram.mismatch, gram.norm = round(rows), mismatch, norm


def _is_feature(gram: _Gram) -> torch.Tensor:
    """Bool per column of the sums: an input feature, not the ones column that stands for the bias."""
    is_feature = torch.ones(gram.pp.shape[1], dtype=torch.bool, device=gram.pp.device)
    is_feature[-1] = not gram.plan.bias_col
    return is_feature


def _solvable(plan: _Plan, gram: _Gram, keep: torch.Tensor) -> torch.Tensor:
    """The kept weights ``[groups, O/g, D(+1)]`` the solve may change: not those over inputs never active on
    the calibration data (no information: a ridge solve would set them to exactly zero, new zeros outside the
    mask's pattern that a target's check rejects), nor a bias the layer does not own alone."""
    solve = keep & (gram.pp.diagonal(dim1=-2, dim2=-1) > 0)[:, None, :]
    if plan.bias_col and not plan.bias_fit:
        solve[..., -1] = False
    return solve


def _dampened(a: torch.Tensor, is_feature: torch.Tensor, ridge: float) -> torch.Tensor:
    """``a`` (a Gram matrix) plus ``ridge`` times its mean feature diagonal on the features' diagonal."""
    diag = a.diagonal()
    lam = ridge * float(diag[is_feature].mean()) if bool(is_feature.any()) else 0.0
    return a + torch.diag(is_feature.double() * (lam + 1e-12 * float(diag.abs().max())))


def _solve(gram: _Gram, g: int, solve: torch.Tensor, fixed: torch.Tensor, ridge: float,
           sums: _Sums | None = None) -> torch.Tensor:
    """Ridge least squares per output row of group ``g`` on its kept positions; the others stay ``fixed``;
    over ``sums`` instead of all of the gram's rows where given.

    Rows with the same kept positions (a block row; every row in channel mode) share one
    Cholesky factorisation. The dampening ``ridge * mean(diag)`` is relative, as SparseGPT's,
    and spares the bias column.
    """
    sums = sums or gram.total
    pp, out = sums.pp[g], fixed.clone()
    rhs = sums.py[g].mT - fixed @ pp  # [O/g, D]: X_p^T (Y - X_p fixed), per row
    is_feature = _is_feature(gram)
    patterns, inverse = torch.unique(solve, dim=0, return_inverse=True)
    for p, pattern in enumerate(patterns):
        idx = pattern.nonzero().flatten()
        if idx.numel() == 0:
            continue
        rows = (inverse == p).nonzero().flatten()
        a = _dampened(pp[idx][:, idx], is_feature[idx], ridge)
        b = rhs[rows][:, idx].T
        factor, info = torch.linalg.cholesky_ex(a)
        x = torch.cholesky_solve(b, factor) if int(info) == 0 else torch.linalg.pinv(a) @ b
        out[rows[:, None], idx[None, :]] = x.T
    return out


def _obs_remove(hinv: torch.Tensor, w: torch.Tensor, cols: torch.Tensor) -> None:
    """Remove the features ``cols`` in place: the other weights of ``w`` ([features, rows]) re-solved, ``hinv``
    the inverse over the features left (OBS; ``cols`` are left with zero weight and zero rows and columns)."""
    block = torch.linalg.inv(hinv[cols][:, cols])
    left = hinv[:, cols] @ block
    w -= left @ w[cols]
    hinv -= left @ hinv[cols]
    w[cols] = 0.0
    hinv[cols] = 0.0
    hinv[:, cols] = 0.0


def _band_selection(hinv: torch.Tensor, w: torch.Tensor, units: torch.Tensor, kept: torch.Tensor,
                    movable: torch.Tensor) -> torch.Tensor:
    """Which units of one band of rows to keep: as many of the movable ones as ``kept`` keeps, chosen by
    greedy OBS removal (the unit whose removal raises the band's least-squares error least, the other
    weights re-solved after each), as SparseGPT chooses weights but a whole unit at a time.

    ``units`` [features] is each feature column's unit (-1: the bias column, never removed), ``kept`` and
    ``movable`` [units] the hard mask and the units that may change; units not movable stay as they are.
    Removing a quarter of the units left at once instead of one halved the gain on the bundled ResNet
    (50 % blocks, no fine-tune: 90.60 % top-1 against 90.90 %, 90.25 % without the choice); float32 chose
    the same blocks as float64 at half the time.
    """
    hinv, w = hinv.float(), w.float()  # the choice only: the chosen mask is then solved in float64
    cols = [(units == u).nonzero().flatten() for u in range(kept.numel())]
    fixed_out = [u for u in range(kept.numel()) if not movable[u] and not kept[u]]
    if fixed_out:
        _obs_remove(hinv, w, torch.cat([cols[u] for u in fixed_out]))
    candidates = movable.nonzero().flatten()
    index = torch.stack([cols[int(u)] for u in candidates])  # [candidates, unit size]: all of one size
    alive = torch.ones(candidates.numel(), dtype=torch.bool, device=kept.device)
    for _ in range(int((movable & ~kept).sum())):
        left = alive.nonzero().flatten()
        idx = index[left]
        wb = w[idx]
        cost = (wb * torch.linalg.solve(hinv[idx[:, :, None], idx[:, None, :]], wb)).sum((1, 2))
        pick = left[int(cost.argmin())]
        _obs_remove(hinv, w, index[pick])
        alive[pick] = False
    keep = kept.clone()
    keep[candidates] = alive
    return keep


@dataclass
class _Choice:
    """A layer's kept weights (and bias column) ``[groups, O/g, D(+1)]``, effective weights, per-row errors."""

    keep: torch.Tensor
    weights: torch.Tensor
    errors: torch.Tensor


def _reselect(plan: _Plan, gram: _Gram, ids: torch.Tensor, old: _Choice, current: torch.Tensor,
              locked: torch.Tensor | None, ridge: float) -> _Choice | None:
    """The mask re-chosen band by band, with the same count of units in every band of rows (rows alike in
    which units they cross: a block row), where that lowers the band's least-squares error; None where no
    band changes.

    ``ids`` [O, D] is each weight's unit in the effective layout (one group), ``old`` the refit under the
    searched mask. Units of another size than the band's full ones (edge blocks), units ``locked`` by the
    constraints and units over an input never active (whose weights the solve leaves alone) keep their
    state, so the count of kept weights is exactly the mask's.
    """
    keep, features = old.keep[0], ids.shape[1]
    hinv = None  # the inverse of the dampened X^T X, once a band has blocks to move
    active = gram.pp[0].diagonal()[:features] > 0
    new_keep, bands = keep.clone(), []
    _, band_of = torch.unique(ids, dim=0, return_inverse=True)
    bias = torch.full((int(plan.bias_col),), -1, dtype=torch.long, device=ids.device)
    for band in band_of.unique():
        rows = (band_of == band).nonzero().flatten()
        names, local = torch.unique(ids[rows[0]], return_inverse=True)
        count = torch.zeros(names.numel(), dtype=torch.long, device=ids.device)
        sizes = count.index_add(0, local, torch.ones_like(local))
        kept = count.index_add(0, local, keep[rows[0], :features].long()) > 0
        movable = (sizes == sizes.max()) & (count.index_add(0, local, (~active).long()) == 0)
        if locked is not None:
            movable &= ~locked[names]
        if not bool((movable & kept).any()) or not bool((movable & ~kept).any()):
            continue
        if hinv is None:
            hinv = torch.cholesky_inverse(torch.linalg.cholesky(_dampened(gram.pp[0], _is_feature(gram), ridge)))
        chosen = _band_selection(hinv, hinv @ gram.py[0][:, rows], torch.cat([local, bias]), kept, movable)
        if not bool((chosen == kept).all()):
            new_keep[rows, :features] = chosen[local][None, :]
            bands.append(rows)
    if not bands:
        return None
    solve = _solvable(plan, gram, new_keep[None])[0]
    weights = _solve(gram, 0, solve, current[0] * new_keep * ~solve, ridge)
    errors = gram.errors(weights[None])[0]
    out = _Choice(old.keep.clone(), old.weights.clone(), old.errors.clone())
    moved = False
    for rows in bands:
        if float(errors[rows].sum()) < float(old.errors[0, rows].sum()):
            out.keep[0, rows], out.weights[0, rows], out.errors[0, rows] = new_keep[rows], weights[rows], errors[rows]
            moved = True
    return out if moved else None


def _under_masks(plan: _Plan, ex: Executor, transforms: Transforms, ones: bool = False) -> torch.Tensor:
    """The layer's weight (and bias) under ``transforms`` in the effective layout; with ``ones``, ones in their
    place: the multipliers, alpha or beta on kept elements and 0 on masked ones for hard masks."""
    layer = plan.layer
    w = ex.weights.get(layer.weight)
    b = ex.weights.get(layer.bias) if plan.bias_col else None
    mask_w, mask_b = (transforms.get(n, lambda t: t) for n in (layer.weight, layer.bias))
    value = torch.ones_like if ones else (lambda t: t)
    return _effective(plan, mask_w(value(w)), None if b is None else mask_b(value(b)))


def _views_help(gram: _Gram, solve: torch.Tensor, current: torch.Tensor, new: torch.Tensor,
                ridge: float) -> torch.Tensor:
    """``[groups, O/g]``: the rows of a layer fitted on views too whose fit predicts samples it did not see
    better than the weights it would replace: each half of the samples judged by the fit on the views and the
    other half. A view is not a sample the model meets (a flipped digit), so a fit that lowers the error over
    views and samples together may predict real inputs worse. The check cannot see past what the layers before
    learnt from all of the samples (see :func:`_add_views`). Without the halves (a transposed input), the
    samples' own error must not rise under ``new``, the fit on all rows."""
    if gram.even is None:
        return gram.errors(new, gram.samples) <= gram.errors(current, gram.samples)
    even, odd = gram.even, gram.samples - gram.even
    held = (gram.errors(_fit(gram, solve, current, ridge, gram.total - odd), odd)
            + gram.errors(_fit(gram, solve, current, ridge, gram.total - even), even))
    return held < gram.errors(current, gram.samples)


def _fit(gram: _Gram, solve: torch.Tensor, current: torch.Tensor, ridge: float,
         sums: _Sums | None = None) -> torch.Tensor:
    """Every group's ridge solution over ``sums`` (all rows where None); the weights not solved stay as they are."""
    return torch.stack([_solve(gram, g, solve[g], current[g] * ~solve[g], ridge, sums)
                        for g in range(gram.pp.shape[0])])


def _refit_one(plan: _Plan, ex: Executor, transforms: Transforms, ridge: float, ids: torch.Tensor | None,
               locked: torch.Tensor | None) -> tuple[LayerRefit, torch.Tensor | None]:
    """Solve, keep per row whichever of old and new has the lower error, write it into the parameters.

    With the layer's unit ``ids`` (a weight-shaped tensor, see :func:`refit_layers`) and rows enough for all its
    inputs, the mask may change too (:func:`_reselect`); returns the layer's outcome and its new kept weights
    (weight-shaped bool, or None).
    """
    layer, gram = plan.layer, plan.gram
    result, features = LayerRefit(layer.name, samples=gram.rows), gram.pp.shape[1]
    if gram.rows < gram.need:
        result.skipped = (f"{gram.rows} calibration rows for {features} input features, at most "
                          f"{gram.most_kept} kept a row: the fit would overfit (needs {gram.need}; "
                          f"raise max_samples, or augment)")
        return result, None
    if gram.mismatch > _REPRODUCE_TOL**2 * gram.norm:
        result.skipped = (f"X W^T + b does not reproduce the node's output (relative error "
                          f"{(gram.mismatch / gram.norm) ** 0.5:.1e}): an attribute or bias form not modelled")
        return result, None
    scale, current = _under_masks(plan, ex, transforms, ones=True), _under_masks(plan, ex, transforms)
    solve = _solvable(plan, gram, scale != 0)
    new = _fit(gram, solve, current, ridge)
    before, after = gram.errors(current), gram.errors(new)
    better = after < before
    if gram.samples is not None:
        better &= _views_help(gram, solve, current, new, ridge)
    total = max(float(gram.yy.sum()), 1e-300)
    result.error_before, result.rows_refit = float(before.sum()) / total, int(better.sum())
    chosen = _Choice(scale != 0, torch.where(better[..., None], new, current), torch.where(better, after, before))
    moved = None
    if (ids is not None and layer.groups == 1 and features - int(plan.bias_col) <= _RESELECT_MAX_FEATURES
            and gram.rows >= _MIN_ROWS_PER_FEATURE * features and gram.samples is None):
        canonical = ids.to(gram.pp.device).permute(layer.canonical_axes).reshape(chosen.keep.shape[1], -1)
        reselected = _reselect(plan, gram, canonical, chosen, current,
                               None if locked is None else locked.to(gram.pp.device), ridge)
        if reselected is not None:
            chosen = reselected
            moved = chosen.keep[0, :, :canonical.shape[1]].reshape(layer.canonical_shape).permute(layer.tensor_axes)
            # the multipliers of the new mask: alpha and beta where kept
            scale = torch.where(chosen.keep, _under_masks(plan, ex, {}, ones=True), 0.0)
    result.error_after = float(chosen.errors.sum()) / total
    param = torch.where(scale != 0, chosen.weights / torch.where(scale != 0, scale, 1.0), 0.0)
    weight = param[..., :param.shape[2] - int(plan.bias_col)]
    w = ex.weights.get(layer.weight)
    w.copy_(weight.reshape(layer.canonical_shape).permute(layer.tensor_axes).to(w))
    if plan.bias_fit:
        b = ex.weights.get(layer.bias)
        b.copy_(param[..., -1].reshape(-1).to(b))
    return result, moved


def _advance(model: Executor, env: Mapping[str, torch.Tensor], start: int, stop: int, snapshot_at: int | None,
             transforms: Transforms | None, names: set[str]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Run nodes ``start`` to ``stop`` from ``env``: the values ``names`` (taken from ``env`` where it
    still holds them) and the live values before node ``snapshot_at``, without the weights read so far
    (a refit between two runs changes them)."""
    got = {n: env[n] for n in names if n in env}

    def recorder(name: str, inner: Callable[[torch.Tensor], torch.Tensor] | None):
        def record(x: torch.Tensor) -> torch.Tensor:
            x = inner(x) if inner else x
            got[name] = x.detach()
            return x
        return record

    hooked = dict(transforms or {})
    hooked.update({n: recorder(n, hooked.get(n)) for n in names if n not in got})
    snapshot = model.run_range(dict(env), hooked, start, stop, snapshot_at) or {}
    return got, {k: v for k, v in snapshot.items() if k not in model.weights}


@dataclass
class _Cursor:
    """Where one batch's next pass resumes: both models' live values before node ``at``."""

    pruned: dict[str, torch.Tensor]
    dense: dict[str, torch.Tensor]
    at: int
    nbytes: int


def _nbytes(*envs: Mapping[str, torch.Tensor]) -> int:
    seen = {id(t): t for env in envs for t in env.values() if isinstance(t, torch.Tensor)}
    return sum(t.numel() * t.element_size() for t in seen.values())


def _add_views(ready: Sequence[_Plan], executor: Executor, dense: Executor, live: Transforms,
               views: Callable[[int], Dataset], max_views: int, *, samples: int, batch_size: int, max_samples: int,
               stop: int, device: torch.device) -> None:
    """Add views of the samples, one whole view at a time, to the sums of the layers with pruned weights still
    short of rows and within reach of ``max_views`` views (a view of as many samples as the ``samples`` summed
    adds as many rows).

    Views run from the model's inputs (no snapshot of theirs is kept). Each rank adds its share of a view's
    batches, and every rank counts the rows all ranks hold, so all draw the same views."""
    # Only a layer with pruned weights: one kept whole would be fitted to make up, on views, for the errors of the
    # layers before it, which differ on the model's real inputs (the MNIST CNN's dense classifier: 0.004-0.017
    # held-out cosine lost); its own pruning is what views help a layer recover.
    rows = reduce_sum([p.gram.rows for p in ready])
    wanting = [(p, n) for p, n in zip(ready, rows) if p.gram.pruned and 0 < n < p.gram.need]
    if not wanting:
        return
    first = views(0).take(max_samples)
    per_view = len(first) / max(1, samples)  # rows a view adds, per row of the samples
    reach = {id(p) for p, n in wanting if n * (1 + per_view * max_views) >= p.gram.need}
    for k in range(max_views):
        short = [p for p, n in zip(ready, rows) if id(p) in reach and n < p.gram.need]
        if not short:
            return
        acts, outs = {p.act for p in short}, {p.node.output[0] for p in short}
        for p in short:
            p.gram.hold_samples()
        for batch in (first if k == 0 else views(k).take(max_samples)).batches(batch_size, shard=batch_shard()):
            feeds = to_device(batch.inputs, device)
            xp, _ = _advance(executor, feeds, 0, stop, None, live, acts)
            yd, _ = _advance(dense, dict(feeds), 0, stop, None, None, outs)
            for p in short:
                if p.act in xp and p.node.output[0] in yd:
                    p.gram.add(xp[p.act], yd[p.node.output[0]])
        rows = reduce_sum([p.gram.rows for p in ready])


def _passes(pending: Sequence[int], plans: Mapping[int, _Plan], done: int,
            order: Mapping[str, int]) -> list[tuple[list[int], int]]:
    """The refit of ``pending`` as passes, in order: each pass's layers (those no layer still pending feeds, else
    the first pending one) and where it stops running the graph (one past its last layer's node)."""
    passes = []
    while pending:
        ready = [i for i in pending if not plans[i].up & ~done] or list(pending[:1])
        passes.append((ready, max(order[plans[i].node.name] for i in ready) + 1))
        done |= sum(1 << i for i in ready)
        pending = [i for i in pending if i not in ready]
    return passes


# The share of the time left that the pacing plans the remaining passes' sums to take; the rest pays for the
# solves, which do not grow with the samples (a tenth of nudenet's refit with its views, two fifths without).
_PACING_MARGIN = 0.7
# A layer's sums cost, besides their products, about this many multiplies a sample (unfolding, copies, the runs
# of both models up to the layer): fitted to nudenet's 49 passes, whose time per sample the products alone
# put 4 times apart (0.01 to 0.04 us per multiply) and this term within 1.5 times from the first pass on.
_LAYER_WORK = 5e7


def _sample_work(plan: _Plan) -> float:
    """What one sample costs the layer's sums, in multiplies: its output positions (MACs over weights, one when
    unknown) times the products ``[groups, D, D + O]`` of each, plus :data:`_LAYER_WORK`."""
    layer = plan.layer
    positions = (layer.macs or 0) / max(1, int(np.prod(layer.weight_shape))) or 1.0
    inputs = int(np.prod(layer.canonical_shape[1:])) + plan.bias_col
    outputs = layer.canonical_shape[0] // max(1, layer.groups)
    return positions * layer.groups * inputs * (inputs + outputs) + _LAYER_WORK


class _Pacing:
    """How many samples each pass runs under a deadline: the samples, and the whole views the time left pays for.

    The first pass runs them all and measures; each later pass takes as many whole views as the seconds per
    sample and unit of work so far (:func:`_sample_work`, summed over a pass's layers), times the work of the
    passes left, fit in :data:`_PACING_MARGIN` of the time left. Counted per pass from its layers' sums, not
    from the graph it runs: with snapshots a pass runs a few nodes, and a count of nodes from the inputs put
    the rest of nudenet's refit at 8,292 s after its first pass (it took 165 s) and ran every later pass on
    the 64 crops alone. A pass may take back views an earlier one dropped, where the passes since ran ahead
    of the estimate.
    """

    def __init__(self, total: int, view_size: int | None, deadline: float, work: Sequence[float]) -> None:
        self.total, self.view = total, min(total, view_size or total)
        self.deadline, self.work = deadline, list(work)
        self.seconds, self.done = 0.0, 0.0

    def samples(self, index: int) -> int:
        if self.view >= self.total or self.done == 0:
            return self.total
        per = self.seconds / self.done
        left = max(0.0, self.deadline - clock()) * _PACING_MARGIN
        fit = int(left / (per * max(1.0, sum(self.work[index:])))) // self.view * self.view
        return max(self.view, min(self.total, fit))

    def ran(self, index: int, samples: int, seconds: float) -> None:
        """Pass ``index`` summed ``samples`` samples in ``seconds`` (its solves left out)."""
        self.seconds += seconds
        self.done += samples * self.work[index]


def _upstream(graph: onnx.GraphProto, index: Mapping[str, int]) -> dict[str, int]:
    """Value name -> bitmask of the planned layers (numbered by ``index``) it depends on."""
    masks: dict[str, int] = {}
    for node in graph.node:
        m = 0
        for name in (*node.input, *subgraph_free_names(node)):
            m |= masks.get(name, 0)
        m |= 1 << index[node.name] if node.name in index else 0
        masks.update(dict.fromkeys(node.output, m))
    return masks


def refit_layers(
    executor: Executor,
    dense: Executor,
    layers: Sequence[PrunableLayer],
    transforms: Transforms,
    data: Dataset,
    *,
    batch_size: int = 32,
    max_samples: int = 256,
    ridge: float = 0.01,
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
    units: Callable[[str], torch.Tensor | None] | None = None,
    locked: torch.Tensor | None = None,
    masks: dict[str, torch.Tensor] | None = None,
    views: Callable[[int], Dataset] | None = None,
    max_views: int = 32,
    view_size: int | None = None,
    deadline: float | None = None,
) -> RefitReport:
    """Refit the kept weights (and biases) of ``layers`` to reproduce the dense layers' outputs.

    Args:
        executor: the model being pruned; its weight and bias parameters are updated in place,
            masked elements set to exactly zero.
        dense: a frozen dense copy of the same model (same weight names): the targets.
        layers: the prunable layers to refit, e.g. a space's ``scored_layers``; unmasked ones
            are refitted too, to absorb the pruning upstream.
        transforms: the hard mask as executor transforms (``space.transforms(hard_mask)``);
            they must multiply elementwise, as every space's do.
        data: calibration data; its first ``max_samples`` samples are used.
        batch_size: samples per forward pass.
        max_samples: samples per pass over the data (one pass per set of independent layers).
        ridge: dampening relative to the mean diagonal of each kept block of X_p^T X_p.
        device: where the runs and the solves happen (both executors are moved there).
        progress: called with (layers done or skipped, total) after each pass.
        units: weight name -> each element's unit (int64, the weight's shape, indices into the flat mask;
            None: the layer keeps its mask), e.g. ``space.element_units``: the refit may then also re-choose
            which units each band of rows keeps, as many as the mask keeps there (greedy OBS removal, see
            :func:`_reselect`), where that lowers the band's error.
        locked: bool ``[units]``, units whose state must not change (the constraints' kept units).
        masks: filled with weight name -> the layer's new kept weights (bool, the weight's shape) for every
            layer whose mask changed, as each layer is done: a refit ended early still tells what it changed.
        views: view ``k`` of the samples (e.g. an augmented copy of them; the teacher answers any input), drawn
            in turn, at most ``max_views``, only for the layers of a pass that the samples leave short of the rows
            their fit needs: a classifier after global pooling has one row per sample, a conv thousands.
        max_views: the most views a pass draws.
        view_size: ``data`` is its first ``view_size`` samples followed by whole views of them (None: all samples).
        deadline: a :func:`clock` time the refit should end by: each pass after the first runs the samples and
            as many of the views as the time left pays for (see :class:`_Pacing`). A pass is never cut; the
            caller stops the refit between passes.

    Returns:
        Per layer its relative output error before and after, or why it was skipped.
    """
    start = time.perf_counter()
    dev = torch.device(device)
    executor.to(dev)
    dense.to(dev)
    nodes = {n.name: n for n in executor.model.graph.node}
    readers: dict[str, int] = {}
    for node in (n for g in iter_graphs(executor.model.graph) for n in g.node):
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    results = [LayerRefit(layer.name) for layer in layers]
    plans: dict[int, _Plan] = {}
    for i, layer in enumerate(layers):
        plan = _plan(layer, nodes[layer.name], executor, readers) if layer.name in nodes else "not in the main graph"
        if isinstance(plan, str):
            results[i].skipped = plan
        else:
            plans[i] = plan
    upstream = _upstream(executor.model.graph, {plans[i].layer.name: i for i in plans})
    for plan in plans.values():
        plan.up = upstream.get(plan.act, 0)
    pending, done, ran = sorted(plans), sum(1 << i for i in range(len(layers)) if i not in plans), []
    order = {n.name: k for k, n in enumerate(executor.model.graph.node)}
    total = samples = len(data.take(max_samples))
    schedule = _passes(pending, plans, done, order)
    paced = None if deadline is None else _Pacing(
        total, view_size, deadline, [sum(_sample_work(plans[i]) for i in ready) for ready, _ in schedule])
    cursors: dict[int, _Cursor] = {}
    live = dict(transforms)  # a layer whose mask the refit changes runs under its new mask from then on
    with torch.no_grad():
        for pass_index, (ready, stop) in enumerate(schedule):
            if paced is not None:
                before = samples
                samples = paced.samples(pass_index)
                if samples != before:  # a batch cut short, or made whole, has no snapshot of its own
                    cursors = {k: c for k, c in cursors.items() if k < min(samples, before) // batch_size}
            for p in (plans[i] for i in ready):
                bias = dense.weights.get(p.layer.bias) if p.bias_col else None
                p.gram = _Gram(p, _effective(p, dense.weights.get(p.layer.weight), bias),
                               _under_masks(p, executor, live, ones=True), samples if views is not None else None)
            acts = {plans[i].act for i in ready}
            outs = {plans[i].node.output[0] for i in ready}
            began = clock() if paced is not None else 0.0  # rank 0's clock is a broadcast: only where it is read
            # Every node before the first layer not yet refitted has its final weights: the runs of the
            # next pass resume there instead of at the inputs (a pass per depth, not a whole run per depth).
            final = min(order[plans[i].node.name] for i in pending)
            # Data-parallel: each rank sums its share of the batches; the sums are then added up, so
            # every rank solves the same system. The dense reproduction is checked on global batch 0.
            for k, batch in enumerate(data.take(samples).batches(batch_size, shard=batch_shard())):
                check = k == 0 and rank() == 0
                cursor = cursors.pop(k, None)
                if cursor is None:
                    feeds = to_device(batch.inputs, dev)
                    cursor = _Cursor(feeds, dict(feeds), 0, 0)
                xp, pruned_live = _advance(executor, cursor.pruned, cursor.at, stop, final, live, acts)
                yd, dense_live = _advance(dense, cursor.dense, cursor.at, stop, final, None,
                                          outs | acts if check else outs)
                for p, out in ((plans[i], plans[i].node.output[0]) for i in ready):
                    if p.act in xp and out in yd:
                        p.gram.add(xp[p.act], yd[out], yd[p.act] if check else None)
                kept = _Cursor(pruned_live, dense_live, final, _nbytes(pruned_live, dense_live))
                if kept.nbytes + sum(c.nbytes for c in cursors.values()) <= _SNAPSHOT_BYTES:
                    cursors[k] = kept  # else this batch starts from the inputs again next pass
            if views is not None:
                _add_views([plans[i] for i in ready], executor, dense, live, views, max_views, samples=samples,
                           batch_size=batch_size, max_samples=max_samples, stop=stop, device=dev)
            _sum_over_ranks([plans[i].gram for i in ready])
            if paced is not None:
                paced.ran(pass_index, samples, clock() - began)
            for i in ready:
                if plans[i].gram.rows == 0:
                    results[i].skipped = "its input was not produced on the calibration data"
                else:
                    weight = plans[i].layer.weight
                    ids = units(weight) if units is not None else None
                    results[i], moved = _refit_one(plans[i], executor, live, ridge, ids, locked)
                    if moved is not None:
                        kept = moved.to(executor.weights.get(weight))
                        live[weight] = lambda t, m=kept: t * m
                        if masks is not None:
                            masks[weight] = moved.cpu()
                plans[i].gram = None  # free the sums before the next pass
                done |= 1 << i
            # Every rank solved the same sums alike; rank 0's weights, to be exact, before the next pass reads them.
            broadcast_tensors(executor.weights.get(name) for i in ready
                              for name in (plans[i].layer.weight, plans[i].layer.bias if plans[i].bias_fit else None)
                              if name is not None)
            pending = [i for i in pending if i not in ready]
            ran.append(samples)
            if progress:
                progress(bin(done).count("1"), len(layers))
    return RefitReport(results, time.perf_counter() - start, len(ran), ran)
