"""Hardware profiles: the typed schema, strict YAML loading, and matching a host against a profile identity.

A profile says how to recognise the target device (``identity``), how to run on it (``runtime``), how to
measure (``bench``), when a run is too unstable to judge (``stability``), what is acceptable
(``budgets``) and, optionally, its theoretical ``peak_rates``.
Units live in key names (``p95_ms``, ``peak_rss_mb``); every problem is a one-line ``ConfigError``.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from edgeopt.core.host import HostFingerprint, normalise_arch
from edgeopt.core.isa import native_precisions
from edgeopt.core.stats import PERCENTILES, min_samples_for_ci
from edgeopt.core.yaml_loader import load_yaml_file
from edgeopt.errors import ConfigError

__all__ = [
    "budget_sample_floor",
    "Bench",
    "Budgets",
    "HardwareProfile",
    "Identity",
    "IdentityMatch",
    "PeakRates",
    "Runtime",
    "ShapeRange",
    "Stability",
    "TensorRtSettings",
    "check_profile_files",
    "list_profiles",
    "load_profile",
    "match_identity",
    "profile_dirs",
]

Precision = Literal["fp32", "fp16", "bf16", "int8"]
# the backends a profile may name (runtime.backend, runtime.backends); edgeopt.backends' registry must offer
# exactly these (tests/test_tensorrt_logic.py checks it)
BackendName = Literal["onnxruntime", "openvino", "tensorrt", "torch"]


def _finite_positive(value: float) -> float:
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"must be a finite number > 0, got {value:g}")
    return value


def _valid_regex(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as e:
            raise ValueError(f"not a valid regular expression ({e}), got {value!r}") from e
    return value


#: The longest profile ``description`` accepted (it is copied into every result file).
MAX_DESCRIPTION_CHARS = 2000
MAX_NAME_CHARS = 200
# a profile's name, and any name edgeopt makes a file name of (the pytest plugin's ``name=``): one safe path part
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"



def check_name(name: str, what: str) -> str:
    """``name`` when it follows the profile-name rule (:data:`NAME_PATTERN`, at most :data:`MAX_NAME_CHARS`);
    ConfigError naming ``what`` and the name otherwise."""
    if len(name) > MAX_NAME_CHARS or re.fullmatch(NAME_PATTERN, name) is None:
        raise ConfigError(f"{what}={name!r}: a name is letters, digits, '.', '_' and '-', starting with a letter or "
                          f"digit, at most {MAX_NAME_CHARS} characters (it becomes a file name)")
    return name


PositiveFloat = Annotated[float, AfterValidator(_finite_positive)]
Share = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
Regex = Annotated[str | None, AfterValidator(_valid_regex)]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class Identity(_Section):
    """How to recognise the real device; every declared criterion must hold for a host to match."""

    any_host: bool = False
    arch: list[str] | None = None
    cpu_model_regex: Regex = None
    required_cpu_flags: list[str] = []
    logical_cores: int | None = Field(default=None, ge=1)
    min_memory_gb: PositiveFloat | None = None
    max_memory_gb: PositiveFloat | None = None
    gpu_name_regex: Regex = None
    device_model_regex: Regex = None

    @model_validator(mode="after")
    def _consistent(self) -> Identity:
        criteria = [k for k in type(self).model_fields if k != "any_host" and getattr(self, k)]
        if self.any_host and criteria:
            raise ValueError(f"any_host: true takes no other criteria, got {', '.join(criteria)}")
        if not self.any_host and not criteria:
            raise ValueError("declare at least one criterion (arch, cpu_model_regex, ...) or any_host: true")
        for arch in self.arch or []:
            if normalise_arch(arch) != arch:
                raise ValueError(f"arch: write {normalise_arch(arch)!r}, got {arch!r}")
        if self.min_memory_gb and self.max_memory_gb and self.min_memory_gb > self.max_memory_gb:
            raise ValueError("min_memory_gb must not exceed max_memory_gb")
        return self


class Runtime(_Section):
    """How to run a model on the target."""

    backend: BackendName = "onnxruntime"
    execution_providers: list[str] = Field(default=["CPUExecutionProvider"], min_length=1)
    intra_op_threads: int = Field(ge=1)
    inter_op_threads: int = Field(default=1, ge=1)
    graph_optimization_level: Literal["disable", "basic", "extended", "all"] = "all"
    native_precisions: list[Precision] = Field(default=["fp32"], min_length=1)
    workspace_mb: PositiveFloat | None = None
    # every runtime a run measures on this target (default: just ``backend``); the first is the reference
    backends: list[BackendName] | None = Field(default=None, min_length=1)
    # OpenVINO inference precisions to try for fp32 variants, where the device reports them
    openvino_precisions: list[Literal["fp32", "bf16", "fp16"]] = Field(default=["fp32", "bf16", "fp16"], min_length=1)

    @property
    def runtimes(self) -> list[str]:
        """The backends a run measures on, reference first."""
        return list(self.backends) if self.backends else [self.backend]


class Bench(_Section):
    """How to measure: warm-up, iteration bounds, time cap and the stopping rule."""

    warmup_iterations: int = Field(default=20, ge=0)
    # warm-up also lasts at least this long: 20 calls of a 15 µs model are 0.3 ms, far too little for
    # caches, branch predictors and the allocator to settle (runs drifted -37% without it)
    warmup_seconds: float = Field(default=0.5, ge=0, allow_inf_nan=False)
    min_iterations: int = Field(default=100, ge=1)
    max_iterations: int = Field(default=100_000, ge=1)
    # the timed loop's time cap: it bounds every row, even when the samples a confidence interval needs
    # (min_iterations, the stop percentile's and the budgeted percentiles' minimum) are not reached by then:
    # that row's percentile budgets are then inconclusive, saying how many samples they need
    max_seconds: PositiveFloat = 20.0
    # samples the loop collects whatever max_seconds says (null: none beyond one); set it to make a slow
    # model's percentile intervals exist at the cost of a longer run
    sample_floor: int | None = Field(default=None, ge=1)
    target_ci_rel: float = Field(default=0.02, gt=0, lt=1)
    stop_percentile: Literal["p50", "p90", "p95", "p99"] = "p95"
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    batch_size: int = Field(default=1, ge=1)
    input_shapes: dict[str, list[Annotated[int, Field(ge=1)]]] | None = None
    worker_timeout_s: PositiveFloat = 300.0
    # the largest timing/reference input edgeopt will build for one model input, in MiB: a declared
    # [1,3,100000,100000] input is refused (exit 3, naming it) instead of exhausting the host's memory
    max_input_mb: PositiveFloat = 1024.0
    # the worker's resident-memory cap in MiB (null: 75 % of the host's physical memory); a model that
    # grows past it is stopped and recorded as a failed measurement of kind ``memory``, never a host OOM
    worker_max_rss_mb: PositiveFloat | None = None

    @model_validator(mode="after")
    def _bounds(self) -> Bench:
        if self.max_iterations < self.min_iterations:
            raise ValueError(
                f"max_iterations ({self.max_iterations}) must be >= min_iterations ({self.min_iterations})"
            )
        if self.sample_floor is not None and self.sample_floor > self.max_iterations:
            raise ValueError(f"sample_floor ({self.sample_floor}) must be <= max_iterations ({self.max_iterations})")
        return self


class Stability(_Section):
    """When a measurement is too unstable to be judged (``null`` turns a rule off).

    The defaults flag only gross trouble, so that sub-millisecond models on a shared 2-vCPU VM pass
    (figures in docs/profiles.md); a profile for dedicated hardware should tighten them.
    """

    max_cv: float | None = Field(default=None, gt=0)
    max_drift_rel: float | None = Field(default=0.10, gt=0)
    max_outlier_fraction: float | None = Field(default=0.25, gt=0, le=1)
    max_load_avg_per_core: PositiveFloat | None = 1.5
    required_governor: str | None = Field(default=None, min_length=1)
    fail_on_throttling: bool = True


class Budgets(_Section):
    """Limits on measured statistics; a missing key means no budget."""

    p50_ms: PositiveFloat | None = None
    p90_ms: PositiveFloat | None = None
    p95_ms: PositiveFloat | None = None
    p99_ms: PositiveFloat | None = None
    peak_rss_mb: PositiveFloat | None = None
    model_size_mb: PositiveFloat | None = None
    # output budgets vs the fp32 reference (edgeopt.evaluate.gate.judge_outputs): floors on the worst output
    min_cosine: Share | None = None
    min_top1_agreement: Share | None = None  # judged by its Wilson interval over the argmax decisions
    min_decision_agreement: Share | None = None  # outputs in [0, 1], at --decision-threshold
    max_metric_drop: NonNegativeFloat | None = None  # the --eval metric's paired drop (points for percentages)


class PeakRates(_Section):
    """Theoretical peak rates of the execution engine, for estimates on absent hardware."""

    fp32_gflops: PositiveFloat | None = None
    fp16_gflops: PositiveFloat | None = None
    int8_gops: PositiveFloat | None = None
    memory_bandwidth_gbps: PositiveFloat | None = None


class ShapeRange(_Section):
    """One input's TensorRT optimisation-profile shapes: ``min <= opt <= max`` in every dimension."""

    min: list[Annotated[int, Field(ge=1)]] = Field(min_length=1)
    opt: list[Annotated[int, Field(ge=1)]] = Field(min_length=1)
    max: list[Annotated[int, Field(ge=1)]] = Field(min_length=1)

    @model_validator(mode="after")
    def _ordered(self) -> ShapeRange:
        if not len(self.min) == len(self.opt) == len(self.max):
            raise ValueError(f"min, opt and max must have the same rank, got {self.min}, {self.opt}, {self.max}")
        if any(not lo <= mid <= hi for lo, mid, hi in zip(self.min, self.opt, self.max, strict=True)):
            raise ValueError(f"need min <= opt <= max in every dimension, got {self.min}, {self.opt}, {self.max}")
        return self


class TensorRtSettings(_Section):
    """How TensorRT builds engines for this target (``edgeopt.backends.tensorrt``; docs/gpu.md).

    ``version_family`` is the TensorRT major version the target runs: 10 (JetPack 6) keeps the FP16
    builder flag; 11 builds every network strongly typed, so FP16 comes from the fp16 ONNX variant.
    INT8 always comes from the int8-static (Q/DQ) variant, never from a calibrator.
    ``version`` is the TensorRT release the target runs (``10.3`` on JetPack 6.1/6.2): the static readiness
    check (``edgeopt trt-check``, the readiness line of each TensorRT row) reads that release's operator table;
    unset, the newest shipped table of ``version_family``.
    """

    version_family: Literal[10, 11]
    version: str | None = Field(default=None, pattern=r"^\d+(\.x|(\.\d+)+)?$")
    precisions: list[Literal["fp32", "fp16", "int8"]] = Field(default=["fp32"], min_length=1)
    workspace_mb: PositiveFloat | None = None
    builder_optimization_level: int = Field(default=3, ge=0, le=5)
    timing_cache: bool = True
    shape_profile: dict[str, ShapeRange] | None = None
    power_mode: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _version_in_family(self) -> TensorRtSettings:
        if self.version is not None and int(self.version.split(".")[0]) != self.version_family:
            raise ValueError(f"version {self.version} is not TensorRT {self.version_family}.x (version_family)")
        return self

    @property
    def readiness_target(self) -> str:
        """The TensorRT release the static readiness check judges against: ``version``, else ``<family>.x``."""
        return self.version or f"{self.version_family}.x"


class HardwareProfile(_Section):
    """A declared target: identity, runtime, bench settings, budgets and optional peak rates."""

    name: str = Field(pattern=NAME_PATTERN, max_length=MAX_NAME_CHARS)
    # one line for ``profiles list``; copied into every result, so bounded (a 10 MB one was)
    description: str = Field(max_length=MAX_DESCRIPTION_CHARS)
    identity: Identity
    runtime: Runtime
    bench: Bench = Bench()
    stability: Stability = Stability()
    budgets: Budgets = Budgets()
    peak_rates: PeakRates | None = None
    tensorrt: TensorRtSettings | None = None

    def digest(self) -> str:
        """sha256 hex of the canonical JSON (sorted keys) of the whole profile: a cache and resume key.

        A profile without a ``tensorrt`` section digests as it did before that section existed."""
        data = self.model_dump(mode="json")
        if data.get("tensorrt") is None:
            data.pop("tensorrt", None)
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def expects_fast(self, precision: str, host: HostFingerprint | None = None) -> bool:
        """Whether the target runs ``precision`` natively fast: the declared ``native_precisions``, or, for
        an ``any_host`` profile measured on ``host``, what that host's ISA runs natively (core.isa)."""
        if self.identity.any_host and host is not None:
            return native_precisions(host.arch, host.cpu_flags).get(precision, False)
        return precision in self.runtime.native_precisions

    def target_cpu(self, host: HostFingerprint) -> tuple[str, tuple[str, ...]]:
        """(arch, CPU flags) of the hardware this profile declares: the host's for ``any_host``, else the
        identity's arch and required flags."""
        if self.identity.any_host:
            return host.arch, host.cpu_flags
        arch = (self.identity.arch or [host.arch])[0]
        return arch, tuple(self.identity.required_cpu_flags)

    def with_budgets(self, overrides: dict[str, float]) -> HardwareProfile:
        """A validated copy with some budgets replaced (CLI ``--budget p95_ms=12``)."""
        budgets = {k: v for k, v in self.budgets.model_dump().items() if v is not None}
        budgets.update(overrides)
        _check_units({"budgets": budgets}, "--budget", {})
        data = self.model_dump()
        data["budgets"] = budgets
        return _validate(data, "--budget", {})


# ---------------------------------------------------------------------------------------------- loading

_BARE_KEYS: dict[str, dict[str, str]] = {
    "budgets": {
        "p50": "p50_ms", "p90": "p90_ms", "p95": "p95_ms", "p99": "p99_ms",
        "peak_rss": "peak_rss_mb", "rss": "peak_rss_mb", "memory": "peak_rss_mb",
        "model_size": "model_size_mb", "size": "model_size_mb",
    },
    "runtime": {"workspace": "workspace_mb"},
    "tensorrt": {"workspace": "workspace_mb"},
    "bench": {
        "max_time": "max_seconds", "time": "max_seconds", "timeout": "worker_timeout_s",
        "worker_timeout": "worker_timeout_s",
    },
    "identity": {"min_memory": "min_memory_gb", "max_memory": "max_memory_gb", "memory": "min_memory_gb"},
    "stability": {
        "cv": "max_cv", "drift": "max_drift_rel", "max_drift": "max_drift_rel",
        "outliers": "max_outlier_fraction", "max_outliers": "max_outlier_fraction",
        "load": "max_load_avg_per_core", "max_load": "max_load_avg_per_core",
        "load_avg": "max_load_avg_per_core", "max_load_avg": "max_load_avg_per_core",
        "governor": "required_governor", "throttling": "fail_on_throttling",
    },
    "peak_rates": {
        "fp32": "fp32_gflops", "fp16": "fp16_gflops", "int8": "int8_gops",
        "memory_bandwidth": "memory_bandwidth_gbps", "bandwidth": "memory_bandwidth_gbps",
    },
}  # fmt: skip
_UNIT_WORDS = {
    "_ms": "milliseconds", "_mb": "megabytes", "_gb": "gigabytes", "_seconds": "seconds", "_s": "seconds",
    "_gflops": "GFLOP/s", "_gops": "GOP/s", "_gbps": "GB/s",
}  # fmt: skip


def _where(lines: dict[str, int], key: str) -> str:
    line = lines.get(key)
    return f" (line {line})" if line else ""


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _check_units(data: dict[str, Any], source: str, lines: dict[str, int]) -> None:
    """Reject bare unit-less keys and non-numeric values under unit-bearing keys."""
    for section, bare in _BARE_KEYS.items():
        values = data.get(section)
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            dotted = f"{section}.{key}"
            if key in bare:
                why = ("a rule is named by what it limits" if section == "stability"
                       else "a bare number needs its unit in the key name")
                raise ConfigError(f"{source}: {dotted}: {why}; use {bare[key]}" + _where(lines, dotted))
            unit = next((w for suffix, w in _UNIT_WORDS.items() if str(key).endswith(suffix)), None)
            if unit and value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise ConfigError(
                    f"{source}: {dotted}: expected a number of {unit}, got {value!r}" + _where(lines, dotted)
                )


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The section model at ``loc`` (through ``dict[str, Model]`` values too), for "allowed:" lists."""
    model: type[BaseModel] = HardwareProfile
    pending: list[Any] = []  # container annotations whose items ``loc`` has not reached yet
    for part in loc:
        if pending:
            annotation = pending.pop()
        else:
            field = model.model_fields.get(str(part))
            if field is None:
                return None
            annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        sub = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if sub is not None:
            model = sub
            continue
        container = next((c for c in candidates if getattr(c, "__origin__", None) in (dict, list)), None)
        if container is None:
            return None
        pending.append(container.__args__[-1])
    return None if pending else model


def _shown(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters: a message quotes what it saw, never a 10 MB string."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _dotted(loc: tuple[int | str, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "(top level)"


def _validate(data: dict[str, Any], source: str, lines: dict[str, int]) -> HardwareProfile:
    """Validate a mapping into a profile, turning pydantic's report into one ConfigError line that names
    the field (dotted, with list indexes), what was expected, what was seen (cut short) and its line."""
    try:
        return HardwareProfile.model_validate(data)
    except ValidationError as e:
        errors = e.errors()
        err = errors[0]
        loc = tuple(p for p in err["loc"] if not str(p).startswith("function-after"))
        msg = str(err["msg"]).removeprefix("Value error, ")
        if "[key]" in loc:  # a mapping key of the wrong type: name the mapping, then the key
            at = loc.index("[key]")
            loc, msg = loc[:at - 1], f"key {_shown(loc[at - 1])}: keys must be strings"
        elif err["type"] == "invalid_key":
            loc, msg = loc[:-1], f"key {_shown(err['input'])}: keys must be strings"
        dotted = _dotted(loc)
        if err["type"] == "extra_forbidden":
            parent = _model_at(loc[:-1])
            allowed = f"; allowed: {', '.join(parent.model_fields)}" if parent else ""
            msg = f"unknown key{allowed}"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] == "string_too_long":
            limit = (err.get("ctx") or {}).get("max_length")
            msg = f"at most {limit} characters, got {len(err['input'])}"
        elif not isinstance(err["input"], dict | list) and "got " not in msg and "keys must" not in msg:
            msg = f"{msg}, got {_shown(err['input'])}"
        elif "got " in msg and len(msg) > 300:
            msg = msg[:300] + "..."
        extra = len(errors) - 1
        more = f" (and {extra} more error{'s' if extra > 1 else ''})" if extra else ""
        line = lines.get(dotted) or lines.get(_dotted(loc[:-1]))
        where = f" (line {line})" if line else ""
        raise ConfigError(f"{source}: {dotted}: {msg}{where}{more}") from e


def _load_file(path: Path) -> HardwareProfile:
    source = _display(path)
    try:
        document = load_yaml_file(path, source=source, error=ConfigError, what="profile file")
    except FileNotFoundError as e:
        raise ConfigError(f"{source}: profile file not found") from e
    data = document.data
    if data is None:
        raise ConfigError(f"{source}: profile file is empty; expected a mapping with name, identity, runtime")
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    _check_units(data, source, document.key_lines)
    profile = _validate(data, source, document.key_lines)
    if profile.name != path.stem:
        raise ConfigError(
            f"{source}: name: must equal the file name stem {path.stem!r}, got {profile.name!r}"
            + _where(document.key_lines, "name")
        )
    return profile


PROFILE_PATH_VARIABLE = "EDGEOPT_PROFILE_PATH"


def shipped_profiles_dir() -> Path:
    """The profiles shipped with edgeopt: in an installed wheel, its package data ``edgeopt/profiles/shipped``
    (the build maps the checkout's top-level ``hardware_profiles/`` there: pyproject.toml ``package-dir``);
    otherwise (an editable install, or the checkout on ``PYTHONPATH``) that ``hardware_profiles/`` itself."""
    packaged = Path(str(importlib.resources.files("edgeopt.profiles") / "shipped"))
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parent.parent.parent / "hardware_profiles"
    return checkout if checkout.is_dir() else packaged


def profile_dirs() -> list[Path]:
    """Where profile names are looked up, first match wins: ``./hardware_profiles``, the folders in
    ``$EDGEOPT_PROFILE_PATH`` (``os.pathsep``-separated), then the profiles shipped with edgeopt.

    A folder is searched once, at its first place. In the checkout's root ``./hardware_profiles`` *is* the
    shipped folder: it keeps the shipped folder's place, after ``$EDGEOPT_PROFILE_PATH``."""
    extra = [Path(p) for p in os.environ.get(PROFILE_PATH_VARIABLE, "").split(os.pathsep) if p]
    local, shipped = Path.cwd() / "hardware_profiles", shipped_profiles_dir()
    dirs: list[Path] = []
    for d in (*([] if local.resolve() == shipped.resolve() else [local]), *extra, shipped):
        if all(d.resolve() != seen.resolve() for seen in dirs):
            dirs.append(d)
    return dirs


def _profile_files() -> dict[str, Path]:
    files: dict[str, Path] = {}
    for d in profile_dirs():
        if d.is_dir():
            for f in sorted([*d.glob("*.yaml"), *d.glob("*.yml")]):
                files.setdefault(f.stem, f)
    return dict(sorted(files.items()))


def profile_file(name_or_path: str | Path) -> Path:
    """The file :func:`load_profile` reads for ``name_or_path`` (a name: its first match in ``profile_dirs()``,
    so a run can say which file a name that shadows a shipped profile came from); ConfigError for an unknown name."""
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or text.endswith((".yaml", ".yml")) or "/" in text or "\\" in text:
        return Path(name_or_path)
    files = _profile_files()
    if text not in files:
        available = ", ".join(files) or "none"
        where = ", ".join(str(d) for d in profile_dirs())
        raise ConfigError(f"unknown hardware profile {text!r}; available: {available} (searched {where})")
    return files[text]


def load_profile(name_or_path: str | Path) -> HardwareProfile:
    """Load a profile from a ``.yaml``/``.yml`` path (or anything with a separator), or by name."""
    return _load_file(profile_file(name_or_path))


def list_profiles() -> list[HardwareProfile]:
    """Every profile in ``profile_dirs()`` (the first directory wins on duplicate names), sorted by name."""
    return [_load_file(f) for f in _profile_files().values()]


def check_profile_files() -> list[tuple[Path, HardwareProfile | ConfigError]]:
    """Validate every profile file in every directory; a bad file is reported, never stops the check."""
    results: list[tuple[Path, HardwareProfile | ConfigError]] = []
    for d in profile_dirs():
        if d.is_dir():
            for f in sorted([*d.glob("*.yaml"), *d.glob("*.yml")]):
                try:
                    results.append((f, _load_file(f)))
                except ConfigError as e:
                    results.append((f, e))
    return results


# --------------------------------------------------------------------------------------------- matching


@dataclass(frozen=True)
class IdentityMatch:
    """Whether a host is a profile's declared hardware, with one human sentence per criterion."""

    matches: bool
    reasons: tuple[str, ...]

    def __bool__(self) -> bool:
        return self.matches


def _search(regex: str, text: str | None) -> bool:
    return text is not None and re.search(regex, text, re.IGNORECASE) is not None


def match_identity(profile: HardwareProfile, host: HostFingerprint) -> IdentityMatch:
    """Check ``host`` against every identity criterion; reasons list failures (or, on a match, successes).

    Regular expressions are searched case-insensitively anywhere in the host's string.
    """
    ident = profile.identity
    if ident.any_host:
        return IdentityMatch(True, ("profile accepts any host",))
    good: list[str] = []
    bad: list[str] = []

    def check(passed: bool, if_passed: str, if_failed: str) -> None:
        (good if passed else bad).append(if_passed if passed else if_failed)

    mem, cpu, model = host.memory_total_gb, host.cpu_model, host.device_model
    if ident.arch:
        want = " or ".join(ident.arch)
        check(host.arch in ident.arch, f"arch {host.arch}", f"arch {want} required, host is {host.arch}")
    if rx := ident.cpu_model_regex:
        check(
            _search(rx, cpu), f"CPU model {cpu!r} matches /{rx}/", f"CPU model {cpu!r} does not match /{rx}/"
        )
    for flag in ident.required_cpu_flags:
        check(flag in host.cpu_flags, f"CPU flag {flag} present", f"CPU flag {flag} missing")
    if (n := ident.logical_cores) is not None:
        have = host.logical_cores
        check(have == n, f"{n} logical cores", f"{n} logical cores required, host has {have}")
    if (lo := ident.min_memory_gb) is not None:
        check(
            mem >= lo,
            f"memory {mem:g} GB >= {lo:g} GB",
            f"at least {lo:g} GB memory required, host has {mem:g} GB",
        )
    if (hi := ident.max_memory_gb) is not None:
        check(
            mem <= hi,
            f"memory {mem:g} GB <= {hi:g} GB",
            f"at most {hi:g} GB memory required, host has {mem:g} GB",
        )
    if rx := ident.gpu_name_regex:
        gpus = ", ".join(host.gpus) or "none"
        hit = any(_search(rx, g) for g in host.gpus)
        check(hit, f"GPU matches /{rx}/ ({gpus})", f"no GPU matches /{rx}/ (host GPUs: {gpus})")
    if rx := ident.device_model_regex:
        missing = f"device model matching /{rx}/ required, host reports none"
        mismatch = f"device model {model!r} does not match /{rx}/"
        check(_search(rx, model), f"device model {model!r} matches /{rx}/", mismatch if model else missing)
    return IdentityMatch(not bad, tuple(bad or good))


def budget_sample_floor(profile: HardwareProfile) -> int:
    """Samples needed for a confidence interval on every percentile the profile budgets (p99: 368 at 95%)."""
    budgeted = [PERCENTILES[name[:-3]] for name, value in profile.budgets.model_dump().items()
                if value is not None and name[:-3] in PERCENTILES]
    return max((min_samples_for_ci(q, profile.bench.confidence) for q in budgeted), default=1)
