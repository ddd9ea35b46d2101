"""Export stage: rewrite the original ONNX graph (block-sparse weights or removed channels).

Every rewrite is a sequence of small passes (:mod:`smart_onnx.rewrite.passes`) that ends
in :class:`Validate`.
"""

from __future__ import annotations

from smart_onnx.rewrite.align import round_channels
from smart_onnx.rewrite.block import BLOCK_SPARSITY_KEY, BlockMask, apply_block_masks, read_block_sparsity
from smart_onnx.rewrite.passes import Pass, PassResult, Sequential, Validate, run_passes, validate
from smart_onnx.rewrite.prune_channels import ChannelPlan, apply_channel_masks, plan_channel_removal
from smart_onnx.rewrite.set_weights import set_weights
from smart_onnx.rewrite.sparse_storage import SPARSE_FORMATS
from smart_onnx.rewrite.weigh_statistics import weigh_statistics

__all__ = [
    "BLOCK_SPARSITY_KEY",
    "SPARSE_FORMATS",
    "BlockMask",
    "ChannelPlan",
    "Pass",
    "PassResult",
    "Sequential",
    "Validate",
    "apply_block_masks",
    "apply_channel_masks",
    "plan_channel_removal",
    "read_block_sparsity",
    "round_channels",
    "run_passes",
    "set_weights",
    "validate",
    "weigh_statistics",
]
