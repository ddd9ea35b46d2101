"""Channel rules for multi-head attention: one attention head is one channel of its group.

Exporters write multi-head attention as projections (separate Q/K/V MatMuls, or one fused
QKV MatMul and a Split), a Reshape of each ``[B, S, H*D]`` projection to ``[B, S, H, D]``,
Transposes, ``MatMul(Q, K^T)``, Softmax (a scale and masks on the way), ``MatMul(P, V)``,
the Transpose back, a Reshape to ``[B, S, H*D]`` and the output projection.

* :func:`head_split` / :func:`tie_heads`: a Reshape that splits the channel (last) axis into ``[H, D]``
  (or a fused QKV's ``[3, H, D]``) ties the channels of each head (they go together) and carries the
  heads on the ``H`` axis; the Reshape target's ``H`` entry becomes a ShapeEdit that drops by one per
  removed head.
* :func:`batched_matmul`: a MatMul of two runtime tensors whose channels sit on a batch axis
  (the heads of Q and K, of the attention weights and V) ties them, head for head, and keeps
  them on that axis. Channels on one of the two multiplied axes still freeze.

* :func:`multihead_attention`: onnxruntime's com.microsoft ``MultiHeadAttention`` does the Reshapes,
  the two MatMuls and the Softmax in one node over the projected ``[B, S, H*D]`` query, key and value:
  its heads are tied across the three as the batched MatMuls tie them, and ``num_heads`` is the ``H``
  entry that drops by one per removed head.

The Reshape back to ``[B, S, H*D]`` needs no rule of its own: merging the ``H`` axis with
``D`` is a reshape :func:`~smart_onnx.graph.shape_rules.regroup` follows, and its target's
``H*D`` entry drops by ``D`` per removed head. Removing a head's rows from Q, K and V and its
columns from the output projection is then what removing any coupled channel is; zeroing
them (the search's mask) gives the head all-zero scores, so uniform attention over all-zero
values: exactly what removing it computes.
"""

from __future__ import annotations

import numpy as np
import onnx

from smart_onnx.graph.coupling import Layout, Tracer, merge_operands
from smart_onnx.graph.groups import Role
from smart_onnx.graph.view import attr

__all__ = ["batched_matmul", "head_split", "multihead_attention", "tie_heads"]


def head_split(in_shape: tuple[int, ...], out_shape: tuple[int, ...], axis: int) -> tuple[int, ...] | None:
    """The trailing dims ``(H, D)`` or ``(G, H, D)`` (a fused QKV: G = 3) when a reshape splits the last
    (channel) axis into them, else None. Heads are on the second-to-last output axis either way."""
    trailing = tuple(out_shape[len(in_shape) - 1:])
    if axis != len(in_shape) - 1 or len(trailing) not in (2, 3) or tuple(out_shape[:axis]) != tuple(in_shape[:-1]):
        return None
    if trailing[-2] < 2 or min(trailing) < 1 or int(np.prod(trailing)) != in_shape[-1]:
        return None
    return trailing


def tie_heads(t: Tracer, lay: Layout, split: tuple[int, ...]) -> np.ndarray:
    """Tie every channel of each head of ``lay`` (split as ``[H, D]`` or ``[G, H, D]``); one owner per head."""
    grid = lay.owners.reshape(split)
    per_head = grid.reshape(split[-2], -1) if len(split) == 2 else grid.transpose(1, 0, 2).reshape(split[-2], -1)
    for j in range(1, per_head.shape[1]):
        t.tie(per_head[:, 0], per_head[:, j])
    return per_head[:, 0].copy()


def batched_matmul(t: Tracer, node: onnx.NodeProto) -> None:
    """A MatMul of runtime tensors: channels on a batch axis (attention heads) are tied and kept there."""
    layouts = t.input_layouts(node)
    if not layouts:
        return
    rank = t.rank(node.output[0])
    if rank is None or rank < 3 or any(lay.axis + rank - lay.rank >= rank - 2 for _, lay in layouts):
        t.freeze_inputs(node, "has no constant weight and multiplies along the traced channel axis, "
                              "so the channels it reads cannot be traced")
        return
    out = merge_operands(t, node, [0, 1], rank, Role.ELEMENTWISE_CONST)
    if out is not None:
        t.set_layout(node.output[0], out, node)


# MultiHeadAttention's inputs after the key padding mask (attention bias, past key and value, ...) and outputs after
# the first (present key and value, ...): KV caches and score biases whose layout the rule does not follow.
_MHA_INPUTS, _MHA_OUTPUTS = 5, 1


def multihead_attention(t: Tracer, node: onnx.NodeProto) -> None:
    """com.microsoft MultiHeadAttention over the projected ``[B, S|L, N*H]`` query, key and value: heads as channels.

    Head ``h`` is positions ``h*H..(h+1)*H`` of the query and the key and ``h*Hv..`` of the value, tied across the
    three (the channels of their projections, so their output columns go per head), and positions ``h*Hv..`` of
    the output, which the output projection reads; the packed ``bias`` ``[q + k + v]`` is sliced with them and
    ``num_heads`` drops by one per removed head. Key and value may come from another sequence (cross-attention):
    heads never mix positions, so which sequence they read does not matter. Packed forms (Q, K, V in the query,
    K and V in the key, 4-D ``[B, N, L, H]`` inputs), KV caches and attention biases freeze what the node reads.
    """
    heads = int(attr(node, "num_heads", 0))
    extra = [name for name in [*node.input[_MHA_INPUTS:], *node.output[_MHA_OUTPUTS:]] if name]
    if heads < 1 or extra:
        what = f"attention bias or key/value cache inputs or outputs {extra}" if extra else "no num_heads"
        t.freeze_inputs(node, f"has {what}, so its heads cannot be traced")
        return
    if any(i == 4 for i, _ in t.input_layouts(node)):
        t.freeze_inputs(node, "reads traced channels as its key padding mask")
        return
    parts: list[Layout] = []
    for i, name in enumerate(("query", "key", "value")):
        value = node.input[i] if i < len(node.input) else ""
        lay = t.layout(value)
        if not value:
            t.freeze_inputs(node, f"has no {name} input (packed into another), so its heads cannot be traced")
            return
        if lay is None:
            t.freeze_inputs(node, f"reads {name} {value!r}, whose channels the analysis cannot trace, so its heads "
                                  "cannot lose them")
            return
        if lay.rank != 3 or lay.axis != 2 or len(lay.owners) % heads:
            t.freeze_inputs(node, f"reads {name} {value!r} of rank {lay.rank} with {len(lay.owners)} channels on axis "
                                  f"{lay.axis}, not [batch, sequence, {heads} x head size]")
            return
        parts.append(lay)
    owners = [tie_heads(t, lay, (heads, len(lay.owners) // heads)) for lay in parts]
    t.tie(owners[0], owners[1])
    t.tie(owners[0], owners[2])
    bias = node.input[3] if len(node.input) > 3 else ""
    if bias:
        source = t.initializer_behind(bias)
        width = sum(len(lay.owners) for lay in parts)
        if source is None or t.shape(source) != (width,):
            t.freeze_inputs(node, f"adds bias {bias!r}, which is not a constant [{width}] (q + k + v)")
            return
        t.add_slice(source, 0, np.concatenate([lay.owners for lay in parts]), Role.AFFINE_CONST, node)
    t.add_edit(node, "num_heads", 0, heads, owners[0])
    t.set_layout(node.output[0], Layout(2, 3, np.repeat(owners[2], len(parts[2].owners) // heads)), node)
