"""Op handler families; importing this package registers every handler."""

from smart_onnx.executor.ops import elementwise  # noqa: F401
from smart_onnx.executor.ops import shape  # noqa: F401
from smart_onnx.executor.ops import tensor  # noqa: F401
from smart_onnx.executor.ops import indexing  # noqa: F401
from smart_onnx.executor.ops import logic  # noqa: F401
from smart_onnx.executor.ops import control  # noqa: F401
from smart_onnx.executor.ops import conv  # noqa: F401
from smart_onnx.executor.ops import linalg  # noqa: F401
from smart_onnx.executor.ops import pool  # noqa: F401
from smart_onnx.executor.ops import norm  # noqa: F401
from smart_onnx.executor.ops import activation  # noqa: F401
from smart_onnx.executor.ops import reduce  # noqa: F401
from smart_onnx.executor.ops import resize  # noqa: F401
