"""The run folder and its document: where each file of a run lives (:class:`RunLayout`) and the typed run
summary (:class:`RunSummary`, ``summary.json``) with its one loader.

Its rows are :class:`~edgeopt.reports.table.Row` values and its gates
:class:`~edgeopt.evaluate.gate.GateResult` values; in the file each is the object its ``to_dict()`` writes, and
validation reads such an object back with ``from_dict()`` (an already-typed value is taken as it is).

A summary that is missing, truncated, not JSON, of another kind or schema, or fails validation raises
:class:`~edgeopt.errors.InputRejectedError` (exit 3) naming the file and the field, whichever command reads it
(``report``, ``gate``, ``log-mlflow``, the pytest plugin).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer, ValidationError, WithJsonSchema

from edgeopt.errors import InputRejectedError
from edgeopt.evaluate.gate import GateResult
from edgeopt.measure.stored import EMULATED_STATUS, invalid_document, read_document, result_stem
from edgeopt.reports.table import Row

__all__ = ["RUN_SCHEMA_VERSION", "UNMADE_PROFILE", "RunLayout", "RunSummary", "load_summary"]

RUN_SCHEMA_VERSION = 1
UNMADE_PROFILE = "-"  # the profile of a row for a variant that could not be made


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

    @property
    def model(self) -> Path:
        """The exported model (a run of a factory)."""
        return self.root / "model.onnx"

    @property
    def run_log(self) -> Path:
        return self.root / "run.log"

    @property
    def model_marker(self) -> Path:
        """Which model this folder's results are of (``{"model": ..., "model_sha256": ...}``), written before
        anything is measured, so a crashed run counts too."""
        return self.root / "model.json"

    @property
    def reference_inputs(self) -> Path:
        """The inputs every variant runs for fidelity (and the eval set's metrics)."""
        return self.root / "reference_inputs.npz"

    def shifted_inputs(self, name: str) -> Path:
        """The eval set under the input shift ``name`` (``shift-noise``)."""
        return self.root / f"reference_inputs.{name}.npz"

    def timing_inputs(self, profile: str) -> Path:
        return self.inputs / f"{profile}.npz"

    def measurement(self, variant: str, profile: str) -> Path:
        return self.measurements / f"{result_stem(variant, profile)}.json"

    @classmethod
    def of(cls, path: Path | str) -> RunLayout:
        """The layout of the run folder ``path``, which may also name its ``summary.json``."""
        path = Path(path)
        return cls(path.parent if path.name == "summary.json" and path.is_file() else path)


_T = TypeVar("_T")


def _reader(cls: type[_T], from_dict: Callable[[Mapping[str, Any]], _T], what: str) -> Callable[[Any], _T]:
    """What validates a ``summary.json`` ``what``: a ``cls`` as it is, an object through ``from_dict``; anything
    else raises ValueError, which pydantic reports with the field's place (``rows.3: Value error, ...``)."""
    def read(value: Any) -> _T:
        if isinstance(value, cls):
            return value
        if not isinstance(value, Mapping):
            raise ValueError(f"a {what} must be an object, got {type(value).__name__}")
        try:
            return from_dict(value)
        except KeyError as error:
            raise ValueError(f"a {what} needs the field {error}") from error
        except (TypeError, ValueError, AttributeError, IndexError) as error:
            raise ValueError(f"not a {what}: {error}") from error
    return read


# in the file a row or gate is its to_dict(); the published schema says "an object", as it did for the dicts
_OBJECT_SCHEMA = WithJsonSchema({"type": "object", "additionalProperties": True})
_SummaryRow = Annotated[Row, BeforeValidator(_reader(Row, Row.from_dict, "row")),
                        PlainSerializer(Row.to_dict, return_type=dict), _OBJECT_SCHEMA]
_SummaryGate = Annotated[GateResult, BeforeValidator(_reader(GateResult, GateResult.from_dict, "gate")),
                         PlainSerializer(GateResult.to_dict, return_type=dict), _OBJECT_SCHEMA]


class RunSummary(BaseModel):
    """``summary.json``: what a run made, measured and decided (each row and gate written as its ``to_dict()``)."""

    # rows and gates hold measured figures that may be NaN/inf (an fp16 variant's overflowing outputs): they
    # stay floats in model_dump(mode="json") and the JSON encoder writes them as strings (edgeopt.core.fileio)
    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="strings")

    schema_version: Literal[1] = 1  # RUN_SCHEMA_VERSION
    kind: Literal["run"] = "run"
    model: str
    model_path: str
    model_sha256: str | None = None  # of the ONNX file named, or of a factory's reference (older summaries: None)
    profile_files: dict[str, str] = {}  # profile name -> the YAML file it was read from (older summaries: empty)
    calibration: dict[str, Any] | None = None
    profiles: list[str]
    evaluation: dict[str, Any] | None = None
    rows: list[_SummaryRow]
    gates: list[_SummaryGate]
    exit_code: int
    verdict: str
    # one per profile: the fastest row that passes every budget (edgeopt.reports.recommendation); older: none
    recommendations: list[dict[str, Any]] = []
    # the measured project's revision (edgeopt.core.revision: commit, branch, dirty, source) and when the run
    # wrote its summary (ISO 8601 UTC); older summaries: None
    revision: dict[str, Any] | None = None
    created_at: str | None = None

    def measured_rows(self) -> list[tuple[str, str]]:
        """(variant, profile) of every row that has a measurement document (not a variant that could not be made,
        not an accuracy emulation: ``edgeopt.measure.emulation`` keeps those under ``emulated/``)."""
        return [(r.variant, r.profile) for r in self.rows
                if r.profile != UNMADE_PROFILE and r.status != EMULATED_STATUS]


def load_summary(path: Path | str) -> RunSummary:
    """``summary.json`` of the run folder ``path`` (or the file itself), validated."""
    file = RunLayout.of(path).summary_json
    if not file.parent.is_dir():
        raise InputRejectedError(f"{file.parent}: not a directory (give the --out folder of an edgeopt run)")
    document = read_document(file, "run summary (give the --out folder of a finished 'edgeopt run')")
    if document.get("kind") != "run" or document.get("schema_version") != RUN_SCHEMA_VERSION:
        raise InputRejectedError(f"{file}: not an edgeopt run summary with schema_version {RUN_SCHEMA_VERSION} "
                                 f"(kind {document.get('kind')!r}, schema_version {document.get('schema_version')!r})")
    try:
        return RunSummary.model_validate(document)
    except ValidationError as error:
        raise invalid_document(file, "run summary", error) from error
