"""The run folder: where each file of a run lives (:class:`RunLayout`), the typed run document
(:class:`RunSummary`, ``summary.json``), and the one loader of each, with one error for a bad file.

A file that is missing, truncated, not JSON, larger than ``edgeopt.core.fileio.MAX_JSON_BYTES`` or nested
deeper than ``MAX_JSON_DEPTH``, of another kind or schema, or fails validation raises
:class:`~edgeopt.errors.InputRejectedError` (exit 3) naming the file and the field, whichever command
reads it (``report``, ``gate``, ``compare``, ``log-mlflow``, ``rerun``, the pytest plugin).  A measurement
whose statistics are not those of its raw samples, or hold a non-finite number, is refused as "modified
or corrupt" (``edgeopt.measure.results``).

The layout and the summary live here, below ``evaluate`` and ``reports``, because ``compare`` (in
``evaluate``) reads run folders as well as the reports do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from edgeopt.core.fileio import JsonLimitError, read_json
from edgeopt.errors import InputRejectedError, first_line
from edgeopt.measure.results import SCHEMA_VERSION, Measurement

__all__ = ["RUN_SCHEMA_VERSION", "RunLayout", "RunSummary", "load_measurement", "load_summary", "result_stem"]

RUN_SCHEMA_VERSION = 1
UNMADE_PROFILE = "-"  # the profile of a row for a variant that could not be made
EMULATED_STATUS = "emulated"  # the status of an accuracy-only row (edgeopt.measure.emulation): no measurement


def result_stem(variant: str, profile: str) -> str:
    """The file stem of one (variant, profile) result: ``{variant}__{profile}``."""
    return f"{variant}__{profile}"


@dataclass(frozen=True)
class RunLayout:
    """The paths of one run folder (the ``--out`` of ``edgeopt run``)."""

    root: Path

    @property
    def summary_json(self) -> Path:
        return self.root / "summary.json"

    @property
    def summary_md(self) -> Path:
        return self.root / "summary.md"

    @property
    def measurements(self) -> Path:
        return self.root / "measurements"

    @property
    def inputs(self) -> Path:
        return self.root / "inputs"

    @property
    def variants(self) -> Path:
        return self.root / "variants"

    def measurement(self, variant: str, profile: str) -> Path:
        return self.measurements / f"{result_stem(variant, profile)}.json"

    @classmethod
    def of(cls, path: Path | str) -> RunLayout:
        """The layout of the run folder ``path``, which may also name its ``summary.json``."""
        path = Path(path)
        return cls(path.parent if path.name == "summary.json" and path.is_file() else path)


class RunSummary(BaseModel):
    """``summary.json``: what a run made, measured and decided (rows and gates as their ``to_dict()``)."""

    # rows and gates hold measured figures that may be NaN/inf (an fp16 variant's overflowing outputs): they
    # stay floats in model_dump(mode="json") and the JSON encoder writes them as strings (edgeopt.core.fileio)
    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="strings")

    schema_version: Literal[1] = 1  # RUN_SCHEMA_VERSION
    kind: Literal["run"] = "run"
    model: str
    model_path: str
    calibration: dict[str, Any] | None = None
    profiles: list[str]
    evaluation: dict[str, Any] | None = None
    rows: list[dict[str, Any]]
    gates: list[dict[str, Any]]
    exit_code: int
    verdict: str

    def measured_rows(self) -> list[tuple[str, str]]:
        """(variant, profile) of every row that has a measurement document (not a variant that could not be made,
        not an accuracy emulation: ``edgeopt.measure.emulation`` keeps those under ``emulated/``)."""
        return [(str(r.get("variant")), str(r.get("profile"))) for r in self.rows
                if r.get("profile") != UNMADE_PROFILE and r.get("status") != EMULATED_STATUS]


def _read_document(path: Path, what: str) -> dict[str, Any]:
    try:
        document = read_json(path)
    except FileNotFoundError as error:
        raise InputRejectedError(f"{path}: no {what} here") from error
    except IsADirectoryError as error:
        raise InputRejectedError(f"{path}: a directory, not a {what}") from error
    except JsonLimitError as error:
        raise InputRejectedError(f"{first_line(error)} (refused as a {what})") from error
    except (OSError, ValueError) as error:
        raise InputRejectedError(f"{path}: unreadable {what} (truncated or not JSON): {first_line(error)}") from error
    if not isinstance(document, dict):
        raise InputRejectedError(f"{path}: not an edgeopt {what} (the top level is not an object)")
    return document


def _invalid(path: Path, what: str, error: ValidationError) -> InputRejectedError:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    more = f" (and {error.error_count() - 1} more problem(s))" if error.error_count() > 1 else ""
    return InputRejectedError(f"{path}: invalid {what}: {where}: {first['msg']}{more}")


def load_summary(path: Path | str) -> RunSummary:
    """``summary.json`` of the run folder ``path`` (or the file itself), validated."""
    file = RunLayout.of(path).summary_json
    if not file.parent.is_dir():
        raise InputRejectedError(f"{file.parent}: not a directory (give the --out folder of an edgeopt run)")
    document = _read_document(file, "run summary (give the --out folder of a finished 'edgeopt run')")
    if document.get("kind") != "run" or document.get("schema_version") != RUN_SCHEMA_VERSION:
        raise InputRejectedError(f"{file}: not an edgeopt run summary with schema_version {RUN_SCHEMA_VERSION} "
                                 f"(kind {document.get('kind')!r}, schema_version {document.get('schema_version')!r})")
    try:
        return RunSummary.model_validate(document)
    except ValidationError as error:
        raise _invalid(file, "run summary", error) from error


def load_measurement(path: Path | str, document: dict[str, Any] | None = None) -> Measurement:
    """The measurement document at ``path`` (already parsed: ``document``), validated."""
    path = Path(path)
    if document is None:
        document = _read_document(path, "measurement")
    if document.get("kind") != "measurement":
        raise InputRejectedError(f"{path}: not an edgeopt measurement (kind {document.get('kind')!r})")
    if document.get("schema_version") != SCHEMA_VERSION:
        raise InputRejectedError(f"{path}: measurement schema_version {document.get('schema_version')!r} is not "
                                 f"supported (this edgeopt reads {SCHEMA_VERSION}); measure it again")
    try:
        return Measurement.model_validate(document)
    except ValidationError as error:
        # everything edgeopt writes validates: a document that does not was edited or damaged since
        raise _invalid(path, "measurement (the results file was modified or is corrupt)", error) from error
