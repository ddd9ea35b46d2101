"""com.microsoft contrib ops as onnxruntime's transformer optimizer writes them.

EmbedLayerNormalization, Attention, MultiHeadAttention, SkipLayerNormalization, BiasGelu and FastGelu:
what ``onnxruntime.transformers.optimizer`` turns a BERT-style encoder into. The attention forms run
here are the ones a fused encoder or decoder uses without a KV cache: the packed input projection
of ``Attention`` (weights ``[in, q + k + v]``, optional ``qkv_hidden_sizes``) or the separate,
already projected ``query``/``key``/``value`` of ``MultiHeadAttention``; an optional bias; a key
mask as key lengths ``[B]``, a 0/1 mask ``[B, L]`` or ``[B, S, L]``; ``unidirectional`` (causal).
Masked scores get ``mask_filter_value`` added, as onnxruntime does. Anything else (past/present
state, attention bias, rotary embeddings, packed or 4-D inputs) is refused with the node and the
input or attribute named, not computed differently."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from smart_onnx.errors import GraphError
from smart_onnx.executor.base import NodeContext, OpModule
from smart_onnx.executor.ops.norm import weighed_layer_norm
from smart_onnx.executor.registry import register

__all__: list[str] = []  # handlers are reached through the registry

MS = "com.microsoft"


def _refuse_extra(ctx: NodeContext, allowed_attrs: set[str], inputs: int, outputs: int) -> None:
    """Refuse attributes, inputs beyond the first ``inputs`` and outputs beyond the first ``outputs`` that are set."""
    unknown = sorted(a for a in set(ctx.attrs) - allowed_attrs if ctx.attrs[a] not in (0, 0.0, None))
    if unknown:
        raise GraphError(f"{ctx.describe()} has attributes {unknown}; smart-onnx supports {sorted(allowed_attrs)}")
    extra = [name for name in ctx.node.input[inputs:] if name]
    if extra:
        raise GraphError(f"{ctx.describe()} has inputs {extra} (past state, attention bias, ...); smart-onnx supports "
                         f"only the first {inputs}")
    extra = [name for name in ctx.node.output[outputs:] if name]
    if extra:
        raise GraphError(f"{ctx.describe()} has present-state outputs {extra}; smart-onnx supports none")


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, S, N*H] -> [B, N, S, H]."""
    b, s, d = x.shape
    return x.reshape(b, s, heads, d // heads).transpose(1, 2)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, scale: float, mask: torch.Tensor | None,
            causal: bool, filter_value: float, where: str) -> torch.Tensor:
    """Scaled dot-product attention over [B, S, N*H] projections, the mask added as onnxruntime adds it."""
    for name, t in (("query", q), ("key", k), ("value", v)):
        if t.dim() != 3 or t.shape[-1] % heads:
            raise GraphError(f"{where}: {name} of shape {list(t.shape)} is not [batch, sequence, {heads} x head size]")
    qh, kh, vh = _split_heads(q, heads), _split_heads(k, heads), _split_heads(v, heads)
    scores = torch.matmul(qh, kh.transpose(-1, -2)) * (scale or 1.0 / math.sqrt(qh.shape[-1]))
    batch, seq, kv_len = q.shape[0], q.shape[1], k.shape[1]
    keep = None
    if mask is not None:
        if mask.dim() == 1 and mask.shape[0] == batch:  # key lengths (right padding)
            keep = (torch.arange(kv_len, device=mask.device) < mask.to(torch.int64)[:, None])[:, None, None, :]
        elif mask.dim() == 2 and tuple(mask.shape) == (batch, kv_len):
            keep = (mask != 0)[:, None, None, :]
        elif mask.dim() == 3 and tuple(mask.shape) == (batch, seq, kv_len):
            keep = (mask != 0)[:, None, :, :]
        else:
            raise GraphError(f"{where}: a mask of shape {list(mask.shape)} is not supported (key lengths [batch], "
                             "or 0/1 masks [batch, kv length] and [batch, sequence, kv length])")
    if causal:
        future = torch.ones(seq, kv_len, dtype=torch.bool, device=q.device).triu(1 + kv_len - seq)
        keep = ~future if keep is None else keep & ~future
    if keep is not None:
        scores = scores + torch.where(keep, 0.0, filter_value).to(scores.dtype)
    out = torch.matmul(torch.softmax(scores, dim=-1), vh)  # [B, N, S, Hv]
    return out.transpose(1, 2).reshape(batch, seq, -1)


@register("Attention", versions=(1,), domain=MS)
class Attention(OpModule):
    """com.microsoft Attention: the packed Q/K/V projection of ``input`` by ``weights`` (+ ``bias``), then attention.

    Inputs: input ``[B, S, in]``, weights ``[in, q + k + v]``, bias ``[q + k + v]``, mask_index.
    """

    @classmethod
    def from_node(cls, ctx: NodeContext) -> OpModule:
        _refuse_extra(ctx, {"num_heads", "qkv_hidden_sizes", "unidirectional", "scale", "mask_filter_value"}, 4, 1)
        if "num_heads" not in ctx.attrs:
            raise GraphError(f"{ctx.describe()} has no num_heads attribute")
        sizes = tuple(int(s) for s in ctx.attrs.get("qkv_hidden_sizes") or ())
        return cls(int(ctx.attrs["num_heads"]), sizes, bool(ctx.attrs.get("unidirectional", 0)),
                   float(ctx.attrs.get("scale", 0.0)), float(ctx.attrs.get("mask_filter_value", -10000.0)),
                   ctx.describe())

    def __init__(self, num_heads: int, qkv_hidden_sizes: tuple[int, ...] = (), unidirectional: bool = False,
                 scale: float = 0.0, mask_filter_value: float = -10000.0, where: str = "Attention") -> None:
        super().__init__()
        self.num_heads, self.sizes, self.causal = num_heads, qkv_hidden_sizes, unidirectional
        self.scale, self.filter_value, self.where = scale, mask_filter_value, where

    def forward(self, x: torch.Tensor, weights: torch.Tensor, bias: torch.Tensor | None = None,
                mask_index: torch.Tensor | None = None) -> torch.Tensor:
        qkv = torch.matmul(x, weights.to(x.dtype))
        if bias is not None:
            qkv = qkv + bias.to(x.dtype)
        sizes = self.sizes or (qkv.shape[-1] // 3,) * 3
        if len(sizes) != 3 or sum(sizes) != qkv.shape[-1]:
            raise GraphError(f"{self.where}: qkv_hidden_sizes {list(sizes)} do not add up to the weights' "
                             f"{qkv.shape[-1]} columns")
        q, k, v = torch.split(qkv, list(sizes), dim=-1)
        return _attend(q, k, v, self.num_heads, self.scale, mask_index, self.causal, self.filter_value, self.where)


@register("MultiHeadAttention", versions=(1,), domain=MS)
class MultiHeadAttention(OpModule):
    """com.microsoft MultiHeadAttention over projected ``query``, ``key``, ``value`` ``[B, S|L, N*H]`` (+ ``bias``).

    Inputs: query, key, value, bias ``[q + k + v]``, key_padding_mask.
    """

    @classmethod
    def from_node(cls, ctx: NodeContext) -> OpModule:
        _refuse_extra(ctx, {"num_heads", "unidirectional", "scale", "mask_filter_value"}, 5, 1)
        if "num_heads" not in ctx.attrs:
            raise GraphError(f"{ctx.describe()} has no num_heads attribute")
        if len(ctx.node.input) < 3 or not ctx.node.input[1] or not ctx.node.input[2]:
            raise GraphError(f"{ctx.describe()} packs Q, K and V into its query; smart-onnx supports separate "
                             "query, key and value inputs")
        return cls(int(ctx.attrs["num_heads"]), bool(ctx.attrs.get("unidirectional", 0)),
                   float(ctx.attrs.get("scale", 0.0)), float(ctx.attrs.get("mask_filter_value", -10000.0)),
                   ctx.describe())

    def __init__(self, num_heads: int, unidirectional: bool = False, scale: float = 0.0,
                 mask_filter_value: float = -10000.0, where: str = "MultiHeadAttention") -> None:
        super().__init__()
        self.num_heads, self.causal, self.scale = num_heads, unidirectional, scale
        self.filter_value, self.where = mask_filter_value, where

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, bias: torch.Tensor | None = None,
                key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        if bias is not None:
            dq, dk = query.shape[-1], key.shape[-1]
            b = bias.to(query.dtype)
            query, key, value = query + b[:dq], key + b[dq:dq + dk], value + b[dq + dk:]
        return _attend(query, key, value, self.num_heads, self.scale, key_padding_mask, self.causal,
                       self.filter_value, self.where)


@register("SkipLayerNormalization", versions=(1,), domain=MS)
class SkipLayerNormalization(OpModule):
    """com.microsoft SkipLayerNormalization: LayerNorm of ``input + skip (+ bias)`` over the last axis.

    Outputs: the normalised value, its mean and inverse standard deviation (``[.., 1]``) and the sum
    ``input + skip + bias``. The variance is ``E[x^2] - E[x]^2``, the order onnxruntime's CPU kernel uses. With
    ``channel_weights`` (a channel mask over the hidden dimension) the mean and variance are weighted means, as
    LayerNormalization's: over the kept channels, what the pruned model's node computes.
    """

    @classmethod
    def from_node(cls, ctx: NodeContext) -> OpModule:
        _refuse_extra(ctx, {"epsilon"}, 5, 4)
        return cls(float(ctx.attrs.get("epsilon", 1e-12)))

    def __init__(self, epsilon: float = 1e-12) -> None:
        super().__init__()
        self.epsilon = epsilon

    weighs_channels = True

    def forward(self, x: torch.Tensor, skip: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor | None = None,
                bias: torch.Tensor | None = None,
                channel_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        total = x + skip if bias is None else x + skip + bias.to(x.dtype)
        if channel_weights is not None:  # over the kept channels of a channel mask, as LayerNormalization
            out, mean, std = weighed_layer_norm(total, gamma.to(x.dtype), None if beta is None else beta.to(x.dtype),
                                                channel_weights, self.epsilon)
            return out, mean, 1 / std, total
        mean = total.mean(dim=-1, keepdim=True)
        inv_std = torch.rsqrt((total * total).mean(dim=-1, keepdim=True) - mean * mean + self.epsilon)
        out = (total - mean) * inv_std * gamma.to(x.dtype)
        if beta is not None:
            out = out + beta.to(x.dtype)
        return out, mean, inv_std, total


@register("EmbedLayerNormalization", versions=(1,), domain=MS)
class EmbedLayerNormalization(OpModule):
    """com.microsoft EmbedLayerNormalization: BERT's embeddings, the sum of word, position and (optional) segment
    rows normalised over the hidden axis.

    Inputs: input_ids ``[B, S]``, segment_ids, word_embedding ``[V, H]``, position_embedding ``[P, H]``,
    segment_embedding, gamma, beta, mask ``[B, S]``, position_ids (default ``0 .. S-1``). Outputs: the normalised
    sum, the mask index (the number of ones in each row of ``mask``, int32 ``[B]``: the key lengths ``Attention``
    reads; zeros without a mask) and the sum before normalisation. The variance is taken around the mean, as
    onnxruntime's CPU kernel does (torch's layer norm, as LayerNormalization).
    """

    @classmethod
    def from_node(cls, ctx: NodeContext) -> OpModule:
        _refuse_extra(ctx, {"epsilon", "mask_index_type"}, 9, 3)
        if int(ctx.attrs.get("mask_index_type", 1)) not in (0, 1):
            raise GraphError(f"{ctx.describe()} has mask_index_type {ctx.attrs['mask_index_type']}; smart-onnx "
                             "supports 0 and 1")
        return cls(float(ctx.attrs.get("epsilon", 1e-12)))

    def __init__(self, epsilon: float = 1e-12) -> None:
        super().__init__()
        self.epsilon = epsilon

    weighs_channels = True

    def forward(self, input_ids: torch.Tensor, segment_ids: torch.Tensor | None, word: torch.Tensor,
                position: torch.Tensor, segment: torch.Tensor | None = None, gamma: torch.Tensor | None = None,
                beta: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None,
                channel_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        ids = input_ids.long()
        positions = torch.arange(ids.shape[-1], device=ids.device) if position_ids is None else position_ids.long()
        total = word[ids] + position.to(word.dtype)[positions]
        if segment is not None and segment_ids is not None:
            total = total + segment.to(word.dtype)[segment_ids.long()]
        gamma = None if gamma is None else gamma.to(total.dtype)
        beta = None if beta is None else beta.to(total.dtype)
        if channel_weights is not None:  # over the kept channels of a channel mask, as LayerNormalization
            scale = total.new_ones(()) if gamma is None else gamma
            out = weighed_layer_norm(total, scale, beta, channel_weights, self.epsilon)[0]
        else:
            out = F.layer_norm(total, total.shape[-1:], gamma, beta, self.epsilon)
        lengths = (mask != 0).sum(dim=-1) if mask is not None else torch.zeros(ids.shape[0], device=ids.device)
        return out, lengths.to(torch.int32), total


@register("BiasGelu", versions=(1,), domain=MS)
class BiasGelu(OpModule):
    """com.microsoft BiasGelu: the exact (erf) GELU of ``A + B``."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.gelu(a + b.to(a.dtype))


@register("FastGelu", versions=(1,), domain=MS)
class FastGelu(OpModule):
    """com.microsoft FastGelu: the tanh approximation of GELU of ``X (+ bias)``."""

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        return torch.nn.functional.gelu(x if bias is None else x + bias.to(x.dtype), approximate="tanh")
