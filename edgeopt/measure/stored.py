"""Stored measurements: the file names of a measurements folder and the one validated loader of a
measurement document, with one error for a bad file.

A file that is missing, not a regular file (a FIFO or device: refused from ``os.stat``, never opened),
truncated, not JSON, larger than ``edgeopt.core.fileio.MAX_JSON_BYTES`` or nested deeper than
``MAX_JSON_DEPTH``, of another kind or schema, or fails validation raises
:class:`~edgeopt.errors.InputRejectedError` (exit 3) naming the file and the field, whichever command
reads it (``report``, ``gate``, ``compare``, ``log-mlflow``, ``rerun``, the pytest plugin).  A measurement
whose statistics are not those of its raw samples, or hold a non-finite number, is refused as "modified
or corrupt" (``edgeopt.measure.results``).  The run folder around them (``RunLayout``, ``summary.json``) is
``edgeopt.reports.run_summary``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edgeopt.core.fileio import JsonLimitError, NotRegularFileError, read_json
from edgeopt.errors import InputRejectedError, first_line
from edgeopt.measure.results import SCHEMA_VERSION, Measurement

__all__ = ["EMULATED_STATUS", "NOT_APPLICABLE_STATUS", "extra_outputs_file", "invalid_document", "load_measurement",
           "read_document", "result_stem"]

EMULATED_STATUS = "emulated"  # the status of an accuracy-only row (edgeopt.measure.emulation): no measurement
NOT_APPLICABLE_STATUS = "not-applicable"  # a recipe the model does not take (edgeopt.errors.NotApplicableError)


def result_stem(variant: str, profile: str) -> str:
    """The file stem of one (variant, profile) result: ``{variant}__{profile}``."""
    return f"{variant}__{profile}"


def extra_outputs_file(stem: str, name: str) -> str:
    """File name (in the measurement folder) of the outputs of the extra reference set ``name``."""
    return f"{stem}.{name}.outputs.npz"


def read_document(path: Path, what: str) -> dict[str, Any]:
    try:
        document = read_json(path)
    except FileNotFoundError as error:
        raise InputRejectedError(f"{path}: no {what} here") from error
    except IsADirectoryError as error:
        raise InputRejectedError(f"{path}: a directory, not a {what}") from error
    except JsonLimitError as error:
        raise InputRejectedError(f"{first_line(error)} (refused as a {what})") from error
    except NotRegularFileError as error:
        raise InputRejectedError(f"{path}: {error.strerror}, not a {what}; not read") from error
    except (OSError, ValueError) as error:
        raise InputRejectedError(f"{path}: unreadable {what} (truncated or not JSON): {first_line(error)}") from error
    if not isinstance(document, dict):
        raise InputRejectedError(f"{path}: not an edgeopt {what} (the top level is not an object)")
    return document


def invalid_document(path: Path, what: str, error: ValidationError) -> InputRejectedError:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    more = f" (and {error.error_count() - 1} more problem(s))" if error.error_count() > 1 else ""
    return InputRejectedError(f"{path}: invalid {what}: {where}: {first['msg']}{more}")


def load_measurement(path: Path | str, document: dict[str, Any] | None = None) -> Measurement:
    """The measurement document at ``path`` (already parsed: ``document``), validated."""
    path = Path(path)
    if document is None:
        document = read_document(path, "measurement")
    if document.get("kind") != "measurement":
        raise InputRejectedError(f"{path}: not an edgeopt measurement (kind {document.get('kind')!r})")
    if document.get("schema_version") != SCHEMA_VERSION:
        raise InputRejectedError(f"{path}: measurement schema_version {document.get('schema_version')!r} is not "
                                 f"supported (this edgeopt reads {SCHEMA_VERSION}); measure it again")
    try:
        return Measurement.model_validate(document)
    except ValidationError as error:
        # everything edgeopt writes validates: a document that does not was edited or damaged since
        raise invalid_document(path, "measurement (the results file was modified or is corrupt)", error) from error
