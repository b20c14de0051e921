"""The jobs the parent hands a worker process, as small typed values (standard library only).

:class:`WorkerJob` is what ``python -m edgeopt.measure.worker`` runs (a timed measurement, or the reference
outputs alone for an accuracy emulation); :class:`AbJob` is what ``python -m edgeopt.measure.ab_worker`` runs (two
arms interleaved).  The parent builds one (``edgeopt.measure.cell`` for a measurement, ``edgeopt.workflows.ab``
for an A/B run), :func:`edgeopt.measure.launcher.run_worker` adds where the result goes, the lifeline and the
progress switch and writes it as JSON; the worker reads it back with ``from_dict`` and reads attributes, never
keys.  This module imports nothing beyond the standard library: it is loaded by the worker, whose memory is
measured.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["AbArm", "AbJob", "ReferenceSet", "TimingRule", "WorkerJob"]


@dataclass(frozen=True, kw_only=True)
class _Launched:
    """What :func:`edgeopt.measure.launcher.run_worker` adds to every job before the worker starts."""

    result_path: str = ""  # the worker's result document (in the launcher's private scratch folder)
    lifeline: dict[str, Any] | None = None  # edgeopt.core.lifeline's spec: parent pid, deadline, memory cap, ...
    progress: bool = False  # print progress lines on stdout for the parent's display

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TimingRule:
    """When the timed loop stops (a profile's ``bench`` settings, ``min_iterations`` raised to the samples its
    budgets need): at ``max_seconds`` whatever the count, except below ``sample_floor``."""

    stop_percentile: str
    confidence: float
    target_ci_rel: float
    min_iterations: int
    max_iterations: int
    max_seconds: float
    warmup_iterations: int
    warmup_seconds: float = 0.0
    sample_floor: int = 1  # samples collected whatever max_seconds says (the profile's bench.sample_floor)

    @classmethod
    def from_bench(cls, bench: dict[str, Any]) -> TimingRule:
        """The rule from a profile's bench settings as plain data (other keys are the parent's)."""
        return cls(**{f.name: bench[f.name] for f in dataclasses.fields(cls) if bench.get(f.name) is not None})


@dataclass(frozen=True)
class ReferenceSet:
    """Inputs (one sample per leading index) whose outputs the worker saves, untimed."""

    path: str
    outputs_path: str


@dataclass(frozen=True, kw_only=True)
class WorkerJob(_Launched):
    """One job of the measurement worker: open ``model_path`` with ``session`` (the backend's settings as plain
    data), run the reference sets, and, in ``measure`` mode, warm up and time ``inputs_path`` under ``timing``."""

    mode: Literal["measure", "outputs"] = "measure"
    model_path: str
    session: dict[str, Any]
    inputs_path: str | None = None
    timing: TimingRule | None = None
    reference: ReferenceSet | None = None  # the fidelity reference inputs (the eval set, when one is given)
    extra_references: tuple[ReferenceSet, ...] = ()  # e.g. the eval set under each input shift

    @property
    def outputs_path(self) -> str | None:
        """The file the reference outputs go to (a full disk there is named in the job's error)."""
        return self.reference.outputs_path if self.reference is not None else None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkerJob:
        timing, reference = data.get("timing"), data.get("reference")
        return cls(**{**data, "timing": TimingRule(**timing) if timing else None,
                      "reference": ReferenceSet(**reference) if reference else None,
                      "extra_references": tuple(ReferenceSet(**r) for r in data.get("extra_references", ()))})


@dataclass(frozen=True)
class AbArm:
    """One arm of an A/B run: a model, its session settings, its timing inputs."""

    model_path: str
    session: dict[str, Any]
    inputs_path: str


@dataclass(frozen=True, kw_only=True)
class AbJob(_Launched):
    """One interleaved A/B run (``edgeopt.measure.ab_worker``): blocks of calls of each arm in balanced ABBA
    order, segments between re-opens, until each ratio's interval is as tight as ``ci_targets`` or time is up."""

    arms: tuple[AbArm, AbArm]
    warmup_iterations: int
    max_seconds: float
    max_iterations: int
    min_block_ms: float
    block_iterations: int
    min_blocks: int
    min_segments: int
    min_samples: int
    ci_targets: dict[str, float] = field(default_factory=dict)
    confidence: float = 0.95
    seed: int = 0

    @property
    def outputs_path(self) -> str | None:
        return None  # an A/B run saves no outputs

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AbJob:
        first, second = (AbArm(**arm) for arm in data["arms"])
        return cls(**{**data, "arms": (first, second)})
