"""The exception hierarchy of edgeopt and the exit code each failure domain maps to.

Every error edgeopt raises on purpose is an ``EdgeoptError``.  The CLI prints its message
(one line, no traceback unless ``--debug``) and exits with ``exit_code``.
"""

from __future__ import annotations

import re

# Documented exit codes (README, "Exit codes").
EXIT_OK = 0
EXIT_BUDGET_FAILED = 1
EXIT_USAGE = 2
EXIT_INPUT_REJECTED = 3
EXIT_BACKEND_FAILURE = 4
EXIT_INCONCLUSIVE = 5


class EdgeoptError(Exception):
    """Root of every error edgeopt raises deliberately."""

    exit_code: int = EXIT_BACKEND_FAILURE


class ConfigError(EdgeoptError):
    """A configuration file or command-line option is invalid (profile YAML, budgets, options)."""

    exit_code = EXIT_USAGE


class InputRejectedError(EdgeoptError):
    """A user-supplied artifact (model file, calibration data) was rejected before use."""

    exit_code = EXIT_INPUT_REJECTED


class ModelFileError(InputRejectedError):
    """A model file is missing, empty, truncated, not ONNX, a Git LFS pointer, or unsafe."""


class CalibrationError(InputRejectedError):
    """A calibration set is empty, malformed, non-finite, mismatched or too small."""


class UserCodeError(InputRejectedError):
    """The user's own code (a model factory, a ``forward``) raised; the message names it and the user's frame."""


#: What a call into the user's code (a factory, a calibration entry point, a metric, their imports) catches and
#: turns into a :class:`UserCodeError`: any error, a ``sys.exit`` (whatever its code) and a stray
#: ``GeneratorExit``.  Not ``KeyboardInterrupt`` nor the CLI's stop signal (a ``BaseException`` too): those stop
#: edgeopt.
USER_CODE_ERRORS: tuple[type[BaseException], ...] = (Exception, SystemExit, GeneratorExit)


class ExportError(EdgeoptError):
    """Exporting a PyTorch model to ONNX failed, or the export does not match PyTorch numerically."""

    exit_code = EXIT_BACKEND_FAILURE


class QuantizationError(EdgeoptError):
    """Making a variant failed inside the quantizer or produced an invalid model."""

    exit_code = EXIT_BACKEND_FAILURE


class NotApplicableError(QuantizationError):
    """A recipe does not apply to the model (it is already quantized, or holds nothing the quantizer quantizes): a
    ``not-applicable`` row with the reason, neither a failure nor a variant."""


class BackendUnavailableError(EdgeoptError):
    """A backend's runtime is not installed; the message names the pip extra to install."""

    exit_code = EXIT_BACKEND_FAILURE
    failure_kind = "unavailable"  # the ``Failure.kind`` a measurement that raised this records


class BackendError(EdgeoptError):
    """A backend could not open or run a model (unsupported operator, provider fallback, ...)."""

    exit_code = EXIT_BACKEND_FAILURE
    failure_kind = "backend"


class UnsupportedModelError(BackendError):
    """The backend cannot convert or compile this model; the message names the operator or node."""

    failure_kind = "unsupported"


class ProviderFallbackError(BackendError):
    """An execution provider that was asked for is not active in the session (a silent fallback)."""

    failure_kind = "provider-fallback"


def failure_kind(error: BaseException) -> str:
    """The measurement failure kind of ``error``: its class's ``failure_kind``, else ``backend``."""
    return str(getattr(error, "failure_kind", "backend"))


class MeasurementError(EdgeoptError):
    """A measurement worker crashed, timed out or returned no usable result."""

    exit_code = EXIT_BACKEND_FAILURE


_RUNTIME_PREFIX = re.compile(r"^\[ONNXRuntimeError\] : \d+ : [A-Z_]+ : ")  # ORT's code and status name
_LOAD_FAILED = re.compile(r"^Load model from .+? failed:\s*")  # the path the user gave, then the reason
_NODE_FAILED = re.compile(r"^Non-zero status code returned while running (\S+) node\. Name:'([^']*)' Status Message: ")
# ORT's source location, function signature and failed check, before the sentence meant for a reader
_SOURCE_LOCATION = re.compile(r"\S+\.(?:h|cc|cpp|hpp):\d+ .*?\) (?:[^.]*? was false\. )?")


def brief(text: str, limit: int = 200) -> str:
    """A runtime's message as a row's reason: its first non-empty line without ONNX Runtime's ``[ONNXRuntimeError]
    : N : STATUS :`` prefix and ``Load model from <path> failed:`` lead (``node <op> '<name>':`` for a node that
    failed while running), cut at a clause boundary to at most ``limit`` characters (marked ``...``)."""
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    line = _LOAD_FAILED.sub("", _RUNTIME_PREFIX.sub("", line))
    line = _SOURCE_LOCATION.sub("", _NODE_FAILED.sub(lambda m: f"node {m.group(1)} '{m.group(2)}': ", line), count=1)
    if len(line) <= limit:
        return line
    cut = max(line.rfind(mark, 0, limit - 4) for mark in (". ", "; ", ": ", ", "))
    return (line[:cut] if cut > limit // 2 else line[:limit - 4]).rstrip() + " ..."


def first_line(error: BaseException, limit: int = 400) -> str:
    """The first non-empty line of ``error``'s message (at most ``limit`` characters), else its class name."""
    for line in str(error).splitlines():
        if line.strip():
            return line.strip()[:limit]
    return type(error).__name__
