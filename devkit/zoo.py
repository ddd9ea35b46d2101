"""Generated model zoo: small PyTorch models in the styles real exporters produce.

Each builder returns ``(module in eval mode, example input)`` with a batch of 2 (the
dynamo exporter specialises a batch of 1). Sizes are small so the suite stays fast;
the width/depth arguments let the benchmark build realistic sizes from the same code.
BatchNorm statistics are randomised so a BN that the executor skips would show.

Graph-level transforms (:func:`to_constant_nodes`, :func:`wrap_in_if`,
:func:`with_symbolic_batch`) turn one exported model into other exporters' styles.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, shape_inference
from torch import nn
from torch.nn import functional as F

from devkit.thirdparty import export
from smart_onnx.executor import Executor
from smart_onnx.model import iter_graphs, normalize

__all__ = [
    "ARCHITECTURES",
    "EXPORTERS",
    "ZooModel",
    "assert_weights_get_gradients",
    "convtranspose_decoder",
    "export",
    "mlp_gemm",
    "mobilenetv2_like",
    "nhwc_tf_style",
    "resnet_like",
    "se_block",
    "to_constant_nodes",
    "vit_block",
    "with_symbolic_batch",
    "wrap_in_if",
    "yolo_like",
]

Built = tuple[nn.Module, torch.Tensor]


def _finish(module: nn.Module, example: torch.Tensor, seed: int) -> Built:
    """Eval mode, non-trivial BN statistics and affine parameters, deterministic weights."""
    gen = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    return module.eval(), example


def _conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*_conv_bn(cin, cout, 3, stride), nn.ReLU(), *_conv_bn(cout, cout))
        self.skip = nn.Sequential(*_conv_bn(cin, cout, 1, stride)) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.skip(x))


class _ResNet(nn.Module):
    def __init__(self, width: int, blocks: tuple[int, ...], classes: int, stem_stride: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [*_conv_bn(3, width, 3, stem_stride), nn.ReLU()]
        cin = width
        for stage, n in enumerate(blocks):
            cout = width * 2**stage
            for i in range(n):
                layers.append(_BasicBlock(cin, cout, 2 if i == 0 and stage > 0 else 1))
                cin = cout
        self.features = nn.Sequential(*layers)
        # A BN that follows an Add, not a Conv: no exporter can fold it, so BatchNormalization stays.
        self.post_bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.post_bn(self.features(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def resnet_like(
    width: int = 8, blocks: tuple[int, ...] = (1, 1), image: int = 16, batch: int = 2, stem_stride: int = 1
) -> Built:
    """Conv-BN-ReLU basic blocks with residual Adds, a strided projection shortcut, post-add BN, GAP, Linear."""
    torch.manual_seed(0)
    return _finish(_ResNet(width, blocks, 10, stem_stride), torch.randn(batch, 3, image, image), 1)


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int, act: type[nn.Module]) -> None:
        super().__init__()
        mid = cin * expand
        self.body = nn.Sequential(
            *_conv_bn(cin, mid, 1), act(), *_conv_bn(mid, mid, 3, stride, groups=mid), act(), *_conv_bn(mid, cout, 1)
        )
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


def mobilenetv2_like(batch: int = 2) -> Built:
    """Depthwise convs in inverted residuals (ReLU6 and HardSwish), a strided block, 1x1 head, GAP, Linear."""
    torch.manual_seed(1)
    net = nn.Sequential(
        *_conv_bn(3, 8, 3, 2), nn.ReLU6(),
        _InvertedResidual(8, 8, 1, 3, nn.ReLU6),
        _InvertedResidual(8, 12, 2, 3, nn.Hardswish),
        _InvertedResidual(12, 12, 1, 2, nn.Hardswish),
        *_conv_bn(12, 24, 1), nn.Hardswish(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(24, 10),
    )  # fmt: skip
    return _finish(net, torch.randn(batch, 3, 16, 16), 2)


class _SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.ReLU())
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.expand = nn.Conv2d(reduced, channels, 1)
        self.out = nn.Conv2d(channels, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        gate = torch.sigmoid(self.expand(F.relu(self.reduce(F.adaptive_avg_pool2d(x, 1)))))
        return self.out(x * gate)


def se_block(batch: int = 2) -> Built:
    """Squeeze-excitation: GlobalAveragePool -> 1x1 conv -> ReLU -> 1x1 conv -> Sigmoid -> Mul."""
    torch.manual_seed(2)
    return _finish(_SqueezeExcite(16, 4), torch.randn(batch, 3, 8, 8), 3)


class _ConvSiLU(nn.Module):
    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return x * torch.sigmoid(x)  # SiLU spelled out, as YOLO exports do


class _C2f(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.cv1 = _ConvSiLU(c, c, 1)
        self.m = nn.Sequential(_ConvSiLU(c // 2, c // 2), _ConvSiLU(c // 2, c // 2))
        self.cv2 = _ConvSiLU(c + c // 2, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.cv1(x).chunk(2, 1)
        return self.cv2(torch.cat([a, b, self.m(b) + b], 1))


class _Yolo(nn.Module):
    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.no = classes + 5
        self.stem = _ConvSiLU(3, 8, 3, 2)
        self.p3 = nn.Sequential(_ConvSiLU(8, 16, 3, 2), _C2f(16))
        self.p4 = nn.Sequential(_ConvSiLU(16, 16, 3, 2), _C2f(16))
        self.fuse = _C2f(32)
        self.head3 = nn.Conv2d(32, self.no, 1)
        self.head4 = nn.Conv2d(16, self.no, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p3 = self.p3(self.stem(x))
        p4 = self.p4(p3)
        up = F.interpolate(p4, scale_factor=2.0, mode="nearest")
        f3 = self.fuse(torch.cat([up, p3], 1))
        b = x.shape[0]
        boxes = torch.cat([self.head3(f3).view(b, self.no, -1), self.head4(p4).view(b, self.no, -1)], 2)
        xy, rest = boxes.split([4, self.no - 4], 1)
        return torch.cat([xy * 2.0, torch.sigmoid(rest)], 1)


def yolo_like(batch: int = 2) -> Built:
    """C2f blocks (Split/Chunk, Concat), x*sigmoid(x), nearest Resize upsample, Reshape/Concat detection head."""
    torch.manual_seed(3)
    return _finish(_Yolo(), torch.randn(batch, 3, 32, 32), 4)


def convtranspose_decoder(batch: int = 2) -> Built:
    """Strided conv encoder, ConvTranspose decoder (k4 s2 p1; k3 s2 p1 output_padding 1; grouped), Sigmoid."""
    torch.manual_seed(4)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(),
        nn.ConvTranspose2d(16, 8, 4, 2, 1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.ConvTranspose2d(8, 8, 3, 2, 1, output_padding=1, groups=2), nn.ReLU(),
        nn.Conv2d(8, 3, 1), nn.Sigmoid(),
    )  # fmt: skip
    return _finish(net, torch.randn(batch, 3, 16, 16), 5)


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = torch.softmax((q @ k.transpose(-2, -1)) * (c // self.heads) ** -0.5, dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = _Attention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _ViT(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, image: int, patch: int, classes: int) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, dim, patch, patch)
        self.pos = nn.Parameter(torch.randn(1, (image // patch) ** 2, dim) * 0.02)
        self.blocks = nn.Sequential(*[_Block(dim, heads, dim * 4) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x).flatten(2).transpose(1, 2) + self.pos
        return self.head(self.norm(self.blocks(x)).mean(1))


def vit_block(
    dim: int = 32, depth: int = 1, heads: int = 2, image: int = 16, patch: int = 4, batch: int = 2
) -> Built:
    """Patch-embed conv, LayerNorm, MatMul QKV attention with Softmax, erf GELU MLP, mean-pool head."""
    torch.manual_seed(5)
    return _finish(_ViT(dim, depth, heads, image, patch, 10), torch.randn(batch, 3, image, image), 6)


class _Nhwc(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1), nn.ReLU())
        self.fc = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.convs(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)  # TF keeps activations NHWC
        return self.fc(torch.flatten(y, 1))


def nhwc_tf_style(batch: int = 2) -> Built:
    """NHWC input, Transpose to NCHW, conv stack, Transpose back, Flatten -> Gemm (a TF-converted model)."""
    torch.manual_seed(6)
    return _finish(_Nhwc(), torch.randn(batch, 8, 8, 3), 7)


def mlp_gemm(batch: int = 2) -> Built:
    """Flatten -> Linear -> ReLU -> Linear."""
    torch.manual_seed(7)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    return _finish(net, torch.randn(batch, 1, 8, 8), 8)


ARCHITECTURES: dict[str, Callable[[], Built]] = {
    "resnet_like": resnet_like,
    "mobilenetv2_like": mobilenetv2_like,
    "se_block": se_block,
    "yolo_like": yolo_like,
    "convtranspose_decoder": convtranspose_decoder,
    "vit_block": vit_block,
    "nhwc_tf_style": nhwc_tf_style,
    "mlp_gemm": mlp_gemm,
}


# exporter id -> export() keyword arguments
EXPORTERS: dict[str, dict[str, object]] = {
    "legacy13": {"dynamo": False, "opset": 13},
    "legacy17": {"dynamo": False, "opset": 17},
    "legacy20": {"dynamo": False, "opset": 20},
    "dynamo": {"dynamo": True},
}


@dataclass(frozen=True)
class ZooModel:
    """One exported zoo model with the input it was exported from (batch 2)."""

    arch: str
    exporter: str
    proto: onnx.ModelProto
    path: Path
    feeds: dict[str, np.ndarray]


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def to_constant_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Paddle style: every main-graph initializer becomes a ``Constant`` node at the top of the graph."""
    out = _copy(model)
    graph = out.graph
    consts = [
        helper.make_node("Constant", [], [t.name], name=f"const_{i}", value=t) for i, t in enumerate(graph.initializer)
    ]
    names = {t.name for t in graph.initializer}
    kept_inputs = [i for i in graph.input if i.name not in names]
    nodes = consts + list(graph.node)
    del graph.initializer[:], graph.node[:], graph.input[:]
    graph.node.extend(nodes)
    graph.input.extend(kept_inputs)
    return out


def wrap_in_if(model: onnx.ModelProto) -> onnx.ModelProto:
    """Move the middle third of the nodes into an ``If`` with a constant-true condition.

    Both branches read outer-scope values (activations and initializers). The then
    branch scales its float results by an initializer of its own (1.0: exact), so a
    branch-owned weight must become a parameter too; the else branch negates them, so
    running the wrong branch changes the output.
    """
    out = _copy(model)
    graph = out.graph
    types = {v.name: v.type.tensor_type.elem_type for v in shape_inference.infer_shapes(out).graph.value_info}
    types.update({v.name: v.type.tensor_type.elem_type for v in graph.output})
    nodes = list(graph.node)
    lo, hi = len(nodes) // 3, max(len(nodes) // 3 + 1, 2 * len(nodes) // 3)
    # Constant nodes stay outside: a constant only the untaken branch read could never get a gradient.
    hoisted = [n for n in nodes[lo:hi] if n.op_type == "Constant"]
    inner = [n for n in nodes[lo:hi] if n.op_type != "Constant"]
    produced = [o for n in inner for o in n.output if o]
    later_reads = {i for n in nodes[hi:] for i in n.input} | {o.name for o in graph.output}
    crossing = [o for o in produced if o in later_reads]
    then_branch, else_branch = (_branch(inner, produced, crossing, types, tag) for tag in ("then", "else"))
    true = helper.make_tensor("wrap_cond", onnx.TensorProto.BOOL, [], [True])
    cond = helper.make_node("Constant", [], ["wrap_cond"], name="wrap_cond", value=true)
    wrap = helper.make_node(
        "If", ["wrap_cond"], crossing, name="wrap_if", then_branch=then_branch, else_branch=else_branch
    )
    del graph.node[:], graph.value_info[:]
    graph.node.extend(nodes[:lo] + hoisted + [cond, wrap] + nodes[hi:])
    return out


def _branch(
    inner: list[onnx.NodeProto], produced: list[str], crossing: list[str], types: dict[str, int], tag: str
) -> onnx.GraphProto:
    # Values defined in a branch get a per-branch suffix: names stay unique across scopes.
    rename = {name: f"{name}__{tag}" for name in produced}
    nodes = []
    for n in inner:
        copy = onnx.NodeProto()
        copy.CopyFrom(n)
        copy.name = f"{n.name}__{tag}"
        copy.input[:] = [rename.get(i, i) for i in n.input]
        copy.output[:] = [rename.get(o, o) for o in n.output]
        nodes.append(copy)
    scale = f"wrap_scale__{tag}"
    outputs, uses_scale = [], False
    for name in crossing:
        value, dtype = rename[name], types.get(name, onnx.TensorProto.FLOAT)
        if dtype == onnx.TensorProto.FLOAT:
            op, extra = ("Mul", [scale]) if tag == "then" else ("Neg", [])
            uses_scale |= bool(extra)
            nodes.append(helper.make_node(op, [value, *extra], [f"{value}_{op}"], name=f"{value}_{op}"))
            value = f"{value}_{op}"
        outputs.append(helper.make_tensor_value_info(value, dtype, None))
    inits = [helper.make_tensor(scale, onnx.TensorProto.FLOAT, [], [1.0])] if uses_scale else []
    return helper.make_graph(nodes, f"wrap_{tag}", [], outputs, inits)


def with_symbolic_batch(model: onnx.ModelProto, name: str = "N") -> onnx.ModelProto:
    """Give every graph input and output the symbolic leading dimension ``name``; drop inferred value_info."""
    out = _copy(model)
    for value in list(out.graph.input) + list(out.graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims):
            dims[0].Clear()
            dims[0].dim_param = name
    del out.graph.value_info[:]
    return out


def assert_weights_get_gradients(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> None:
    """Every trainable weight gets a gradient from ``sum(float outputs)``, and every constant weight
    operand of Conv/ConvTranspose/Gemm/MatMul is trainable (what the search needs to prune it)."""
    copy = _copy(model)
    executor = Executor(normalize(copy))
    outputs = executor({k: torch.from_numpy(np.asarray(v)) for k, v in feeds.items()})
    total = sum(v.sum() for v in outputs.values() if v.is_floating_point())
    assert isinstance(total, torch.Tensor) and total.requires_grad, "no float output depends on a trainable weight"
    total.backward()
    named = dict(executor.weights.named_weights())
    assert named, "the executor found no trainable weights"
    missing = sorted(n for n, p in named.items() if p.grad is None)
    assert not missing, f"{len(missing)} of {len(named)} parameters got no gradient: {missing[:5]}"
    floats = {n for n in executor.weights.names() if executor.weights.get(n).is_floating_point()}
    frozen = sorted(
        node.input[1]
        for graph in iter_graphs(copy.graph)
        for node in graph.node
        if node.op_type in _WEIGHTED and len(node.input) > 1 and node.input[1] in floats - set(named)
    )
    assert not frozen, f"weights of {_WEIGHTED} are not trainable parameters: {frozen[:5]}"


_WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")
