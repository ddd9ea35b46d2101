"""Calibration and evaluation data: load it for a model's inputs, split it, batch it.

Supported data (``--data``), a single file or a folder of one kind of file, sorted by
name and concatenated along the sample axis. ``.npy`` files and ``.npz`` archives are
memory-mapped (batches read their rows; see ``_mapped.py``): members stored uncompressed where
they lie, compressed ones after inflating them once into a temporary file; several files are
joined without being read. Images are decoded up front while the decoded set fits
``IMAGES_IN_MEMORY_BYTES`` (256 MiB) and batch by batch as they are read beyond it:

* ``*.npz``: arrays keyed by graph-input name, samples along axis 0, plus an optional
  ``label`` array (one integer class per sample) when no graph input is called
  ``label``. All files in a folder need the same keys.
* ``*.npy``: one array, samples along axis 0, for single-input models.
* images (``png``, ``jpg``, ``jpeg``, ``bmp``, any case) for a model whose only input
  is a float rank-4 tensor. Layout from its shape: NCHW when dim 1 is 1 or 3, NHWC
  when the last dim is 1 or 3, NCHW when both. Images are converted to RGB (grayscale
  for one channel), resized to the input's H x W (bilinear, no crop; give
  ``image_size`` when H or W is symbolic), scaled to [0, 1], then ``(x - mean) / std``
  per channel. A folder of class subfolders (``calib/cat/*.png``, ``calib/dog/*.png``)
  labels each image with the index of its subfolder among the sorted subfolder names.

Arrays are cast to the input's dtype when that is exact (float64 -> float32 and
int -> float are fine; float data for an integer input must hold whole numbers).
Every problem is a ``DataError`` naming the file and input.
"""

from __future__ import annotations

from smart_onnx.data._dataset import EVAL_HOLDOUT, Batch, Dataset, concat
from smart_onnx.data._images import ImageLayout, image_layout
from smart_onnx.data._load import dataset_from_arrays, load_dataset, write_npz
from smart_onnx.data._mapped import read_rows

__all__ = ["EVAL_HOLDOUT", "Batch", "Dataset", "ImageLayout", "concat", "dataset_from_arrays", "image_layout",
           "load_dataset", "read_rows", "write_npz"]
