"""Op handler families; importing this package registers every handler."""

from smart_onnx.executor.ops import elementwise  # noqa: F401
