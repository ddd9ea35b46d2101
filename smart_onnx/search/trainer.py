"""What search and fine-tune share: batches, the dense teacher, the loss of one batch, the held-out loss.

The teacher is the dense model. Its outputs (and internal features) over the calibration
set are computed once and kept while they fit :data:`TEACHER_CACHE_BYTES`; otherwise, or
when inputs are augmented (every step sees new inputs), a frozen dense copy of the model
recomputes them per batch, so memory does not grow with the number of samples; on the CPU,
where the caller gives a :data:`DenseRunner` (``prune`` gives onnxruntime), that runs them
instead of the copy. In a data-parallel run each rank computes and keeps them for the samples
it trains on only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from smart_onnx.data import Dataset
from smart_onnx.data.augment import Augmenter
from smart_onnx.executor import Executor
from smart_onnx.executor.module import Transforms
from smart_onnx.graph import OutputInfo
from smart_onnx.graph.features import feature_axes
from smart_onnx.graph.tables import lookup_tables
from smart_onnx.search.distributed import any_over_ranks, broadcast_tensors, rank, reduce_sum, world_size
from smart_onnx.search.loader import BatchReader, draws, owned_samples, sampler, to_device
from smart_onnx.search.loss import OutputScales, distillation_loss, feature_loss
from smart_onnx.search.precision import Precision, to_fp32

__all__ = ["TEACHER_CACHE_BYTES", "DenseRunner", "Trainer"]

log = logging.getLogger(__name__)

# The dense outputs and features of the calibration samples (a rank's own, data-parallel) are kept up to this size.
TEACHER_CACHE_BYTES = 256 * 2**20

# Given the inner tensors the teacher captures, a function that runs the dense model on a batch of numpy feeds and
# returns every output and those tensors by name; None where it cannot. onnxruntime's CPU inference, from ``prune``,
# takes a third of the torch copy's time on EfficientNet-Lite0 (docs/benchmarks.md, "The teacher in onnxruntime").
DenseRunner = Callable[[Sequence[str]], Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]] | None]


def _capture(store: dict[str, torch.Tensor], names: Sequence[str]) -> dict[str, Callable]:
    """Executor transforms that record the named activations as they are produced."""
    def recorder(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
        def record(x: torch.Tensor) -> torch.Tensor:
            store[name] = x
            return x
        return record
    return {n: recorder(n) for n in names}


class _Teacher:
    """The dense model's outputs and features per batch; variances of the regressed tensors."""

    def __init__(self, executor: Executor, data: Dataset, batch_size: int, device: torch.device,
                 outputs: Sequence[OutputInfo], features: Sequence[str], cache: bool,
                 shared: Mapping[str, torch.Tensor], runner: DenseRunner | None = None) -> None:
        self.features = list(features)
        self.batch_axis = {o.name: o.batch_axis for o in outputs}
        self.device = device
        self.axes = feature_axes(executor.model, features)
        scales = OutputScales(outputs, features, self.axes)
        self.cached: dict[str, torch.Tensor] | None = None
        # Data-parallel: each rank runs its part of the samples (loader.owned_samples) and holds only their
        # values (then trains on the rows of its own samples, see loader.draws); the variances' sums are added up.
        self.owned = owned_samples(len(data))
        part = data if len(self.owned) == len(data) else data.select(np.asarray(self.owned))
        seen = 0
        with torch.no_grad():  # one streamed pass: statistics always, values while they fit the budget
            for batch in part.batches(batch_size):  # one training batch of activations at a time
                values = self._run(executor, to_device(batch.inputs, device))
                scales.update(values)
                n = len(next(iter(batch.inputs.values())))
                if cache and not seen:
                    self.cached = self._allocate(values, n, len(part))
                if self.cached is not None:
                    for name, v in values.items():
                        self.cached[name].narrow(self.batch_axis.get(name, 0), seen, n).copy_(v)
                seen += n
        scales.sum_over_ranks()
        self.variances = scales.variances()
        broadcast_tensors(self.variances.values())  # the same sums on every rank; rank 0's values, to be exact
        self._source, self._shared = executor.model, shared
        self._dense: Executor | None = None
        # Built on first use, as the dense copy; None on CUDA, and once it could not build a runner.
        self._make_runner = runner if device.type == "cpu" else None
        self._runner: Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]] | None = None

    def _allocate(self, values: Mapping[str, torch.Tensor], n: int, total: int) -> dict[str, torch.Tensor] | None:
        """Whole-set buffers filled batch by batch (never a list joined at the end: that holds the set twice)."""
        nbytes = sum(v.numel() * v.element_size() for v in values.values()) * total // n
        # Decided alike on every rank (they split the batches by who holds the values, see loader.draws)
        if bool(any_over_ranks(torch.tensor([nbytes > TEACHER_CACHE_BYTES]))):
            log.info("dense outputs (%d MiB) exceed %d MiB: recomputed per batch", nbytes // 2**20,
                     TEACHER_CACHE_BYTES // 2**20)
            return None
        buffers = {}
        for name, v in values.items():
            shape = list(v.shape)
            shape[self.batch_axis.get(name, 0)] = total
            buffers[name] = torch.empty(shape, dtype=v.dtype)
        return buffers

    def dense_executor(self) -> Executor:
        """A frozen copy of the dense model, built on first use; the tensors given as ``shared`` are not copied.

        One dense copy of the weights at a time: while this one lives (the refit runs it layer by layer) the
        runner's session is let go, and :meth:`release_executor` hands the per-batch teacher back to a runner.
        """
        self._runner = None
        if self._dense is None:
            self._dense = Executor(self._source, shared=self._shared).to(self.device)
            for p in self._dense.parameters():
                p.requires_grad_(False)
        return self._dense

    def renew_runner(self) -> None:
        """Make the runner again on its next call (it took torch's thread count when it was made)."""
        self._runner = None

    def release_executor(self) -> None:
        """Let the torch copy go where a runner will serve the per-batch teacher instead (made on its next call)."""
        if self._make_runner is not None:
            self._dense = None

    def dense(self, feeds: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Outputs and features of the dense model on ``feeds``: the runner's where there is one, else the frozen
        dense copy's."""
        if self._runner is None and self._make_runner is not None and self._dense is None:
            self._runner = self._make_runner(self.features)
            if self._runner is None:
                self._make_runner = None  # the torch copy from now on
            log.info("dense teacher: %s", "the caller's runner" if self._runner is not None else "a torch copy")
        if self._runner is not None:
            values = self._runner({k: v.numpy() for k, v in feeds.items()})
            return {k: torch.from_numpy(v) for k, v in values.items() if np.issubdtype(v.dtype, np.floating)}
        with torch.no_grad():
            return self._run(self.dense_executor(), feeds)

    def _run(self, executor: Executor, feeds: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        captured: dict[str, torch.Tensor] = {}
        out = executor(feeds, transforms=_capture(captured, self.features))
        values = {k: v for k, v in out.items() if v.is_floating_point()}
        values.update({k: v for k, v in captured.items() if v.is_floating_point()})
        return values

    def __call__(self, idx: np.ndarray, feeds: Mapping[str, torch.Tensor], augmented: bool) -> dict:
        """The teacher's values for the calibration samples ``idx`` as fed (``feeds``)."""
        if self.cached is None or augmented or not (self.owned.start <= idx.min() and idx.max() < self.owned.stop):
            return self.dense(feeds)  # recomputed; a data-parallel rank's placeholder row is not among its own
        index = torch.as_tensor(idx - self.owned.start)  # this rank's samples only (see loader.sampler)
        return {k: v.index_select(self.batch_axis.get(k, 0), index).to(self.device) for k, v in self.cached.items()}


class Trainer:
    """Batches, the teacher and the loss; shared by the structural search and the fine-tune.

    Args:
        executor: the model being pruned (its weights are trained).
        data: calibration samples trained on.
        outputs: the roles of the model's outputs.
        label_output: the class output the labels belong to (None: labels unused).
        features: internal activations distilled besides the outputs (see feature_points).
        feature_weight: weight of the mean feature term against the output terms.
        augmenter: changes image inputs every step (None: the samples as they are).
        validation: held-out calibration samples for :meth:`validation_loss`.
        workers: DataLoader processes reading the coming batches ahead (0: read when needed).
        precision: ``auto`` (autocast on CUDA, see search/precision.py) or ``fp32``.
        dense_runner: runs the dense teacher on the CPU instead of a torch copy (see :data:`DenseRunner`).
    """

    def __init__(self, executor: Executor, data: Dataset, *, batch_size: int, seed: int, device: str,
                 label_weight: float, temperature: float, outputs: Sequence[OutputInfo], label_output: str | None,
                 features: Sequence[str] = (), feature_weight: float = 0.0, augmenter: Augmenter | None = None,
                 validation: Dataset | None = None, workers: int = 0, precision: str = "auto",
                 dense_runner: DenseRunner | None = None) -> None:
        self.executor = executor
        self.data = data
        self.device = torch.device(device)
        self.precision = Precision(self.device, precision)
        self.label_weight, self.temperature = label_weight, temperature
        self.outputs = list(outputs)
        self.label_output = label_output
        self.labels = None
        if data.labels is not None and label_output is not None:
            self.labels = torch.as_tensor(data.labels, dtype=torch.long)
        self.features = list(features) if feature_weight > 0 else []
        self.feature_weight = feature_weight
        self.augmenter = augmenter if augmenter is not None and augmenter.active else None
        self.validation = validation
        # Scalars (epsilons, GELU's 0.5, attention scales) are constants in spirit: never trained. Neither are
        # lookup tables (token embeddings): only the calibration tokens' rows would move (graph/tables.py).
        fixed = {id(executor.weights.get(name)) for name in lookup_tables(executor.model)}
        self.trained = {name: p for name, p in executor.weights.named_weights() if p.numel() > 1 and id(p) not in fixed}
        trained = {id(p) for p in self.weight_params}
        for p in executor.weights.parameters():
            if id(p) not in trained:  # no gradient: none of them is stepped (a token table's would be its size)
                p.requires_grad_(False)
        # What training never changes, the teacher's dense copy shares instead of holding twice.
        untrained = {name: executor.weights.get(name) for name in executor.weights.names()
                     if id(executor.weights.get(name)) not in trained}
        self.teacher = _Teacher(executor, data, batch_size, self.device, self.outputs, self.features,
                                cache=self.augmenter is None, shared=untrained, runner=dense_runner)
        self._seed, self._workers = seed, workers
        self.set_batch_size(batch_size)

    @property
    def weight_params(self) -> list[torch.nn.Parameter]:
        """The trained weights (of :attr:`trained`, by ONNX name)."""
        return list(self.trained.values())

    def set_threads(self, threads: int) -> None:
        """Train, and run the dense teacher, with ``threads`` CPU threads from the next step on."""
        torch.set_num_threads(threads)
        self.teacher.renew_runner()

    def set_batch_size(self, batch_size: int) -> None:
        """Train on batches of ``batch_size`` from the next step on."""
        self.batch_size = batch_size
        batches = sampler(len(self.data), batch_size, self._seed)
        # Data-parallel with cached teacher values, each rank trains on the rows of its own samples (a share that
        # varies by batch); otherwise on an even slice of each batch.
        owned = self.teacher.owned if self.teacher.cached is not None else None
        self.reader = BatchReader(self.data.arrays, draws(batches, self.augmenter is not None, owned), self._workers)

    def _loss(self, feeds: dict[str, torch.Tensor], teacher: Mapping[str, torch.Tensor], labels: torch.Tensor | None,
              transforms: Transforms, use_features: bool, sharded: bool = False,
              placeholder: bool = False) -> torch.Tensor:
        features = self.features if use_features else []
        captured: dict[str, torch.Tensor] = {}
        with self.precision.autocast():  # the forward pass; masks, scores and losses stay fp32
            student = to_fp32(self.executor(feeds, transforms={**transforms, **_capture(captured, features)}))
        captured = to_fp32(captured)
        loss = distillation_loss(student, teacher, self.outputs, variances=self.teacher.variances, labels=labels,
                                 label_output=self.label_output, label_weight=self.label_weight,
                                 temperature=self.temperature)
        if features:
            loss = loss + self.feature_weight * feature_loss(captured, teacher, self.teacher.variances,
                                                             sharded=sharded, placeholder=placeholder,
                                                             axes=self.teacher.axes)
        return loss

    def loss(self, transforms: Transforms, *, use_features: bool = True) -> torch.Tensor:
        """The training loss of the next batch (augmented when an augmenter is set).

        In a data-parallel run every rank draws the same global batch and computes the loss of its
        rows, weighted by their share of the batch: the sum over ranks is the batch's loss.
        """
        (batch, rows, _, share), arrays = next(self.reader)
        idx = batch[rows]
        feeds = {k: v.to(self.device) for k, v in arrays.items()}
        if self.augmenter is not None:  # the global batch's inputs augmented alike on every rank, then sliced
            feeds = self.augmenter(feeds)
            if len(idx) < len(batch):
                feeds = {k: v[torch.as_tensor(rows, device=v.device)] for k, v in feeds.items()}
        with self.precision.autocast():
            teacher = to_fp32(self.teacher(idx, feeds, augmented=self.augmenter is not None))
        labels = None if self.labels is None else self.labels[idx].to(self.device)
        loss = self._loss(feeds, teacher, labels, transforms, use_features, sharded=True, placeholder=share == 0)
        return loss if share == 1 else loss * share

    def validation_loss(self, transforms: Transforms) -> float | None:
        """Mean distillation loss on the held-out samples (no augmentation, no gradient); None without them."""
        if self.validation is None or len(self.validation) == 0:
            return None
        total = count = 0.0
        with torch.no_grad():
            for i, batch in enumerate(self.validation.batches(self.batch_size)):
                if i % world_size() != rank():  # data-parallel: each rank its share of the batches
                    continue
                feeds = to_device(batch.inputs, self.device)
                with self.precision.autocast():
                    teacher = to_fp32(self.teacher.dense(feeds))
                n = len(next(iter(batch.inputs.values())))
                total += float(self._loss(feeds, teacher, None, transforms, use_features=True)) * n
                count += n
        total, count = reduce_sum([total, count])
        return total / count
