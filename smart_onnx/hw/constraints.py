"""Hardware profile records: what a target NPU accelerates (frozen dataclasses, no I/O).

A :class:`Profile` is what :func:`smart_onnx.hw.profile.load_profile` returns; the
format of the TOML file it comes from is documented in ``docs/profiles.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MODES", "OP_KEYS", "PRECISIONS", "OpRule", "Profile", "format_block"]

# Op types a profile can name (the prunable ops), plus the fallback entry.
OP_KEYS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "default")
MODES = ("block", "channel", "nm")
# Weight precisions a profile may name (an INT8 QDQ weight is int8; float weights by their element type).
PRECISIONS = ("float32", "float16", "bfloat16", "int8", "uint8", "int4")


@dataclass(frozen=True)
class OpRule:
    """The sparse patterns the NPU accelerates for one op type.

    Attributes:
        blocks: allowed block shapes in canonical ``O x I x k...`` order, preferred first
            (the search uses the first; the checker accepts any).
        nm: allowed N:M patterns ``(n, m)`` along the input axis: at most ``n`` of every
            ``m`` consecutive weights are non-zero.
    """

    blocks: tuple[tuple[int, ...], ...] = ()
    nm: tuple[tuple[int, int], ...] = ()
    # When the sparse kernels apply at all (a layer that misses one runs dense, so it must stay dense):
    in_channel_multiple: int = 1  # input channels per group (the weight's input axis) a multiple of this
    out_channel_multiple: int = 1  # output channels a multiple of this
    min_reduction: int = 1  # input channels per group x kernel positions (each output's sum) at least this
    min_out_channels: int = 1  # output channels at least this
    min_macs: int = 0  # multiply-accumulates per sample at least this (needs activation shapes)

    @property
    def allows_sparsity(self) -> bool:
        return bool(self.blocks or self.nm)

    @property
    def conditions(self) -> dict[str, int]:
        """The eligibility fields that differ from their defaults."""
        defaults = {"in_channel_multiple": 1, "out_channel_multiple": 1, "min_reduction": 1, "min_out_channels": 1,
                    "min_macs": 0}
        return {k: getattr(self, k) for k, v in defaults.items() if getattr(self, k) != v}

    def to_dict(self) -> dict[str, object]:
        return {"blocks": [format_block(b) for b in self.blocks], "nm": [f"{n}:{m}" for n, m in self.nm],
                **self.conditions}


@dataclass(frozen=True)
class Profile:
    """A target NPU: sparse patterns per op type and channel/sparsity/density rules.

    Attributes:
        name: short name (``npu-block``); built-in profiles are loaded by it.
        description: one line for ``smart-onnx targets``.
        ops: ``(op type, rule)`` pairs; ``"default"`` covers op types not listed. An op
            type with no entry and no default allows no sparse pattern (dense weights only).
        channel_alignment: kept output-channel counts must be a multiple of this.
        min_channels: kept output-channel counts must be at least this.
        max_layer_sparsity: largest fraction of zero weights any one layer may have.
        dense_ops: op types whose layers must keep every weight.
        dense_layers: node names or ``fnmatch`` patterns of layers that must keep every
            weight; ``"first"``/``"last"`` name the first/last prunable layer.
        mode: the pruning mode ``prune`` uses with this target unless told otherwise.
        precisions: weight precisions the target's kernels accelerate (``float32``,
            ``float16``, ``int8``...); empty: any.
        references: where the rules come from (documentation, source code, measurements).
        source: where the profile came from (``built-in`` or a file path).
    """

    name: str
    description: str = ""
    ops: tuple[tuple[str, OpRule], ...] = ()
    channel_alignment: int = 1
    min_channels: int = 1
    max_layer_sparsity: float = 1.0
    dense_ops: tuple[str, ...] = ()
    dense_layers: tuple[str, ...] = ()
    mode: str = "channel"
    precisions: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    source: str = "<memory>"

    def rule_for(self, op_type: str) -> OpRule:
        """The rule for ``op_type``: its own entry, else the ``default`` entry, else dense only."""
        rules = dict(self.ops)
        return rules.get(op_type, rules.get("default", OpRule()))

    @property
    def modes(self) -> tuple[str, ...]:
        """Pruning modes whose output can comply: channel always (it leaves weights dense)."""
        rules = [rule for _, rule in self.ops]
        found = ["block"] if any(r.blocks for r in rules) else []
        found += ["nm"] if any(r.nm for r in rules) else []
        return (*found, "channel")

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name, "description": self.description, "source": self.source, "mode": self.mode,
            "modes": list(self.modes), "ops": {op: rule.to_dict() for op, rule in self.ops},
            "channel_alignment": self.channel_alignment, "min_channels": self.min_channels,
            "max_layer_sparsity": self.max_layer_sparsity, "dense_ops": list(self.dense_ops),
            "dense_layers": list(self.dense_layers), "precisions": list(self.precisions),
            "references": list(self.references),
        }


def format_block(block: tuple[int, ...]) -> str:
    """(16, 8, 1, 1) -> ``"16x8x1x1"``."""
    return "x".join(str(d) for d in block)
