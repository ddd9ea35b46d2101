"""Data-parallel prune under torchrun (gloo, 2 CPU processes) against the same run in one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from devkit.zoo import export, mlp_gemm
from smart_onnx.search import distributed
from tests.helpers import mask_overlap, run_ranks

SCRIPT = Path(sys.executable).with_name("smart-onnx")
# Explicit step counts and a budget nothing reaches: both runs take the same steps.
ARGS = ["--sparsity", "0.5", "--steps", "30", "--finetune-steps", "10", "--batch-size", "16",
        "--time-budget", "3600", "--threads", "1", "--no-latency", "-q", "--seed", "3"]


def test_without_a_process_group_everything_is_one_process() -> None:
    idx = np.arange(10)
    assert distributed.world_size() == 1 and distributed.rank() == 0 and distributed.is_main()
    assert np.array_equal(distributed.shard(idx), idx)
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    assert distributed.reduce_gradients([p], torch.tensor(1.5)) == 1.5
    assert torch.equal(p.grad, torch.full((3,), 2.0))
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}
    assert distributed.reduce_sum([1.0, 2.0]) == [1.0, 2.0]
    assert distributed.local_device("cpu") == "cpu"
    assert distributed.batch_shard() == (0, 1)
    t = torch.arange(4.0, dtype=torch.float64)
    distributed.reduce_tensors([t])
    assert torch.equal(t, torch.arange(4.0, dtype=torch.float64))
    assert distributed.reduce_named({"a": t}).keys() == {"a"}


def _reduce_on_ranks() -> dict:
    """Sums of per-rank tensors: small ones in shared buckets, one larger than a bucket, a name on rank 1 only."""
    distributed.BUCKET_BYTES = 64  # 8 float64s: forces several buckets and a sliced tensor
    r = distributed.rank()
    small = [torch.full((3,), r + 1.0, dtype=torch.float64), torch.tensor([r + 10], dtype=torch.int64)]
    large = torch.arange(40, dtype=torch.float64) * (r + 1)
    distributed.reduce_tensors([*small, large, torch.ones(2, dtype=torch.float32)])
    named = distributed.reduce_named({"both": torch.ones(2, dtype=torch.float64),
                                      **({"one": torch.full((1,), 5.0)} if r == 1 else {})})
    return {"small": small, "large": large, "named": named}


def test_sums_over_two_ranks_keep_dtypes_and_take_missing_names_as_zeros(tmp_path) -> None:
    for got in run_ranks(_reduce_on_ranks, 2, tmp_path):
        assert torch.equal(got["small"][0], torch.full((3,), 3.0, dtype=torch.float64))
        assert torch.equal(got["small"][1], torch.tensor([21]))
        assert torch.equal(got["large"], torch.arange(40, dtype=torch.float64) * 3)
        assert got["named"].keys() == {"both", "one"}
        assert torch.equal(got["named"]["both"], torch.full((2,), 2.0, dtype=torch.float64))
        assert torch.equal(got["named"]["one"], torch.full((1,), 5.0))


def _adam_steps(sizes: list[int]) -> dict:
    """Three steps of :func:`distributed.adam` on per-tensor groups, the same gradients on every rank."""
    params = [torch.nn.Parameter(torch.linspace(-1.0, 1.0, n)) for n in sizes]
    optimizer = distributed.adam([{"params": [p], "lr": 0.01 * (i + 1)} for i, p in enumerate(params)], 0.01)
    for step in range(3):
        for i, p in enumerate(params):
            p.grad = torch.cos(torch.arange(p.numel(), dtype=torch.float32) * (step + i + 1))
        optimizer.step()
    local = getattr(optimizer, "optim", optimizer)  # the rank's own Adam under ZeRO
    held = sum(p.numel() for p, state in local.state.items() if state)
    return {"params": [p.detach().clone() for p in params], "held": held, "sharded": local is not optimizer}


def test_data_parallel_adam_shards_its_moments_and_steps_like_one_adam(tmp_path) -> None:
    sizes = [40, 30, 20, 10]
    alone = _adam_steps(sizes)
    ranks = run_ranks(_adam_steps, 2, tmp_path, sizes)
    assert not alone["sharded"] and alone["held"] == sum(sizes)
    for got in ranks:
        assert got["sharded"]
        for a, b in zip(got["params"], alone["params"]):
            assert torch.equal(a, b)  # the same step as one Adam, on every rank
    assert [got["held"] for got in ranks] == [50, 50]  # each rank keeps the moments of half the weights


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("ddp")
    module, example = mlp_gemm()
    proto = export(module, example, dynamo=False, opset=17)
    onnx.save(proto, str(d / "m.onnx"))
    rng = np.random.default_rng(0)
    name = proto.graph.input[0].name
    np.savez(d / "calib.npz", **{name: rng.standard_normal((96, *example.shape[1:])).astype(np.float32)})
    np.savez(d / "eval.npz", **{name: rng.standard_normal((24, *example.shape[1:])).astype(np.float32)})
    return d


def _prune(files: Path, out: Path, launcher: list[str]) -> dict:
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT")}
    cmd = [*launcher, str(SCRIPT), "prune", str(files / "m.onnx"), "--data", str(files / "calib.npz"),
           "--eval-data", str(files / "eval.npz"), "-o", str(out / "m.onnx"), *ARGS]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    return {"report": json.loads((out / "m.json").read_text()), "stdout": res.stdout,
            "files": sorted(p.name for p in out.iterdir()), "model": onnx.load(str(out / "m.onnx"))}


@pytest.mark.slow
@pytest.mark.skipif(not SCRIPT.exists(), reason="the smart-onnx script is not installed beside this python")
def test_two_ranks_prune_like_one(files, tmp_path) -> None:
    one = _prune(files, tmp_path / "one", [])
    two = _prune(files, tmp_path / "two",
                 [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"])
    assert two["files"] == ["m.json", "m.onnx"]  # one model and one report, from rank 0 only
    assert two["stdout"].count("result:") == 1  # one summary
    onnx.checker.check_model(two["model"], full_check=True)
    assert two["model"].ir_version <= 13
    a, b = one["report"]["sparsity"], two["report"]["sparsity"]
    assert a["achieved_params"] == b["achieved_params"]
    assert (overlap := mask_overlap(one["model"], two["model"])) >= 0.95, overlap
    assert len(two["report"]["history"]["loss"]) == len(one["report"]["history"]["loss"]) == 30
