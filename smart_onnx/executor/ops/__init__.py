"""Op handler families; importing this package registers every handler."""

from smart_onnx.executor.ops import (
    activation,  # noqa: F401
    contrib,  # noqa: F401
    control,  # noqa: F401
    conv,  # noqa: F401
    elementwise,  # noqa: F401
    indexing,  # noqa: F401
    linalg,  # noqa: F401
    logic,  # noqa: F401
    norm,  # noqa: F401
    pool,  # noqa: F401
    reduce,  # noqa: F401
    resize,  # noqa: F401
    rnn,  # noqa: F401
    shape,  # noqa: F401
    tensor,  # noqa: F401
)
