"""``smart-onnx prune``: search a pruning mask, rewrite the model, verify it, write model + report."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from smart_onnx.cli.options import check_writable, parse_floats
from smart_onnx.cli.progress import ProgressReporter
from smart_onnx.cli.quantize_cmd import quantize_options, quantize_pruned, render_quantize
from smart_onnx.cli.summary import render_summary
from smart_onnx.data import EVAL_HOLDOUT, Dataset, load_dataset
from smart_onnx.data.augment import AUGMENT_BELOW, TOKEN_RATE
from smart_onnx.errors import ConstraintError
from smart_onnx.eval.html import write_html
from smart_onnx.graph import parse_role_overrides
from smart_onnx.hw import DEFAULT_PROFILE, load_profile
from smart_onnx.model import load_model, save_model
from smart_onnx.prune import MODES, PruneOptions, prune, save_report
from smart_onnx.quant import QuantizeOptions
from smart_onnx.rewrite import SPARSE_FORMATS
from smart_onnx.search import BUDGETS, METHODS, SearchConfig, parse_block
from smart_onnx.search.budget import DEFAULT_BATCH, MIN_BATCH
from smart_onnx.search.distributed import init_from_env, is_main, shutdown
from smart_onnx.search.precision import PRECISIONS


def _nm(text: str) -> tuple[int, int]:
    try:
        n, m = (int(x) for x in text.split(":"))
    except ValueError:
        raise ConstraintError(f"--nm {text!r} must be N:M, e.g. 2:4") from None
    if not 0 < n < m:
        raise ConstraintError(f"--nm {text!r} needs 0 < N < M")
    return n, m


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--data", "data_path", required=True, type=click.Path(path_type=Path),
              help="Calibration data: folder or file of .npz / .npy / images.")
@click.option("--sparsity", type=float, default=None,
              help="Fraction of prunable weights (or MACs with --budget macs) to remove, in [0, 1). "
                   "Required in block and channel mode; implied by --nm in nm mode.")
@click.option("--target", default=DEFAULT_PROFILE, show_default=True,
              help="Hardware profile: a built-in name (see `smart-onnx targets`) or a .toml file.")
@click.option("--mode", type=click.Choice(MODES), default=None,
              help="block: zero blocks; channel: remove output channels; nm: N:M along the input axis "
                   "[default: the target's mode].")
@click.option("--block", "block_text", default=None,
              help="Block shape OxIxKhxKw for every layer [default: the target's block per op type].")
@click.option("--nm", "nm_text", default=None, help="N:M pattern [default: the target's].")
@click.option("--budget", type=click.Choice(BUDGETS), default=SearchConfig.budget, show_default=True,
              help="What --sparsity counts.")
@click.option("--method", type=click.Choice(METHODS), default=SearchConfig.method, show_default=True,
              help="smart, or a baseline with the same fine-tune budget.")
@click.option("--steps", type=click.IntRange(0), default=None,
              help="Structural-search steps [default: from the data's size, capped by --time-budget].")
@click.option("--finetune-steps", type=click.IntRange(0), default=None,
              help="Fine-tune steps [default: as --steps]; the fine-tune stops early when a held-out part of "
                   "--data stops improving.")
@click.option("--time-budget", type=float, default=SearchConfig.time_budget, show_default=True,
              help="Seconds for the search and fine-tune: the step counts shrink to fit, measured on this model.")
@click.option("--augment/--no-augment", default=None,
              help="Random crops, flips and noise on image inputs, random replacement of "
                   f"{TOKEN_RATE:.0%} of the token ids while training [default: on below {AUGMENT_BELOW} "
                   "calibration samples].")
@click.option("--refit/--no-refit", default=SearchConfig.refit, show_default=True,
              help="After the mask is fixed, re-fit each pruned layer's kept weights to the dense layer's outputs "
                   "(ridge least squares, layer by layer); with --finetune-steps 0 a fast path without training.")
@click.option("--refit-reselect/--no-refit-reselect", default=SearchConfig.refit_reselect, show_default=True,
              help="Block mode: the refit also re-chooses which blocks each block row keeps, as many as the search "
                   "kept there, where that lowers the layer's reconstruction error (greedy OBS removal).")
@click.option("--feature-weight", type=float, default=SearchConfig.feature_weight, show_default=True,
              help="Weight of the distillation of internal features (residual stage outputs); 0 turns it off.")
@click.option("--batch-size", type=click.IntRange(1), default=None,
              help=f"Samples per training step [default: {DEFAULT_BATCH}, or where the steps wanted do not fit "
                   f"--time-budget the power of two (at least {MIN_BATCH}) at which they would]. Under torchrun: "
                   f"the global batch, split across the processes (default {DEFAULT_BATCH}).")
@click.option("--workers", type=click.IntRange(0), default=SearchConfig.workers, show_default=True,
              help="DataLoader processes reading the coming training batches ahead (memory-mapped .npy/.npz "
                   "rows, lazily decoded images); 0 reads them when needed.")
@click.option("--lr", type=float, default=SearchConfig.lr, show_default=True,
              help="Weight learning rate, relative: each step moves a weight tensor by about LR times its RMS.")
@click.option("--score-lr", type=float, default=SearchConfig.score_lr, show_default=True,
              help="Mask-score learning rate.")
@click.option("--distill-temperature", type=float, default=SearchConfig.distill_temperature, show_default=True,
              help="Softmax temperature of the distillation to the dense model's class outputs.")
@click.option("--seed", type=int, default=SearchConfig.seed, show_default=True)
@click.option("--device", default=SearchConfig.device, show_default=True,
              help="cpu, cuda or cuda:N (under torchrun, cuda is each process's cuda:LOCAL_RANK).")
@click.option("--precision", type=click.Choice(PRECISIONS), default=SearchConfig.precision, show_default=True,
              help="auto: on CUDA the forward passes run under autocast (bf16 where the GPU has it, else fp16 with "
                   "loss scaling); scores, masks and losses stay fp32. fp32: no autocast. The CPU always runs fp32.")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="CPU threads for torch [default: torch's count, halved for the search while timed steps are "
                   "faster with half (other work holding some cores); the report's steps say what was chosen].")
@click.option("--eval-data", type=click.Path(path_type=Path), default=None,
              help="Held-out data for the report (default: hold out part of --data).")
@click.option("--holdout", type=float, default=EVAL_HOLDOUT, show_default=True,
              help="Fraction of --data held out for evaluation when --eval-data is not given.")
@click.option("--mean", default=None, help="Image normalisation mean, comma-separated (images only).")
@click.option("--std", default=None, help="Image normalisation std, comma-separated (images only).")
@click.option("--sparse-format", type=click.Choice(SPARSE_FORMATS), default=PruneOptions.sparse_format,
              show_default=True,
              help="Block/N:M mode: dense stores zeroed weights as plain initializers (what every compiler reads); "
                   "coo as COO Constant nodes, smaller but for onnxruntime only.")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Pruned model path (default: MODEL.pruned.onnx beside MODEL).")
@click.option("--report", "report_path", type=click.Path(path_type=Path), default=None,
              help="Report JSON path (default: beside the output, .json).")
@click.option("--no-latency", is_flag=True, help="Skip the latency measurement in the report.")
@click.option("--html", "html_path", type=click.Path(path_type=Path), default=None,
              help="Also write the report as a self-contained HTML page (plots embedded).")
@click.option("--output-role", "output_roles", multiple=True, metavar="NAME=ROLE",
              help="Role of a graph output: class, sequence, regression or ignore (repeatable; overrides what "
                   "is inferred from the graph, see `smart-onnx inspect`).")
@click.option("--label-output", default=None, metavar="NAME",
              help="The class output the data's labels belong to [default: the single class output].")
@click.option("--min-fidelity", type=click.FloatRange(0.0, 1.0), default=None,
              help="Gate: exit 1 when any output's fidelity (agreement for class outputs, decode agreement for "
                   "sequences, mean cosine otherwise) on the evaluation data is below this; the model and "
                   "report are still written.")
@click.option("--quantize", type=click.Choice(["int8"]), default=None,
              help="Then quantize the pruned model to INT8 (QDQ, symmetric per-channel weights: every pruned zero "
                   "stays zero), calibrated on --data, and write that [default output: MODEL.pruned.int8.onnx].")
@quantize_options
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def prune_cmd(model: Path, data_path: Path, sparsity: float | None, target: str, mode: str | None,
              block_text: str | None, nm_text: str | None,
              budget: str, method: str, steps: int | None, finetune_steps: int | None, batch_size: int, lr: float,
              score_lr: float, distill_temperature: float, seed: int, device: str, eval_data: Path | None,
              holdout: float, mean: str | None,
              std: str | None, sparse_format: str, output: Path | None, report_path: Path | None,
              no_latency: bool, quiet: bool, threads: int | None, html_path: Path | None = None,
              output_roles: tuple[str, ...] = (), label_output: str | None = None,
              min_fidelity: float | None = None, time_budget: float = SearchConfig.time_budget,
              augment: bool | None = None, feature_weight: float = SearchConfig.feature_weight,
              refit: bool = SearchConfig.refit, refit_reselect: bool = SearchConfig.refit_reselect,
              quantize: str | None = None,
              activations: str = QuantizeOptions.activations, calibration_method: str = QuantizeOptions.calibration,
              calibration_samples: int | None = QuantizeOptions.samples,
              workers: int = SearchConfig.workers, precision: str = SearchConfig.precision) -> None:
    """Prune MODEL with the SMART search on calibration data, then verify it in onnxruntime."""
    # Built first: SearchConfig refuses bad settings (sparsity, learning rates, ...) before anything is loaded.
    search = SearchConfig(sparsity=sparsity, budget=budget, method=method, steps=steps,
                          finetune_steps=finetune_steps, batch_size=batch_size, lr=lr, score_lr=score_lr,
                          distill_temperature=distill_temperature, seed=seed, device=device,
                          time_budget=time_budget, augment=augment, feature_weight=feature_weight, refit=refit,
                          refit_reselect=refit_reselect, workers=workers, precision=precision, threads=threads)
    quant = QuantizeOptions(activations=activations, calibration=calibration_method, samples=calibration_samples,
                            target=target) if quantize else None
    output = output or model.with_name(model.stem + (".pruned.int8.onnx" if quant else ".pruned.onnx"))
    report_path = report_path or output.with_suffix(".json")
    check_writable(output, model, "output model")
    check_writable(report_path, model, "report")
    if html_path is not None:
        check_writable(html_path, model, "HTML report")
    _check_device(device)
    if init_from_env(device):  # under torchrun: data-parallel, and only rank 0 reports and writes
        click.get_current_context().call_on_close(shutdown)
        quiet = quiet or not is_main()
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    profile = load_profile(target)
    onnx_model = load_model(model)
    specs = onnx_model.inputs
    mean_v, std_v = parse_floats(mean, "mean"), parse_floats(std, "std")
    data = load_dataset(data_path, specs, mean=mean_v, std=std_v)
    calibration, held_out = _split(data, eval_data, specs, mean_v, std_v, holdout, seed)
    options = PruneOptions(
        mode=mode, target=profile, sparse_format=sparse_format,
        block=None if block_text is None else parse_block(block_text),
        nm=None if nm_text is None else _nm(nm_text),
        latency=not no_latency,
        search=search,
        output_roles=parse_role_overrides(output_roles),
        label_output=label_output,
        min_fidelity=min_fidelity,
    )
    if not quiet:
        click.echo(f"{model}: {onnx_model.num_weights():,} weights; calibration {len(calibration)} samples, "
                   f"evaluation {len(held_out)} samples", err=True)
    bar = ProgressReporter(quiet)
    try:
        outcome = prune(onnx_model, calibration, held_out, options, progress=bar,
                        command=shlex.join(["smart-onnx", *click.get_current_context().meta["smart_onnx.argv"]]))
    finally:
        bar.close()
    if outcome is None:  # a rank other than 0 of a data-parallel run: rank 0 writes
        return
    result = outcome.model if quant is None else quantize_pruned(
        outcome, onnx_model, calibration, held_out, quant, profile=profile, latency=not no_latency,
        min_fidelity=min_fidelity, output_roles=options.output_roles)
    outcome.report.output = str(output)
    # The model goes last; if anything fails, what was written for this run is removed again.
    written: list[Path] = []
    try:
        save_report(outcome.report, report_path)
        written.append(report_path)
        if html_path is not None:
            write_html(outcome.report, html_path, title=f"smart-onnx prune: {model.name}")
            written.append(html_path)
        save_model(result, output)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    click.echo(render_summary(outcome.report, output, report_path))
    if quant is not None:
        click.echo("\n" + render_quantize(outcome.report.quantize))
    if html_path is not None:
        click.echo(f"wrote {html_path}")
    fidelity = outcome.report.fidelity
    if fidelity is not None and not fidelity.passed:
        click.echo(f"FAIL: output {fidelity.worst!r} fidelity {fidelity.worst_fidelity:.4f} is below "
                   f"--min-fidelity {min_fidelity}", err=True)
        sys.exit(1)
    if quant is not None and outcome.report.quantize.eval is not None and not outcome.report.quantize.eval.passed:
        click.echo(f"FAIL: an output of the INT8 model is below --min-fidelity {min_fidelity}", err=True)
        sys.exit(1)


def _check_device(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConstraintError(f"--device {device}: CUDA is not available on this machine (torch "
                                  f"{torch.__version__}); use --device cpu")
    elif device != "cpu":
        raise ConstraintError(f"--device {device!r} is not cpu, cuda or cuda:N")


def _split(data: Dataset, eval_data: Path | None, specs, mean, std, holdout: float, seed: int):
    if eval_data is not None:
        return data, load_dataset(eval_data, specs, mean=mean, std=std)
    return data.split(holdout, seed=seed)
