"""Same-host interleaved A/B (parent side): ``edgeopt ab BASE CANDIDATE --profile P``.

Both models (or one model under two profiles' settings) run in one ``python -m edgeopt.measure.ab_worker``
process in alternating ABBA blocks, so drift of the machine (clock, neighbours, thermal state) hits
both alike and cancels in the ratio.  The parent prepares identical timing inputs, launches the worker
with a timeout, turns its raw samples into p50/p95 ratios with bootstrap intervals that resample whole
segments (stretches between re-opened sessions, see ``edgeopt.measure.ab_worker``) and verdicts
(``edgeopt.evaluate.compare``), and writes one JSON result atomically.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.core import progress
from edgeopt.core.ratio_stats import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, Threshold, parse_thresholds
from edgeopt.core.run_lock import run_lock
from edgeopt.errors import ConfigError, MeasurementError
from edgeopt.evaluate.compare import Comparison, MeasuredSet, StatComparison, compare_sets
from edgeopt.measure.jobs import AbArm, AbJob
from edgeopt.measure.launcher import WorkerRun, run_worker, session_settings, worker_memory_cap
from edgeopt.models.input_spec import InputSpec
from edgeopt.profiles.schema import HardwareProfile

DEFAULT_AB_THRESHOLDS: tuple[str, ...] = ("p50:5%", "p95:5%")
MIN_BLOCK_MS = 50.0
BLOCK_ITERATIONS = 20
MIN_BLOCK_PAIRS = 10
MIN_SEGMENTS = 8  # the bootstrap resamples segments: fewer clusters than this give too narrow intervals
CI_TARGET_FRACTION = 1.0 / 3.0  # stop when each ratio's half-width is within threshold / 3
STDERR_TAIL_CHARS = 2000


@dataclass(frozen=True)
class ABResult:
    """The verdicts of one A/B run, and where its JSON document was written."""

    comparison: Comparison
    document: dict[str, Any]
    path: Path | None

    @property
    def rows(self) -> tuple[StatComparison, ...]:
        return self.comparison.rows

    @property
    def exit_code(self) -> int:
        return self.comparison.exit_code

    def render(self) -> str:
        doc = self.document
        head = (f"ab: {doc['base']['name']} (A) vs {doc['candidate']['name']} (B) on {doc['host']['cpu_model']}: "
                f"{doc['pairs']} ABBA block pairs of {doc['block_size']} in {doc['segment_count']} re-opened segments, "
                f"n={len(doc['samples_ns']['base'])} per "
                f"arm, stopped by {doc['stop_reason']}, {doc['loop_wall_ms'] / 1e3:.1f} s")
        return head + "\n" + self.comparison.render().replace("compare:", "ab:")


def _latency_thresholds(items: Iterable[str | Threshold] | None) -> tuple[Threshold, ...]:
    parsed = list(parse_thresholds(DEFAULT_AB_THRESHOLDS if items is None else items))
    scalar = [str(t) for t in parsed if not t.is_latency]
    if scalar:
        raise ConfigError(f"ab compares latency only; threshold(s) {', '.join(scalar)} need `edgeopt compare`")
    for default in parse_thresholds(DEFAULT_AB_THRESHOLDS):  # p50 and p95 are always reported
        if default.statistic not in {t.statistic for t in parsed}:
            parsed.append(default)
    return tuple(parsed)


def _launch(job: AbJob, timeout_s: float, profile: HardwareProfile, scratch: Path) -> dict[str, Any]:
    """Run the A/B worker; its ok result, else MeasurementError (``scratch``: the inputs, removed by an
    orphaned worker).  Its segments so far and samples of both arms show as progress."""
    with progress.task(f"ab: A/B segments (at least {job.min_segments})", unit="samples") as step:
        run: WorkerRun = run_worker(
            "edgeopt.measure.ab_worker", job, timeout_s, memory_cap=worker_memory_cap(profile), owned=[scratch],
            on_progress=lambda live: step.update(done=live["n"], detail=f"{live.get('segments', 0)} segments"))
    if run.timed_out:
        raise MeasurementError(f"ab worker exceeded {timeout_s:g} s and was killed")
    if run.result is None or run.result.get("status") != "ok":
        message = (run.result or {}).get("message")
        tail = run.stderr_tail.strip()
        raise MeasurementError(f"ab worker failed (exit {run.returncode}): {message or 'no result'}"
                               + (f"; stderr: {tail.splitlines()[-1]}" if tail else ""))
    return run.result


AB_TIME_FACTOR = 4  # default time cap of an A/B run, in units of the profile's bench.max_seconds


def run_ab(
    base: Path | str,
    candidate: Path | str,
    profile: HardwareProfile,
    *,
    profile_b: HardwareProfile | None = None,
    thresholds: Iterable[str | Threshold] | None = None,
    out_dir: Path | str | None = None,
    max_seconds: float | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    inputs: Sequence[InputSpec] = (),
) -> ABResult:
    """Measure ``base`` (A) and ``candidate`` (B) interleaved in one worker; ratios are B / A.

    ``profile`` gives A's session settings and the bench settings (warm-up, ``max_seconds`` unless
    given, iteration cap, worker timeout); ``profile_b`` gives B's session settings (default: the
    same).  ``out_dir``: where the JSON document goes (not written when None).  ``inputs``: ``--input``
    shapes for the models' symbolic dims.
    """
    from edgeopt import __version__
    from edgeopt.core.fileio import write_json_atomic
    from edgeopt.core.stats import PERCENTILES, min_samples_for_ci
    from edgeopt.measure.launcher import prepare_timing_inputs
    from edgeopt.measure.results import git_commit, now_iso
    from edgeopt.models.variants import Variant

    parsed = _latency_thresholds(thresholds)
    profile_b = profile_b or profile
    variants = [Variant.from_file(Path(base)), Variant.from_file(Path(candidate))]
    # two arms and a ratio of tail percentiles need about four times the samples of one measurement
    seconds = float(max_seconds if max_seconds is not None else AB_TIME_FACTOR * profile.bench.max_seconds)
    if not seconds > 0:
        raise ConfigError(f"--max-seconds must be > 0, got {seconds:g}")
    sessions = [session_settings(profile), session_settings(profile_b)]
    targets = {t.statistic: t.rel * CI_TARGET_FRACTION for t in parsed if t.statistic in ("p50", "p95")}
    lock = run_lock(out_dir, "ab") if out_dir is not None else contextlib.nullcontext()
    with lock, tempfile.TemporaryDirectory(prefix="edgeopt-ab-") as scratch:
        work = Path(scratch)
        timing = [prepare_timing_inputs(v.path, p, None, work / f"inputs_{arm}.npz", given=inputs)
                  for arm, v, p in (("a", variants[0], profile), ("b", variants[1], profile_b))]
        first, second = (AbArm(str(v.path.resolve()), s, str(i)) for v, s, i in zip(variants, sessions, timing,
                                                                                      strict=True))
        job = AbJob(arms=(first, second), warmup_iterations=profile.bench.warmup_iterations, max_seconds=seconds,
                    max_iterations=profile.bench.max_iterations, min_block_ms=MIN_BLOCK_MS,
                    block_iterations=BLOCK_ITERATIONS, min_blocks=MIN_BLOCK_PAIRS, min_segments=MIN_SEGMENTS,
                    min_samples=min_samples_for_ci(PERCENTILES["p95"], confidence), ci_targets=targets,
                    confidence=confidence, seed=0)
        result = _launch(job, seconds + profile.bench.worker_timeout_s, profile, work)
        label = f"{variants[0].name}-vs-{variants[1].name}"
        profile_label = profile.name if profile_b is profile else f"{profile.name}-vs-{profile_b.name}"
        sets = [MeasuredSet(label, profile_label, arm, np.asarray(result["samples_ns"][i], dtype=np.float64) / 1e6,
                            blocks=np.asarray(result["segments"][i]), host=result["host"], versions=result["versions"])
                for i, arm in enumerate(("A", "B"))]
        comparison = compare_sets([sets[0]], [sets[1]], parsed, confidence=confidence, resamples=resamples)
        document: dict[str, Any] = {
            "schema_version": 1, "kind": "ab", "created_at": now_iso(), "commit": git_commit(Path(__file__).parent),
            "base": _arm(variants[0], profile, sessions[0], result, 0),
            "candidate": _arm(variants[1], profile_b, sessions[1], result, 1),
            "samples_ns": {"base": result["samples_ns"][0], "candidate": result["samples_ns"][1]},
            "blocks": {"base": result["blocks"][0], "candidate": result["blocks"][1]},
            "segments": {"base": result["segments"][0], "candidate": result["segments"][1]},
            "block_size": result["block_size"], "pairs": result["pairs"], "order": result["order"],
            "segment_count": result["segment_count"], "segment_pairs": result["segment_pairs"],
            "reopen_ms": result["reopen_ms"],
            "stop_reason": result["stop_reason"], "loop_wall_ms": result["loop_wall_ns"] / 1e6,
            "max_seconds": seconds, "confidence": confidence, "ci_targets": targets,
            "thresholds": [str(t) for t in parsed], "host": result["host"],
            "versions": {"edgeopt": __version__, **result["versions"]}, "torch_imported": result["torch_imported"],
            "rows": [row.to_dict() for row in comparison.rows], "verdict": comparison.verdict,
            "exit_code": comparison.exit_code,
        }
        path = None
        if out_dir is not None:
            path = Path(out_dir) / f"ab__{variants[0].name}__vs__{variants[1].name}__{profile_label}.json"
            write_json_atomic(path, document)
        return ABResult(comparison, document, path)


def _arm(variant: Any, profile: HardwareProfile, session: dict[str, Any], result: dict[str, Any],
         index: int) -> dict[str, Any]:
    return {"name": variant.name, "path": str(variant.path), "sha256": variant.sha256,
            "size_bytes": variant.size_bytes, "precision": variant.precision, "profile": profile.name,
            "profile_settings": profile.model_dump(mode="json"), "session": session,
            "load_ms": result["load_ms"][index], "first_inference_ms": result["first_inference_ms"][index],
            "providers_active": result["providers_active"][index]}
