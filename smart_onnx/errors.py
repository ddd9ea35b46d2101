"""Exception hierarchy.

``SmartOnnxError`` and its subclasses are user-fixable problems: the CLI prints
``str(e)`` as one line and exits 2. ``InternalError`` is a bug in smart-onnx and
deliberately does not subclass ``SmartOnnxError``, so it keeps its traceback.

The library speaks in parameters, never in command-line flags: a message names the
parameter at fault in backquotes (``"`std` has a zero value"``) and the error lists
it in ``parameters``. The CLI turns those names into its flags, in one place
(``smart_onnx.cli.main.FLAGS``).
"""

from __future__ import annotations

__all__ = [
    "ConstraintError",
    "DataError",
    "GraphError",
    "InternalError",
    "ModelLoadError",
    "ProfileError",
    "RewriteError",
    "SmartOnnxError",
    "UnsupportedOpError",
]


class SmartOnnxError(Exception):
    """A problem the user can fix; ``str(e)`` is one sentence naming what is at fault.

    Args:
        message: the sentence; a parameter it names is written in backquotes, e.g. ```input_shapes```.
        parameters: the API parameters the message names that way, for the CLI to show as flags.
    """

    def __init__(self, message: str, *, parameters: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.parameters = tuple(parameters)


class ModelLoadError(SmartOnnxError):
    """The model file is missing, unreadable or not a valid ONNX model."""


class UnsupportedOpError(SmartOnnxError):
    """The executor has no handler for an op (or for the model's opset of it)."""


class GraphError(SmartOnnxError):
    """The graph is malformed or uses a construct smart-onnx cannot handle."""


class DataError(SmartOnnxError):
    """Calibration or evaluation data is missing or does not match the model's inputs."""


class ConstraintError(SmartOnnxError):
    """A requested sparsity, mask or keep-set is impossible."""


class RewriteError(SmartOnnxError):
    """The ONNX graph cannot be rewritten as requested."""


class ProfileError(SmartOnnxError):
    """A hardware profile is malformed or unknown."""


class InternalError(Exception):
    """A bug in smart-onnx (not a SmartOnnxError: it keeps its traceback)."""
