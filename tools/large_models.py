"""Large benchmark models with random weights: a ResNet-50-sized CNN, a 6-layer and a BERT-base-sized encoder.

    python -m tools.large_models --out /tmp/large    # writes resnet50.onnx, bert6.onnx and bert12.onnx there

Both are plain torch modules exported with the legacy exporter (opset 17, dynamic batch), so the native
module and the ONNX graph compute the same function: the CNN has no BatchNorm (the exporter would fold it
into the convs anyway), and the encoder's mask goes through Equal/Where and its GELU through Erf.
"""

from __future__ import annotations

import argparse
import io
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

__all__ = ["LARGE_MODELS", "LargeModel", "bert_base", "bert_encoder", "build", "export", "resnet50_like",
           "sample_data"]

OPSET = 17


class Bottleneck(nn.Module):
    """ResNet-50 bottleneck: 1x1 reduce, 3x3 (stride here), 1x1 expand, projection shortcut when shapes change."""

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * 4
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 1), nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=stride, padding=1), nn.ReLU(),
            nn.Conv2d(width, cout, 1),
        )
        # Random weights: damp the residual branch so 16 blocks keep activations finite and non-degenerate.
        with torch.no_grad():
            self.body[-1].weight.mul_(0.2)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride=stride) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class ResNet50Like(nn.Module):
    """Stem 7x7/2 + maxpool, bottleneck stages 3-4-6-3 at widths 64..512 (outputs 256..2048), avgpool, FC."""

    def __init__(self, classes: int = 1000, blocks: tuple[int, ...] = (3, 4, 6, 3)) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, 64, 7, stride=2, padding=3), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
        cin = 64
        for stage, count in enumerate(blocks):
            width = 64 * 2**stage
            for i in range(count):
                layers.append(Bottleneck(cin, width, 2 if i == 0 and stage > 0 else 1))
                cin = width * 4
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


class EncoderLayer(nn.Module):
    """Post-LN BERT layer: self-attention with an additive key mask, then an Erf-GELU FFN."""

    def __init__(self, hidden: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(hidden, hidden) for _ in range(4))
        self.ln1, self.ln2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.ffn = nn.Sequential(nn.Linear(hidden, ffn), nn.GELU(), nn.Linear(ffn, hidden))

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        b, s, h = x.shape
        d = h // self.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, s, self.heads, d).transpose(1, 2)

        scores = split(self.q(x)) @ split(self.k(x)).transpose(-1, -2) / math.sqrt(d)
        scores = scores.masked_fill(pad, -1e4)  # Equal + Where in the exported graph
        ctx = (scores.softmax(-1) @ split(self.v(x))).transpose(1, 2).reshape(b, s, h)
        x = self.ln1(x + self.o(ctx))
        return self.ln2(x + self.ffn(x))


class BertEncoder(nn.Module):
    """Token + position embeddings (Gather), LayerNorm, ``layers`` encoder layers, classifier on token 0."""

    def __init__(self, vocab: int = 8000, hidden: int = 768, heads: int = 12, ffn: int = 3072, layers: int = 6,
                 seq: int = 128, classes: int = 8) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab, hidden)
        self.positions = nn.Embedding(seq, hidden)
        self.register_buffer("position_ids", torch.arange(seq).unsqueeze(0), persistent=False)
        self.ln = nn.LayerNorm(hidden)
        self.layers = nn.ModuleList(EncoderLayer(hidden, heads, ffn) for _ in range(layers))
        self.pooler = nn.Linear(hidden, hidden)
        self.classifier = nn.Linear(hidden, classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.ln(self.tokens(input_ids) + self.positions(self.position_ids))
        pad = (attention_mask == 0)[:, None, None, :]
        for layer in self.layers:
            x = layer(x, pad)
        return self.classifier(torch.tanh(self.pooler(x[:, 0])))


@dataclass(frozen=True)
class LargeModel:
    """A native module, its input names (in order) and a sample-data generator (numpy, leading batch axis)."""

    name: str
    label: str
    module: nn.Module
    inputs: tuple[str, ...]
    data: Callable[[int, int], dict[str, np.ndarray]]


def _images(n: int, seed: int) -> dict[str, np.ndarray]:
    return {"image": np.random.default_rng(seed).standard_normal((n, 3, 224, 224), dtype=np.float32)}


def _tokens(n: int, seed: int, vocab: int = 8000, seq: int = 128) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocab, size=(n, seq), dtype=np.int64)
    lengths = rng.integers(seq // 4, seq + 1, size=n)
    mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int64)
    return {"input_ids": ids * mask, "attention_mask": mask}


def resnet50_like() -> LargeModel:
    return LargeModel("resnet50", "ResNet-50-like CNN, 224x224", ResNet50Like(), ("image",), _images)


def bert_encoder() -> LargeModel:
    return LargeModel("bert6", "BERT-like encoder, 6 layers, 128 tokens", BertEncoder(),
                      ("input_ids", "attention_mask"), _tokens)


def bert_base() -> LargeModel:
    """BERT-base's size: 12 layers of 768 (12 heads, FFN 3072), a 30522-token vocabulary, 128 tokens."""
    return LargeModel("bert12", "BERT-base-size encoder, 12 layers, 128 tokens", BertEncoder(vocab=30522, layers=12),
                      ("input_ids", "attention_mask"), partial(_tokens, vocab=30522))


LARGE_MODELS: dict[str, Callable[[], LargeModel]] = {"resnet50": resnet50_like, "bert6": bert_encoder,
                                                     "bert12": bert_base}


def build(name: str, seed: int = 0) -> LargeModel:
    """The named model with seeded random weights, in eval mode."""
    torch.manual_seed(seed)
    model = LARGE_MODELS[name]()
    model.module.eval()
    return model


def export(model: LargeModel, path: Path | None = None) -> onnx.ModelProto:
    """Legacy exporter, opset 17, dynamic batch on every input and the output; written to ``path`` if given."""
    example = tuple(torch.from_numpy(a) for a in model.data(2, 0).values())
    axes = {name: {0: "batch"} for name in (*model.inputs, "logits")}
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.module, example, buf, input_names=list(model.inputs), output_names=["logits"],
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False)
    proto = onnx.load_from_string(buf.getvalue())
    if path is not None:
        onnx.save(proto, str(path))
    return proto


def sample_data(model: LargeModel, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` random samples for ``model``'s inputs."""
    return model.data(n, seed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for <name>.onnx")
    parser.add_argument("--models", nargs="+", default=list(LARGE_MODELS), choices=list(LARGE_MODELS))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.models:
        model = build(name)
        export(model, args.out / f"{name}.onnx")
        params = sum(p.numel() for p in model.module.parameters())
        print(f"{args.out / name}.onnx: {params / 1e6:.1f} M weights")


if __name__ == "__main__":
    main()
