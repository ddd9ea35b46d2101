"""Generated transformer models for the LayerNorm, verification and attention-head tests.

* :func:`moments_layernorm_model`: onnx.helper graph with LayerNorm written as ``E[x^2] - E[x]^2``,
  Sqrt, Reciprocal, Mul (how TF-style exporters write it) after an embedding whose outputs sit far
  from zero: float32 rounding differences of the MatMul before it are amplified past 1e-4.
* :func:`fused_attention_model`: onnx.helper graph with onnxruntime's fused com.microsoft ``Attention`` (packed
  Q/K/V weight, ``num_heads``), its output projection, a residual FFN and a head.
* :func:`contrib_transformer`: onnx.helper graph as onnxruntime's transformer optimizer writes it with
  com.microsoft ``MultiHeadAttention`` (projected Q/K/V, packed bias, ``num_heads``) and ``SkipLayerNormalization``
  (the residual Add and LayerNorm in one node), ``BiasGelu`` and ``FastGelu``: a post-LN encoder with a classifier,
  or a pre-LN causal decoder whose residual stream runs through SkipLayerNormalization's sum output and whose LM
  head is the token table itself.
* :func:`encoder` / :func:`decoder`: small torch modules exported with the legacy exporter; at opset
  14 LayerNorm is written decomposed (ReduceMean, Sub, Pow, Sqrt, Div), at 17 fused. The encoder returns
  its mean-pooled hidden states (a sentence embedding) or, with ``classes``, a classifier's logits. The
  exporter folds the decoder's tied LM head into a transposed copy of the table; ``decoder(tied=True)`` reads
  the table itself through a Transpose, as a tied head is when the copy is not folded.
"""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from smart_onnx.model import OnnxModel, normalize

__all__ = ["contrib_transformer", "decoder", "encoder", "export", "fused_attention_model", "moments_layernorm_model",
           "token_batch"]


def _moments_layernorm(prefix: str, x: str, width: int, nodes: list, inits: list, rng) -> str:
    p = prefix
    nodes += [
        helper.make_node("ReduceMean", [x], [p + "m"], axes=[-1]),
        helper.make_node("Mul", [x, x], [p + "xx"]),
        helper.make_node("ReduceMean", [p + "xx"], [p + "m2"], axes=[-1]),
        helper.make_node("Mul", [p + "m", p + "m"], [p + "mm"]),
        helper.make_node("Sub", [p + "m2", p + "mm"], [p + "var"]),
        helper.make_node("Add", [p + "var", p + "eps"], [p + "ve"]),
        helper.make_node("Sqrt", [p + "ve"], [p + "sd"]),
        helper.make_node("Reciprocal", [p + "sd"], [p + "inv"]),
        helper.make_node("Sub", [x, p + "m"], [p + "xc"]),
        helper.make_node("Mul", [p + "xc", p + "inv"], [p + "n"]),
        helper.make_node("Mul", [p + "n", p + "g"], [p + "ng"]),
        helper.make_node("Add", [p + "ng", p + "b"], [p + "out"]),
    ]
    inits += [numpy_helper.from_array(np.array(1e-6, np.float32), p + "eps"),
              numpy_helper.from_array((1 + 0.1 * rng.standard_normal(width)).astype(np.float32), p + "g"),
              numpy_helper.from_array((0.1 * rng.standard_normal(width)).astype(np.float32), p + "b")]
    return p + "out"


def fused_attention_model(qkv_hidden_sizes: tuple[int, int, int] | None = None, key_mask: bool = True,
                          width: int = 32, seq: int = 6, ffn: int = 64, heads: int = 4) -> OnnxModel:
    """x -> Attention (packed [width, q+k+v] projection, ``heads`` heads) -> output projection -> residual Add -> FFN
    -> head.

    Inputs ``x`` [N, seq, width] and, with ``key_mask``, ``mask`` [N, seq] int32 (1: attend); output ``y`` [N, seq, 8].
    With ``qkv_hidden_sizes`` the value projection may be wider than query and key (onnxruntime allows it).
    """
    q, k, v = qkv_hidden_sizes or (width, width, width)
    rng = np.random.default_rng(0)

    def f(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * shape[0] ** -0.5).astype(np.float32)

    inits = {"w": f(width, q + k + v), "b": 0.1 * f(q + k + v), "wo": f(v, width), "bo": 0.1 * f(width),
             "w1": f(width, ffn), "w2": f(ffn, width), "wy": f(width, 8)}
    attrs = {"num_heads": heads, **({"qkv_hidden_sizes": [q, k, v]} if qkv_hidden_sizes else {})}
    nodes = [
        helper.make_node("Attention", ["x", "w", "b", "mask" if key_mask else ""], ["a"], domain="com.microsoft",
                         name="attn", **attrs),
        helper.make_node("MatMul", ["a", "wo"], ["o"], name="attn_out"),
        helper.make_node("Add", ["o", "bo"], ["ob"]),
        helper.make_node("Add", ["x", "ob"], ["r"]),
        helper.make_node("MatMul", ["r", "w1"], ["h"], name="ffn1"),
        helper.make_node("Relu", ["h"], ["hr"]),
        helper.make_node("MatMul", ["hr", "w2"], ["f"], name="ffn2"),
        helper.make_node("Add", ["r", "f"], ["r2"]),
        helper.make_node("MatMul", ["r2", "wy"], ["y"], name="head"),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", seq, width])]
    if key_mask:
        inputs.append(helper.make_tensor_value_info("mask", TensorProto.INT32, ["N", seq]))
    graph = helper.make_graph(nodes, "fused_attention", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", seq, 8])],
                              [numpy_helper.from_array(a, name) for name, a in inits.items()])
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return normalize(model)


def embed_layernorm_model(vocab: int = 50, seq: int = 8, dim: int = 32, heads: int = 4, ffn: int = 64,
                          segments: bool = True, sum_output: bool = True) -> OnnxModel:
    """BERT's embeddings as onnxruntime's optimizer fuses them: int64 ``input_ids`` and ``attention_mask`` cast to
    int32 into com.microsoft ``EmbedLayerNormalization`` (word, position and, with ``segments``, segment tables),
    whose mask index (key lengths) feeds a fused ``Attention``; its output projection and residual go into
    ``SkipLayerNormalization``, then an FFN and a per-token head ``y`` [N, seq, 8]. The embedding sum before the
    LayerNorm (its third output) is the graph output ``embedding_sum`` with ``sum_output``; without it no output
    carries the hidden width, so channel mode may prune it."""
    rng = np.random.default_rng(0)

    def f(*shape: int, scale: float | None = None) -> np.ndarray:
        return (rng.standard_normal(shape) * (shape[0] ** -0.5 if scale is None else scale)).astype(np.float32)

    inits = {"word": f(vocab, dim, scale=0.5), "pos": f(seq, dim, scale=0.5), "seg": f(2, dim, scale=0.5),
             "g0": 1 + f(dim, scale=0.1), "b0": f(dim, scale=0.1), "w": f(dim, 3 * dim), "b": f(3 * dim, scale=0.1),
             "wo": f(dim, dim), "g1": 1 + f(dim, scale=0.1), "b1": f(dim, scale=0.1), "bo": f(dim, scale=0.1),
             "w1": f(dim, ffn), "w2": f(ffn, dim), "wy": f(dim, 8)}
    ms = "com.microsoft"
    segment = ["segments32", "", "", "seg"] if segments else ["", "", "", ""]
    nodes = [
        helper.make_node("Cast", ["input_ids"], ["ids32"], name="cast_ids", to=TensorProto.INT32),
        helper.make_node("Cast", ["attention_mask"], ["mask32"], name="cast_mask", to=TensorProto.INT32),
        *([helper.make_node("Cast", ["token_type_ids"], ["segments32"], name="cast_segments", to=TensorProto.INT32)]
          if segments else []),
        helper.make_node("EmbedLayerNormalization", ["ids32", segment[0], "word", "pos", segment[3], "g0", "b0",
                                                     "mask32"],
                         ["emb", "mask_index", *(["embedding_sum"] if sum_output else [])],
                         name="embed", domain=ms, epsilon=1e-12),
        helper.make_node("Attention", ["emb", "w", "b", "mask_index"], ["a"], name="attn", domain=ms,
                         num_heads=heads),
        helper.make_node("MatMul", ["a", "wo"], ["o"], name="attn_out"),
        helper.make_node("SkipLayerNormalization", ["o", "emb", "g1", "b1", "bo"], ["ln1"], name="ln1", domain=ms,
                         epsilon=1e-12),
        helper.make_node("MatMul", ["ln1", "w1"], ["h"], name="ffn1"),
        helper.make_node("Relu", ["h"], ["hr"], name="relu"),
        helper.make_node("MatMul", ["hr", "w2"], ["f2"], name="ffn2"),
        helper.make_node("Add", ["ln1", "f2"], ["r2"], name="residual"),
        helper.make_node("MatMul", ["r2", "wy"], ["y"], name="head"),
    ]
    names = ["input_ids", "attention_mask", *(["token_type_ids"] if segments else [])]
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["N", seq]) for n in names]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", seq, 8])]
    if sum_output:
        outputs.append(helper.make_tensor_value_info("embedding_sum", TensorProto.FLOAT, ["N", seq, dim]))
    graph = helper.make_graph(nodes, "embed_layernorm", inputs, outputs,
                              [numpy_helper.from_array(a, name) for name, a in inits.items()])
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid(ms, 1)]
    return normalize(helper.make_model(graph, opset_imports=opsets, ir_version=8))


def contrib_transformer(pre_norm: bool = False, layers: int = 2, vocab: int = 50, seq: int = 8, dim: int = 32,
                        heads: int = 4, ffn: int = 64, classes: int = 3, statistics_output: bool = False) -> OnnxModel:
    """A transformer in onnxruntime's fused ops: MultiHeadAttention, SkipLayerNormalization, BiasGelu, FastGelu.

    Token and position embeddings (Gather), a LayerNormalization, then per block: Q, K, V MatMuls into
    ``MultiHeadAttention`` (their biases packed into its ``[3 x dim]`` bias), the output projection into
    ``SkipLayerNormalization`` (the projection's bias as its ``bias``, the residual as ``skip``), the FFN
    (``BiasGelu`` in even blocks, ``FastGelu`` in odd ones) into another.

    * post-LN (BERT): inputs ``input_ids`` [batch, seq] and ``attention_mask`` [batch, seq] int32 (the key padding
      mask), output ``logits`` [batch, classes] of a classifier on the mean-pooled stream.
    * ``pre_norm`` (GPT-2): causal (``unidirectional``), no mask; each SkipLayerNormalization's sum output
      (``input_skip_bias_sum``) carries the residual stream on and its normalised output feeds the next sublayer
      (the last one's is the final LayerNorm); output ``logits`` [batch, seq, vocab] of the LM head, a MatMul by
      the token table through a Transpose (tied embeddings).

    ``statistics_output``: the first SkipLayerNormalization also returns its mean (read by an ``Identity`` output).
    """
    rng = np.random.default_rng(0)
    nodes: list = []
    inits: dict[str, np.ndarray] = {}

    def f(name: str, *shape: int, scale: float | None = None) -> str:
        inits[name] = (rng.standard_normal(shape) * (shape[0] ** -0.5 if scale is None else scale)).astype(np.float32)
        return name

    def node(op: str, inputs: list[str], outputs: list[str] | str, name: str, **attrs: object) -> str:
        outs = [outputs] if isinstance(outputs, str) else outputs
        domain = "com.microsoft" if op in ("MultiHeadAttention", "SkipLayerNormalization", "BiasGelu", "FastGelu") \
            else ""
        nodes.append(helper.make_node(op, inputs, outs, name=name, domain=domain, **attrs))
        return outs[0]

    def gamma(name: str) -> str:
        inits[name] = (1 + 0.1 * rng.standard_normal(dim)).astype(np.float32)
        return name

    inits["position_ids"] = np.arange(seq, dtype=np.int64)
    tokens = node("Gather", [f("tokens.weight", vocab, dim, scale=0.5), "input_ids"], "tok", "embed/tokens")
    positions = node("Gather", [f("positions.weight", seq, dim, scale=0.5), "position_ids"], "pos", "embed/positions")
    stream = node("Add", [tokens, positions], "embedded", "embed/add")
    normed = node("LayerNormalization", [stream, gamma("embed/ln.g"), f("embed/ln.b", dim, scale=0.1)], "embed.ln",
                  "embed/ln", axis=-1, epsilon=1e-5)
    if not pre_norm:
        stream = normed
    attention = {"unidirectional": 1} if pre_norm else {}
    for i in range(layers):
        p = f"blocks.{i}/"
        q, k, v = (node("MatMul", [normed, f(f"{p}{w}", dim, dim)], f"{p}{w}.out", f"{p}attn/{w}") for w in "qkv")
        mha_inputs = [q, k, v, f(p + "qkv.b", 3 * dim, scale=0.1)] + ([] if pre_norm else ["attention_mask"])
        ctx = node("MultiHeadAttention", mha_inputs, p + "ctx", p + "attn/mha", num_heads=heads, **attention)
        out = node("MatMul", [ctx, f(p + "o", dim, dim)], p + "o.out", p + "attn/out")
        stats = [p + "ln1.mean"] if i == 0 and statistics_output else [""]
        outputs = [p + "ln1", *stats, "", p + "res1"] if pre_norm else [p + "ln1", *stats]
        normed = node("SkipLayerNormalization", [out, stream, gamma(p + "ln1.g"), f(p + "ln1.b", dim, scale=0.1),
                                                 f(p + "o.b", dim, scale=0.1)], outputs, p + "ln1", epsilon=1e-5)
        stream = p + "res1" if pre_norm else normed
        h = node("MatMul", [normed, f(p + "ffn1", dim, ffn)], p + "ffn1.out", p + "ffn/ffn1")
        gelu = node("BiasGelu" if i % 2 == 0 else "FastGelu", [h, f(p + "ffn1.b", ffn, scale=0.1)], p + "gelu",
                    p + "ffn/gelu")
        h = node("MatMul", [gelu, f(p + "ffn2", ffn, dim)], p + "ffn2.out", p + "ffn/ffn2")
        outputs = [p + "ln2", "", "", p + "res2"] if pre_norm and i < layers - 1 else [p + "ln2"]
        normed = node("SkipLayerNormalization", [h, stream, gamma(p + "ln2.g"), f(p + "ln2.b", dim, scale=0.1),
                                                 f(p + "ffn2.b", dim, scale=0.1)], outputs, p + "ln2", epsilon=1e-5)
        stream = p + "res2" if pre_norm else normed
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", seq])]
    if pre_norm:
        table = node("Transpose", ["tokens.weight"], "tokens.weight.t", "lm_head/transpose", perm=[1, 0])
        node("MatMul", [normed, table], "logits", "lm_head")
        outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", seq, vocab])]
    else:
        inputs.append(helper.make_tensor_value_info("attention_mask", TensorProto.INT32, ["batch", seq]))
        pooled = node("ReduceMean", [normed], "pooled", "pool", axes=[1], keepdims=0)
        logits = node("MatMul", [pooled, f("classifier.w", dim, classes)], "classifier.out", "classifier")
        node("Add", [logits, f("classifier.b", classes, scale=0.1)], "logits", "classifier/add")
        outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])]
    if statistics_output:
        node("Identity", ["blocks.0/ln1.mean"], "ln1_mean", "ln1_mean")
        outputs.append(helper.make_tensor_value_info("ln1_mean", TensorProto.FLOAT, ["batch", seq, 1]))
    graph = helper.make_graph(nodes, "contrib_transformer", inputs, outputs,
                              [numpy_helper.from_array(a, name) for name, a in inits.items()])
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    return normalize(helper.make_model(graph, opset_imports=opsets, ir_version=8))


def moments_layernorm_model(width: int = 64, hidden: int = 128, seq: int = 12, features: int = 16,
                            offset: float = 200.0, hidden_output: bool = False) -> OnnxModel:
    """Embedding (MatMul+Add, outputs near ``offset``), LayerNorm, residual FFN, LayerNorm, linear head.

    Inputs ``x`` [batch, seq, features] in [0, 2); output ``y`` [batch, seq, 8], and with ``hidden_output`` the
    last LayerNorm's output ``hidden`` [batch, seq, width] too (as a sentence encoder returns its hidden states:
    the hidden width, then frozen, cannot be pruned).
    """
    rng = np.random.default_rng(0)
    nodes: list = []
    inits: list = []

    def linear(name: str, x: str, n_in: int, n_out: int, mean: float = 0.0) -> str:
        w = mean + rng.standard_normal((n_in, n_out)) * n_in ** -0.5
        inits.append(numpy_helper.from_array(w.astype(np.float32), name + ".w"))
        inits.append(numpy_helper.from_array((0.1 * rng.standard_normal(n_out)).astype(np.float32), name + ".b"))
        nodes.append(helper.make_node("MatMul", [x, name + ".w"], [name + ".mm"], name=name + ".matmul"))
        nodes.append(helper.make_node("Add", [name + ".mm", name + ".b"], [name + ".y"], name=name + ".add"))
        return name + ".y"

    h = _moments_layernorm("ln0.", linear("embed", "x", features, width, mean=offset / features), width, nodes,
                           inits, rng)
    f = linear("ff1", h, width, hidden)
    nodes.append(helper.make_node("Relu", [f], ["ff1.relu"]))
    nodes.append(helper.make_node("Add", [h, linear("ff2", "ff1.relu", hidden, width)], ["res"]))
    # A shift far from zero again: the second LayerNorm sees the FFN's rounding at the offset's scale.
    inits.append(numpy_helper.from_array(np.array(offset, np.float32), "shift"))
    nodes.append(helper.make_node("Add", ["res", "shift"], ["res.shifted"]))
    h = _moments_layernorm("ln1.", "res.shifted", width, nodes, inits, rng)
    nodes.append(helper.make_node("Identity", [linear("head", h, width, 8)], ["y"]))
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", seq, 8])]
    if hidden_output:
        nodes.append(helper.make_node("Identity", [h], ["hidden"]))
        outputs.append(helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", seq, width]))
    graph = helper.make_graph(nodes, "moments_layernorm",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", seq, features])],
                              outputs, inits)
    return normalize(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8))


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int, fused: bool, causal: bool) -> None:
        super().__init__()
        self.heads, self.fused, self.causal = heads, fused, causal
        if fused:
            self.qkv = nn.Linear(dim, 3 * dim)
        else:
            self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        hd = d // self.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, s, self.heads, hd).transpose(1, 2)

        if self.fused:
            q, k, v = self.qkv(x).split(d, dim=-1)
        else:
            q, k, v = self.q(x), self.k(x), self.v(x)
        scores = split(q) @ split(k).transpose(-1, -2) / math.sqrt(hd)
        if self.causal:
            mask = torch.triu(torch.ones(s, s, dtype=torch.bool), diagonal=1)
            scores = scores.masked_fill(mask, -1e4)
        ctx = (scores.softmax(-1) @ split(v)).transpose(1, 2).reshape(b, s, d)
        return self.out(ctx)


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, ffn: int, fused: bool, causal: bool, pre_norm: bool) -> None:
        super().__init__()
        self.pre_norm = pre_norm
        self.attn = _Attention(dim, heads, fused, causal)
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.GELU(), nn.Linear(ffn, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_norm:  # GPT-2
            x = x + self.attn(self.ln1(x))
            return x + self.ffn(self.ln2(x))
        x = self.ln1(x + self.attn(x))  # BERT
        return self.ln2(x + self.ffn(x))


class Encoder(nn.Module):
    """Token + position embeddings, post-LN blocks, mean-pooled embedding output [batch, dim]; with ``classes``
    a linear classifier on the pooled embedding, whose logits [batch, classes] are then the only output."""

    def __init__(self, vocab: int = 50, seq: int = 8, dim: int = 32, heads: int = 4, ffn: int = 64, layers: int = 2,
                 fused_qkv: bool = False, classes: int | None = None) -> None:
        super().__init__()
        self.tokens, self.positions = nn.Embedding(vocab, dim), nn.Embedding(seq, dim)
        self.ln = nn.LayerNorm(dim)
        self.blocks = nn.ModuleList(_Block(dim, heads, ffn, fused_qkv, False, False) for _ in range(layers))
        self.classifier = nn.Linear(dim, classes) if classes else None

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.ln(self.tokens(input_ids) + self.positions.weight[: input_ids.shape[1]])
        for block in self.blocks:
            x = block(x)
        pooled = x.mean(1)
        return pooled if self.classifier is None else self.classifier(pooled)


class Decoder(nn.Module):
    """GPT-2-like: learned positions, causal mask, pre-LN blocks, final LN, logits tied to the embedding."""

    def __init__(self, vocab: int = 50, seq: int = 8, dim: int = 32, heads: int = 4, ffn: int = 64,
                 layers: int = 2) -> None:
        super().__init__()
        self.tokens, self.positions = nn.Embedding(vocab, dim), nn.Embedding(seq, dim)
        self.blocks = nn.ModuleList(_Block(dim, heads, ffn, False, True, True) for _ in range(layers))
        self.ln = nn.LayerNorm(dim)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.tokens(input_ids) + self.positions.weight[: input_ids.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.ln(x) @ self.tokens.weight.t()


def token_batch(n: int, seq: int = 8, vocab: int = 50, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab, size=(n, seq), dtype=np.int64)


def export(module: nn.Module, opset: int, seq: int = 8) -> OnnxModel:
    """Legacy exporter (LayerNorm decomposed below opset 17), dynamic batch."""
    module.eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.from_numpy(token_batch(2, seq)),), buf, dynamo=False, opset_version=opset,
                          input_names=["input_ids"], output_names=["output"],
                          dynamic_axes={"input_ids": {0: "batch"}, "output": {0: "batch"}})
    return normalize(onnx.load_from_string(buf.getvalue()))


def encoder(opset: int = 17, fused_qkv: bool = False, seed: int = 0, classes: int | None = None) -> OnnxModel:
    torch.manual_seed(seed)
    module = Encoder(fused_qkv=fused_qkv, classes=classes)
    if classes:  # LayerNorm scales and biases as after training: distinct, so torch does not share one initializer
        with torch.no_grad():
            for ln in [m for m in module.modules() if isinstance(m, nn.LayerNorm)]:
                ln.weight.add_(0.1 * torch.randn_like(ln.weight))
                ln.bias.add_(0.1 * torch.randn_like(ln.bias))
    return export(module, opset)


def decoder(opset: int = 17, seed: int = 0, tied: bool = False) -> OnnxModel:
    """The exported :class:`Decoder`; ``tied``: its LM head reads ``tokens.weight`` through a Transpose node instead of
    the transposed copy the exporter folds it into, so one initializer is both the Gather table and the head."""
    torch.manual_seed(seed)
    model = export(Decoder(), opset)
    if not tied:
        return model
    proto = model.proto
    head = proto.graph.node[-1]
    copy = head.input[1]
    assert head.op_type == "MatMul" and copy not in ("tokens.weight",), head
    transpose = helper.make_node("Transpose", ["tokens.weight"], ["tokens.weight.t"], name="/lm_head/Transpose",
                                 perm=[1, 0])
    head.input[1] = "tokens.weight.t"
    proto.graph.node.insert(len(proto.graph.node) - 1, transpose)
    kept = [t for t in proto.graph.initializer if t.name != copy]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(kept)
    return normalize(proto)
