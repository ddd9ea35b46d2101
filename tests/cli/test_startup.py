"""Start-up: what a compiler pipeline calls many times (--version, targets, check, inspect) needs no torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from smart_onnx.model import normalize
from tests.helpers import make_model
from tests.hw import magnitude_prune, small_cnn, weight

HEAVY = ("torch", "matplotlib")


def _run_all(commands: list[list[str]], *, block: bool) -> tuple[list[tuple[int, str]], list[str]]:
    """Run CLI commands one after the other in one fresh interpreter.

    With ``block`` the heavy packages cannot be imported at all. Returns (exit code, output)
    per command and the heavy packages that ended up imported.
    """
    script = textwrap.dedent(f"""
        import contextlib, io, json, sys
        if {block!r}:
            for name in {HEAVY!r}:
                sys.modules[name] = None  # import raises ImportError
        from smart_onnx.cli.main import cli
        results = []
        for args in {commands!r}:
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
                try:
                    cli.main(args=args, prog_name="smart-onnx")
                    code = 0
                except SystemExit as e:
                    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                except BaseException as e:  # a traceback would be a bug: report it as output
                    import traceback
                    traceback.print_exc(file=buf)
                    code = -1
            results.append([code, buf.getvalue()])
        loaded = sorted(m for m in {HEAVY!r} if sys.modules.get(m) is not None)
        print(json.dumps({{"results": results, "loaded": loaded}}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return [(int(c), o) for c, o in data["results"]], data["loaded"]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("startup")
    onnx.save(small_cnn().proto, str(d / "dense.onnx"))
    weights = {name: magnitude_prune(weight(name), 0.5) for name in ("c1.w", "c2.w", "fc.w")}
    onnx.save(small_cnn(weights=weights).proto, str(d / "unstructured.onnx"))
    return d


COMMANDS = {
    "version": (["--version"], 0),
    "targets": (["targets"], 0),
    "targets-json": (["targets", "--json"], 0),
    "check-pass": (["check", "{d}/dense.onnx"], 0),
    "check-fail": (["check", "{d}/unstructured.onnx", "--json"], 1),
    "inspect": (["inspect", "{d}/dense.onnx"], 0),
    "inspect-json": (["inspect", "{d}/dense.onnx", "--json"], 0),
}


@pytest.mark.parametrize("block", [True, False], ids=["torch-blocked", "torch-installed"])
def test_light_commands_import_neither_torch_nor_matplotlib(files: Path, block: bool) -> None:
    names = sorted(COMMANDS)
    results, loaded = _run_all([[a.format(d=files) for a in COMMANDS[n][0]] for n in names], block=block)
    for name, (code, out) in zip(names, results):
        assert code == COMMANDS[name][1], (name, out)
        assert "Traceback" not in out, (name, out)
    assert loaded == []


def test_help_lists_every_command_and_prune_loads_lazily() -> None:
    (help_code, help_out), (prune_code, prune_out) = _run_all([["--help"], ["prune", "--help"]], block=False)[0]
    assert help_code == 0 and prune_code == 0
    for name in ("inspect", "check", "targets", "prune", "eval"):
        assert name in help_out
    assert "--sparsity" in prune_out


def test_hw_package_imports_neither_search_nor_rewrite_nor_torch() -> None:
    code = ("import sys, smart_onnx.hw; "
            "print(sorted(m for m in ('torch', 'smart_onnx.search', 'smart_onnx.rewrite', 'smart_onnx.executor') "
            "if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.strip() == "[]"


def test_op_table_matches_the_executor_registry() -> None:
    from smart_onnx.executor import supported_ops
    from smart_onnx.op_support import SUPPORTED

    assert SUPPORTED == supported_ops(), "the executor's ops changed: regenerate with python -m tools.gen_op_table"


def test_inspects_unsupported_list_is_the_executors() -> None:
    from smart_onnx.executor import unsupported_nodes as executor_says
    from smart_onnx.op_support import unsupported_nodes

    x = np.ones((2, 3), np.float32)
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="ok"),
             helper.make_node("Det", ["r"], ["d"], name="det"),  # no handler
             helper.make_node("Weird", ["r"], ["w"], name="custom", domain="my.domain")]
    model = normalize(make_model(nodes, {"x": x}, ["d", "w"], extra_opsets={"my.domain": 1}))
    ours = unsupported_nodes(model)
    assert len(ours) == 2 and "Det" in ours[0] and "Weird" in ours[1]
    assert ours == executor_says(model)
    old = normalize(make_model([helper.make_node("Relu", ["x"], ["r"], name="relu")], {"x": x}, ["r"], opset=5))
    assert unsupported_nodes(old) == executor_says(old)
