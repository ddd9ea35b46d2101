"""Recurrent layers: LSTM, GRU and RNN (forward, reverse, bidirectional; layout 0 and 1).

The input projection ``X W^T + Wb`` is one matmul over every time step and direction; only
the recurrence ``H R^T`` loops over time, with both directions of a bidirectional layer
advanced together by one batched matmul (the reverse direction walks a time-flipped copy).
``sequence_lens`` is honoured as onnxruntime does: past a sample's length its state is
held and its ``Y`` rows are zero; the reverse direction starts at the sample's last step.
W, R, B (and LSTM's peepholes P) are trainable weights; initial states stay constants.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import torch

from smart_onnx.errors import GraphError, UnsupportedOpError
from smart_onnx.executor.base import NodeContext, OpModule
from smart_onnx.executor.registry import register

__all__: list[str] = []  # handlers are reached through the registry

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu,
}
_DIRECTIONS = ("forward", "reverse", "bidirectional")
State = tuple[torch.Tensor, ...]


class _Recurrent(OpModule):
    """Shared parsing, direction batching, sequence_lens masking and layout of the three ops.

    A subclass sets ``gates`` (gate blocks in W and R), ``defaults`` (its activations per
    direction), ``states`` (h, or h and c) and implements ``cell``.
    """

    gates: ClassVar[int]
    defaults: ClassVar[tuple[str, ...]]
    states: ClassVar[int] = 1
    extra_attrs: ClassVar[tuple[str, ...]] = ()
    _attrs = ("activation_alpha", "activation_beta", "activations", "clip", "direction", "hidden_size", "layout")

    @classmethod
    def from_node(cls, ctx: NodeContext) -> OpModule:
        attrs = dict(ctx.attrs)
        allowed = (*cls._attrs, *cls.extra_attrs)
        unknown = sorted(set(attrs) - set(allowed))
        if unknown:
            raise GraphError(f"{ctx.describe()} has attributes {unknown}; supported: {sorted(allowed)}")

        def refuse(name: str, why: str) -> UnsupportedOpError:
            return UnsupportedOpError(
                f"{ctx.describe()} (opset version {ctx.version}) has {name}={attrs[name]!r}, which smart-onnx "
                f"does not support ({why})")

        for name in ("clip", "activation_alpha", "activation_beta"):
            if name in attrs:
                raise refuse(name, "leave it out")
        if attrs.get("input_forget", 0):
            raise refuse("input_forget", "only 0")
        direction = attrs.get("direction", "forward")
        if direction not in _DIRECTIONS:
            raise GraphError(f"{ctx.describe()} has direction={direction!r}; supported: {list(_DIRECTIONS)}")
        layout = int(attrs.get("layout", 0))
        if layout not in (0, 1):
            raise GraphError(f"{ctx.describe()} has layout={layout}; supported: 0, 1")
        dirs = 2 if direction == "bidirectional" else 1
        names = [a.lower() for a in attrs.get("activations", [])] or [a.lower() for a in cls.defaults] * dirs
        per_dir = len(names) // dirs if len(names) % dirs == 0 else 0
        if per_dir != len(cls.defaults) or names[:per_dir] * dirs != names or not set(names) <= set(_ACTIVATIONS):
            raise refuse("activations", f"{len(cls.defaults)} per direction from {sorted(_ACTIVATIONS)}, the same "
                                        "for both directions")
        hidden = attrs.get("hidden_size")
        return cls(direction, layout, names[:per_dir], None if hidden is None else int(hidden),
                   int(attrs.get("linear_before_reset", 0)))

    def __init__(self, direction: str, layout: int, activations: Sequence[str], hidden_size: int | None,
                 linear_before_reset: int = 0) -> None:
        super().__init__()
        self.reverse = {"forward": [False], "reverse": [True], "bidirectional": [False, True]}[direction]
        self.layout, self.hidden_size = layout, hidden_size
        self.act = [_ACTIVATIONS[a] for a in activations]
        self.linear_before_reset = bool(linear_before_reset)

    def cell(self, xp: torch.Tensor, state: State, r: torch.Tensor, rb: torch.Tensor | None,
             p: torch.Tensor | None) -> State:
        """One time step for every direction: ``xp`` [D, N, G*H] projected input, ``state`` [D, N, H] each."""
        raise NotImplementedError

    def run(self, x: torch.Tensor, w: torch.Tensor, r: torch.Tensor, b: torch.Tensor | None,
            lens: torch.Tensor | None, initial: Sequence[torch.Tensor | None], p: torch.Tensor | None = None,
            ) -> tuple[torch.Tensor, ...]:
        if self.layout == 1:  # [N, T, I] -> [T, N, I]; initial states [N, D, H] -> [D, N, H]
            x = x.transpose(0, 1)
            initial = [None if s is None else s.transpose(0, 1) for s in initial]
        steps, batch = x.shape[0], x.shape[1]
        dirs, hidden = w.shape[0], r.shape[-1]
        if dirs != len(self.reverse) or (self.hidden_size is not None and hidden != self.hidden_size):
            raise ValueError(f"W has {dirs} directions and R hidden size {hidden}; the attributes say "
                             f"{len(self.reverse)} and {self.hidden_size}")
        g = self.gates * hidden
        wb, rb = (None, None) if b is None else (b[:, :g], b[:, g:])
        # One matmul for every step and direction: [D, T*N, G*H] -> [D, T, N, G*H].
        xp = torch.matmul(x.reshape(1, steps * batch, -1), w.transpose(1, 2))
        if wb is not None:
            xp = xp + wb.unsqueeze(1)
        xp = self._time_flip(xp.reshape(dirs, steps, batch, g), dir_axis=0)
        state = tuple(x.new_zeros(dirs, batch, hidden) if s is None else s.to(x.dtype) for s in initial)
        valid = self._valid(lens, steps, batch, x.device)
        outputs = []
        # unbind, not xp[:, t]: each select's backward would allocate a zero tensor the size of all of xp.
        for t, xp_t in enumerate(xp.unbind(1)):
            new = self.cell(xp_t, state, r, rb, p)
            if valid is not None:
                ok = valid[:, t]
                new = tuple(torch.where(ok, n, s) for n, s in zip(new, state))
                outputs.append(torch.where(ok, new[0], 0.0))
            else:
                outputs.append(new[0])
            state = new
        y = self._time_flip(torch.stack(outputs), dir_axis=1)  # [T, D, N, H]
        if self.layout == 1:
            return (y.permute(2, 0, 1, 3), *(s.transpose(0, 1) for s in state))
        return (y, *state)

    def _time_flip(self, t: torch.Tensor, dir_axis: int) -> torch.Tensor:
        """Reverse time in the reverse-running directions of ``t`` ([D, T, ...] or [T, D, ...])."""
        if not any(self.reverse):
            return t
        if len(self.reverse) == 1:
            return t.flip(1 - dir_axis)
        # Once the direction axis is selected away, time is axis 0 in both layouts.
        parts = [t.select(dir_axis, d).flip(0) if rev else t.select(dir_axis, d) for d, rev in enumerate(self.reverse)]
        return torch.stack(parts, dir_axis)

    def _valid(self, lens: torch.Tensor | None, steps: int, batch: int, device: torch.device) -> torch.Tensor | None:
        """[D, T, N, 1] bool: step t of direction d reads a time inside the sample; None when all are."""
        if lens is None or bool((lens.to(torch.int64) >= steps).all()):
            return None
        times = torch.arange(steps, device=device)
        per_dir = torch.stack([times.flip(0) if rev else times for rev in self.reverse])  # [D, T]
        return (per_dir[:, :, None] < lens.to(device, torch.int64)[None, None, :]).unsqueeze(-1)


def _recur(h: torch.Tensor, r: torch.Tensor, rb: torch.Tensor | None) -> torch.Tensor:
    """``h R^T + Rb`` per direction: [D, N, H] x [D, G*H, H] -> [D, N, G*H]."""
    if rb is None:
        return torch.bmm(h, r.transpose(1, 2))
    return torch.baddbmm(rb.unsqueeze(1), h, r.transpose(1, 2))


@register("LSTM", versions=(7, 14, 22))
class LSTM(_Recurrent):
    """ONNX LSTM: gates i, o, f, c; optional peepholes P = [Pi, Po, Pf]; outputs Y, Y_h, Y_c."""

    gates, defaults, states = 4, ("Sigmoid", "Tanh", "Tanh"), 2
    extra_attrs = ("input_forget",)
    static_inputs = frozenset({5, 6})  # initial_h, initial_c: states, not weights

    def cell(self, xp: torch.Tensor, state: State, r: torch.Tensor, rb: torch.Tensor | None,
             p: torch.Tensor | None) -> State:
        h, c = state
        f_act, g_act, h_act = self.act
        i, o, f, cc = (xp + _recur(h, r, rb)).chunk(4, dim=-1)
        if p is not None:
            pi, po, pf = (q.unsqueeze(1) for q in p.chunk(3, dim=-1))
            i, f = i + pi * c, f + pf * c
        c = f_act(f) * c + f_act(i) * g_act(cc)
        if p is not None:
            o = o + po * c
        return f_act(o) * h_act(c), c

    def forward(self, x: torch.Tensor, w: torch.Tensor, r: torch.Tensor, b: torch.Tensor | None = None,
                lens: torch.Tensor | None = None, h0: torch.Tensor | None = None, c0: torch.Tensor | None = None,
                p: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        return self.run(x, w, r, b, lens, [h0, c0], p)


@register("GRU", versions=(7, 14, 22))
class GRU(_Recurrent):
    """ONNX GRU: gates z, r, h; ``linear_before_reset`` (torch's GRU exports 1) applies r after R_h."""

    gates, defaults = 3, ("Sigmoid", "Tanh")
    extra_attrs = ("linear_before_reset",)
    static_inputs = frozenset({5})

    def cell(self, xp: torch.Tensor, state: State, r: torch.Tensor, rb: torch.Tensor | None,
             p: torch.Tensor | None) -> State:
        (h,) = state
        f_act, g_act = self.act
        hidden = h.shape[-1]
        xz, xr, xh = xp.chunk(3, dim=-1)
        if self.linear_before_reset:
            hz, hr, hh = _recur(h, r, rb).chunk(3, dim=-1)
            z, reset = f_act(xz + hz), f_act(xr + hr)
            cand = g_act(xh + reset * hh)
        else:
            hz, hr = _recur(h, r[:, :2 * hidden], None if rb is None else rb[:, :2 * hidden]).chunk(2, dim=-1)
            z, reset = f_act(xz + hz), f_act(xr + hr)
            cand = g_act(xh + _recur(reset * h, r[:, 2 * hidden:], None if rb is None else rb[:, 2 * hidden:]))
        return ((1 - z) * cand + z * h,)

    def forward(self, x: torch.Tensor, w: torch.Tensor, r: torch.Tensor, b: torch.Tensor | None = None,
                lens: torch.Tensor | None = None, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        return self.run(x, w, r, b, lens, [h0])


@register("RNN", versions=(7, 14, 22))
class RNN(_Recurrent):
    """ONNX RNN: ``H = f(X Wi + H Ri + Wbi + Rbi)``, f Tanh unless ``activations`` says Relu or Sigmoid."""

    gates, defaults = 1, ("Tanh",)
    static_inputs = frozenset({5})

    def cell(self, xp: torch.Tensor, state: State, r: torch.Tensor, rb: torch.Tensor | None,
             p: torch.Tensor | None) -> State:
        return (self.act[0](xp + _recur(state[0], r, rb)),)

    def forward(self, x: torch.Tensor, w: torch.Tensor, r: torch.Tensor, b: torch.Tensor | None = None,
                lens: torch.Tensor | None = None, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        return self.run(x, w, r, b, lens, [h0])
