"""Every CLI default is the library's: the commands read them from the library, never repeat them."""

from __future__ import annotations

import dataclasses
import inspect

import click
import pytest

from smart_onnx.cli.main import cli
from smart_onnx.data import Dataset
from smart_onnx.eval import compare_models
from smart_onnx.prune import PruneOptions
from smart_onnx.quant import QuantizeOptions, evaluate_quantized
from smart_onnx.search import SearchConfig


def _parameter_default(function, name: str):
    return inspect.signature(function).parameters[name].default


# (command, CLI parameter) -> the library default it must equal.
LIBRARY = {
    ("eval", "batch_size"): _parameter_default(compare_models, "batch_size"),
    ("eval", "repeats"): _parameter_default(compare_models, "latency").repeats,
    ("eval", "warmup"): _parameter_default(compare_models, "latency").warmup,
    ("prune", "holdout"): _parameter_default(Dataset.split, "holdout_fraction"),
    ("quantize", "holdout"): _parameter_default(Dataset.split, "holdout_fraction"),
    ("prune", "sparse_format"): PruneOptions.sparse_format,
    **{(command, cli_name): getattr(QuantizeOptions, field)
       for command in ("prune", "quantize")
       for cli_name, field in (("activations", "activations"), ("calibration_method", "calibration"),
                               ("calibration_samples", "samples"))},
    # Every prune option named as a SearchConfig field, the sparsity too (None: not given; block and channel mode
    # refuse it, in the library as in the CLI).
    **{("prune", f.name): f.default for f in dataclasses.fields(SearchConfig)},
}


def _options(command: str) -> dict[str, click.Parameter]:
    return {p.name: p for p in cli.get_command(click.Context(cli), command).params}


@pytest.mark.parametrize(("command", "name"), sorted(k for k in LIBRARY if k[1] in _options(k[0])))
def test_a_cli_default_is_the_librarys(command: str, name: str) -> None:
    assert _options(command)[name].default == LIBRARY[(command, name)]


def test_every_listed_default_is_an_option_and_the_search_settings_the_cli_has_are_covered() -> None:
    listed = {k for k in LIBRARY if k[0] != "prune" or k[1] not in {f.name for f in dataclasses.fields(SearchConfig)}}
    assert all(name in _options(command) for command, name in listed)
    shared = set(_options("prune")) & {f.name for f in dataclasses.fields(SearchConfig)}
    assert len(shared) >= 15  # lr, score_lr, batch_size, time_budget, refit, ...


def test_the_quantize_latency_settings_are_the_evaluations() -> None:
    latency = _parameter_default(compare_models, "latency")
    assert _parameter_default(evaluate_quantized, "latency") == latency
    assert latency.batches == (1, _parameter_default(compare_models, "batch_size"))
