"""LSTM, GRU and RNN against onnxruntime: directions, layouts, biases, initial states, sequence_lens,
models exported from torch, refused attributes, and gradients reaching W, R and B."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from devkit.zoo import assert_weights_get_gradients
from smart_onnx.errors import UnsupportedOpError
from smart_onnx.executor import Executor
from smart_onnx.model import normalize
from tests.executor.ops.onenode import C, check, one_node
from tests.helpers import assert_matches_ort, relative_error, run_executor, run_ort

RNG = np.random.default_rng(7)
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
OUTPUTS = {"LSTM": 3, "GRU": 2, "RNN": 2}
T, N, I, H = 5, 3, 4, 6


def _r(*shape: int, scale: float = 0.5) -> np.ndarray:
    return (scale * RNG.standard_normal(shape)).astype(np.float32)


def _args(op: str, dirs: int, *, layout: int = 0, bias: bool = True, lens: np.ndarray | None = None,
          initial: bool = False, peepholes: bool = False) -> list:
    g = GATES[op]
    x = _r(N, T, I, scale=1.0) if layout else _r(T, N, I, scale=1.0)
    args: list = [x, C(_r(dirs, g * H, I)), C(_r(dirs, g * H, H)), C(_r(dirs, 2 * g * H)) if bias else None, lens]
    state_shape = (N, dirs, H) if layout else (dirs, N, H)
    if initial or peepholes:
        args.append(_r(*state_shape, scale=1.0) if initial else None)
        if op == "LSTM":
            args.append(_r(*state_shape, scale=1.0) if initial else None)
    if peepholes:
        args.append(C(_r(dirs, 3 * H)))
    while args and args[-1] is None:
        args.pop()
    return args


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_directions(op: str, direction: str) -> None:
    dirs = 2 if direction == "bidirectional" else 1
    check(op, _args(op, dirs, initial=True), outputs=OUTPUTS[op], direction=direction, hidden_size=H)


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_layout_1_is_layout_0_transposed(op: str, direction: str) -> None:
    """onnxruntime refuses layout=1 (batch first), so the reference is its layout-0 run on transposed data."""
    dirs = 2 if direction == "bidirectional" else 1
    args = _args(op, dirs, layout=1, initial=True)
    model, feeds = one_node(op, args, outputs=OUTPUTS[op], direction=direction, hidden_size=H, layout=1)
    got = run_executor(model, feeds)
    moved = [a.transpose(1, 0, 2) if isinstance(a, np.ndarray) and a.ndim == 3 else a for a in args]
    ref_model, ref_feeds = one_node(op, moved, outputs=OUTPUTS[op], direction=direction, hidden_size=H)
    expected = run_ort(ref_model, ref_feeds)
    assert relative_error(got[0], expected[0].transpose(2, 0, 1, 3)) <= 1e-5  # Y: [T, D, N, H] -> [N, T, D, H]
    for g, e in zip(got[1:], expected[1:], strict=True):  # Y_h, Y_c: [D, N, H] -> [N, D, H]
        assert relative_error(g, e.transpose(1, 0, 2)) <= 1e-5


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_sequence_lens(op: str, direction: str) -> None:
    dirs = 2 if direction == "bidirectional" else 1
    lens = np.array([T, 2, 4], dtype=np.int32)
    check(op, _args(op, dirs, lens=lens, initial=True), outputs=OUTPUTS[op], direction=direction, hidden_size=H)


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_no_bias_no_initial_state_only_y(op: str) -> None:
    check(op, _args(op, 2, bias=False), outputs=1, direction="bidirectional", hidden_size=H)


@pytest.mark.parametrize("opset", [13, 22])
@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_opset_versions(op: str, opset: int) -> None:
    check(op, _args(op, 1), outputs=OUTPUTS[op], opset=opset, hidden_size=H)


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_lstm_peepholes(direction: str) -> None:
    dirs = 2 if direction == "bidirectional" else 1
    check("LSTM", _args("LSTM", dirs, peepholes=True), outputs=3, direction=direction, hidden_size=H)


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_gru_linear_before_reset(direction: str) -> None:
    dirs = 2 if direction == "bidirectional" else 1
    check("GRU", _args("GRU", dirs, initial=True), outputs=2, direction=direction, hidden_size=H,
          linear_before_reset=1)


def test_explicit_default_activations_and_relu_rnn() -> None:
    check("LSTM", _args("LSTM", 2), outputs=3, direction="bidirectional", hidden_size=H,
          activations=["Sigmoid", "Tanh", "Tanh"] * 2)
    check("RNN", _args("RNN", 1), outputs=2, hidden_size=H, activations=["Relu"])


@pytest.mark.parametrize(
    ("op", "attrs", "named"),
    [("LSTM", {"clip": 3.0}, "clip"), ("LSTM", {"input_forget": 1}, "input_forget"),
     ("GRU", {"activations": ["HardSigmoid", "Tanh"]}, "activations"),
     ("RNN", {"activations": ["LeakyRelu"], "activation_alpha": [0.1]}, "activation"),
     ("LSTM", {"direction": "bidirectional", "activations": ["Sigmoid", "Tanh", "Tanh", "Tanh", "Tanh", "Tanh"]},
      "activations")],
    ids=["clip", "input_forget", "hardsigmoid", "leakyrelu", "mixed-directions"],
)
def test_unsupported_attributes_are_refused(op: str, attrs: dict, named: str) -> None:
    dirs = 2 if attrs.get("direction") == "bidirectional" else 1
    model, _ = one_node(op, _args(op, dirs), outputs=OUTPUTS[op], hidden_size=H, **attrs)
    with pytest.raises(UnsupportedOpError) as err:
        Executor(normalize(model))
    message = str(err.value)
    assert "\n" not in message and f"{op.lower()}_node" in message and named in message


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_weights_are_parameters_with_gradients(op: str) -> None:
    model, feeds = one_node(op, _args(op, 2, initial=True), outputs=OUTPUTS[op], direction="bidirectional",
                            hidden_size=H)
    ex = Executor(normalize(model))
    out = ex({k: torch.from_numpy(v) for k, v in feeds.items()})
    sum(v.square().sum() for v in out.values()).backward()
    assert sorted(ex.parameter_names()) == ["in1", "in2", "in3"]
    for name in ("in1", "in2", "in3"):
        grad = ex.weights.get(name).grad
        assert grad is not None and float(grad.abs().sum()) > 0


class _Recognizer(nn.Module):
    """A bidirectional two-layer LSTM over batch-first features, then a GRU and a per-step Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(8, 12, num_layers=2, bidirectional=True, batch_first=True)
        self.gru = nn.GRU(24, 10, batch_first=True)
        self.head = nn.Linear(10, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(x)
        y, _ = self.gru(y)
        return self.head(y).log_softmax(-1)


def _export(module: nn.Module, example: torch.Tensor) -> onnx.ModelProto:
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (example,), buf, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, opset_version=17, dynamo=False)
    return onnx.load_from_string(buf.getvalue())


@pytest.mark.parametrize("module", [_Recognizer(), nn.GRU(8, 9, bidirectional=True)], ids=["lstm-gru", "bigru"])
def test_torch_exported(module: nn.Module) -> None:
    torch.manual_seed(0)
    model = _export(module, torch.randn(2, 11, 8))
    ops = {n.op_type for n in model.graph.node}
    assert ops & {"LSTM", "GRU"}
    feeds = {"x": RNG.standard_normal((3, 11, 8)).astype(np.float32)}
    assert_matches_ort(model, feeds)
    assert_weights_get_gradients(model, feeds)
    if isinstance(module, _Recognizer):  # and the executor computes what the torch module does
        ex = Executor(normalize(model))
        with torch.no_grad():
            got = ex({"x": torch.from_numpy(feeds["x"])})["y"]
            np.testing.assert_allclose(got.numpy(), module(torch.from_numpy(feeds["x"])).numpy(), atol=1e-5)
