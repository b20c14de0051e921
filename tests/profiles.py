"""Small hardware-profile YAML for tests: short timing loops, any host by default, stability rules off.

Tests are about exit codes, files and values, not about how quiet the CI machine is, so the
stability policy is switched off unless a test asks for rules of its own.
"""

from __future__ import annotations

from pathlib import Path

CALM = "max_cv: null, max_drift_rel: null, max_outlier_fraction: null, max_load_avg_per_core: null"
ANY_HOST = "  any_host: true"


def profile_yaml(
    name: str,
    *,
    identity: str = ANY_HOST,
    runtime: str = "  native_precisions: [fp32, int8]",
    max_seconds: float | str = 0.3,
    warmup_iterations: int = 5,
    min_iterations: int = 80,
    sample_floor: int | None = 80,
    worker_timeout_s: float = 120,
    budgets: str | None = "  p95_ms: 1000\n  peak_rss_mb: 4000",
    stability: str | None = CALM,
    description: str = "fast test profile",
) -> str:
    """The YAML text of a test profile (``name`` must equal the file stem it is written to).  ``sample_floor`` (80 by
    default, the p95 interval's 72 and more) keeps a slower model's rows judged on a loaded CI host, where
    ``max_seconds`` alone would leave them too few samples; ``None`` lets ``max_seconds`` bound the row."""
    runtime_lines = f"{runtime}\n" if runtime else ""
    text = (f"name: {name}\ndescription: {description}\nidentity:\n{identity}\n"
            f"runtime:\n  intra_op_threads: 1\n{runtime_lines}"
            f"bench:\n  warmup_iterations: {warmup_iterations}\n  min_iterations: {min_iterations}\n"
            f"  max_seconds: {max_seconds}\n  worker_timeout_s: {worker_timeout_s}\n"
            + (f"  sample_floor: {sample_floor}\n" if sample_floor is not None else ""))
    if budgets is not None:
        text += f"budgets:\n{budgets}\n"
    if stability is not None:
        text += f"stability: {{{stability}, fail_on_throttling: false}}\n"
    return text


def write_profile(directory: Path, name: str, **options: object) -> Path:
    path = Path(directory) / f"{name}.yaml"
    path.write_text(profile_yaml(name, **options))  # type: ignore[arg-type]
    return path
