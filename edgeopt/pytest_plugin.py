"""pytest plugin: assert edgeopt budgets from a user's own test suite, with the same gate as the CLI.

Loaded through the ``pytest11`` entry point in every pytest session of an environment where edgeopt is
installed, so this module imports only the standard library, pytest, ``edgeopt.errors`` and
``edgeopt.cli.options`` (the option declarations it shares with the CLI); profiles,
measurement and the gate are imported when a test first asks for a budget.

- fixture ``edgeopt_budget("model.onnx", p95_ms=20, peak_rss_mb=500)``: measures the file on the
  profile in the isolated worker, judges it with :func:`edgeopt.evaluate.gate.gate_measurement` and fails the
  test with the violation sentence; returns a :class:`BudgetResult` otherwise;
- marker ``@pytest.mark.edgeopt("model.onnx", p95_ms=20)``: the same check, run after the test body;
- options ``--edgeopt-profile``, ``--edgeopt-proxy``, ``--edgeopt-strict``, ``--edgeopt-save DIR``,
  ``--edgeopt-baseline DIR`` and ``--edgeopt-threshold``.

``name=`` follows the profile-name rule (it becomes a file name under ``--edgeopt-save``); a session that saves
a name claims it in the save folder (a lock under ``DIR/.edgeopt-claims/``) until it ends, so a second session
saving the same name at the same time fails that test instead of overwriting.  Work folders live under
pytest's temporary folder (``--basetemp``) and are removed when the session ends.

Verdicts become test outcomes (docs/pytest.md): fail -> failed; inconclusive, or invalid (the
measurement broke the profile's stability policy) -> skipped with the sentence, or failed under
``--edgeopt-strict``; not-applicable (this host is not the profile's hardware, no proxy) -> skipped
with the reason; a failed measurement or a bad option -> failed.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest

from edgeopt.cli import options
from edgeopt.errors import EdgeoptError, InputRejectedError, first_line

if TYPE_CHECKING:
    from edgeopt.evaluate.compare import Comparison
    from edgeopt.evaluate.gate import GateResult
    from edgeopt.measure.results import Measurement
    from edgeopt.profiles.schema import HardwareProfile

DEFAULT_PROFILE = "host-cpu"
CLAIMS = ".edgeopt-claims"  # DIR/.edgeopt-claims/<name>__<profile>/: the lock of the session saving that name
PREFIX = "edgeopt-"  # --edgeopt-profile is edgeopt's --profile (edgeopt.cli.options declares both)
_UNDECIDED = ("inconclusive", "invalid")  # gate verdicts that are neither pass nor fail
MARKER = (
    "edgeopt(model, *, profile=None, proxy=None, name=None, **budgets): after the test body, measure the ONNX "
    "file on the edgeopt profile and fail the test when a budget (p50_ms, p90_ms, p95_ms, p99_ms, peak_rss_mb, "
    "model_size_mb) is exceeded"
)


@dataclass(frozen=True)
class BudgetResult:
    """What a budget check found: the measurement, its gate result, where it was saved; truthy when it passed."""

    measurement: Measurement
    gate: GateResult
    saved: Path | None = None
    comparison: Comparison | None = None  # with --edgeopt-baseline

    def __bool__(self) -> bool:
        return bool(self.gate)


class BudgetFixture(Protocol):
    """The ``edgeopt_budget`` fixture's value (a gate's per-budget verdicts are ``evaluate.gate.BudgetCheck``)."""

    def __call__(self, model: str | Path, *, profile: str | Path | None = None, proxy: bool | None = None,
                 name: str | None = None, inputs: Mapping[str, Sequence[int]] | None = None,
                 calibration: str | Path | None = None, **budgets: float) -> BudgetResult: ...


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("edgeopt", "edgeopt budgets (fixture edgeopt_budget, marker edgeopt)")
    options.add_profile_options(group.addoption, PREFIX, default_help=DEFAULT_PROFILE,
                                note="for every budget that names none")
    options.add_proxy_options(group.addoption, PREFIX)
    group.addoption("--edgeopt-strict", action="store_true", default=False,
                    help="an inconclusive budget or baseline comparison fails the test (default: skip it)")
    group.addoption("--edgeopt-save", metavar="DIR", default=None,
                    help="save every edgeopt measurement as DIR/<name>__<profile>.json")
    group.addoption("--edgeopt-baseline", metavar="DIR", default=None,
                    help="compare every edgeopt measurement with DIR/<name>__<profile>.json (from --edgeopt-save)")
    options.add_threshold_options(group.addoption, PREFIX,
                                  default=f"those of edgeopt compare, {' '.join(options.COMPARE_THRESHOLDS)}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER)
    session = EdgeoptSession(config)
    config.stash[_SESSION] = session
    if config.getoption("edgeopt_profile") is not None:  # a bad profile is a usage error before any test runs
        try:
            session.profile(None)
        except EdgeoptError as error:
            raise pytest.UsageError(f"--edgeopt-profile: {error}") from error
    baseline = config.getoption("edgeopt_baseline")
    if baseline is not None:
        if not Path(baseline).is_dir():
            raise pytest.UsageError(f"--edgeopt-baseline {baseline}: not a directory")
        from edgeopt.core.ratio_stats import parse_thresholds

        try:
            parse_thresholds(session.thresholds)
        except EdgeoptError as error:
            raise pytest.UsageError(f"--edgeopt-threshold: {error}") from error


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """One line per profile: the fastest model of the session that passed every budget (issue 24)."""
    session = config.stash.get(_SESSION, None)
    lines = session.recommendations() if session is not None else []
    if lines:
        terminalreporter.section("edgeopt")
        for line in lines:
            terminalreporter.write_line(f"edgeopt: {line}")


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(_SESSION, None)
    if session is not None:
        session.close()


@pytest.fixture
def edgeopt_profile(request: pytest.FixtureRequest) -> HardwareProfile:
    """The profile named by ``--edgeopt-profile`` (default host-cpu), loaded and validated."""
    try:
        return request.config.stash[_SESSION].profile(None)
    except EdgeoptError as error:
        pytest.fail(f"edgeopt: {error}", pytrace=False)


@pytest.fixture
def edgeopt_budget(request: pytest.FixtureRequest) -> BudgetFixture:
    """``edgeopt_budget(model, *, profile=None, proxy=None, name=None, inputs=None, calibration=None,
    **budgets) -> BudgetResult``.

    Budgets given (``p95_ms=20``) override the profile's; the others still apply.  ``inputs``
    (``{"x": [1, 3, 48, 320]}``) fixes symbolic dims as ``--input`` does; ``calibration`` (a folder or
    ``package.module:function``) gives real samples, the first of which is timed.  Fails the test with
    the violation sentence; see the module docstring for the other verdicts.
    """
    session: EdgeoptSession = request.config.stash[_SESSION]

    def check(model: str | Path, *, profile: str | Path | None = None, proxy: bool | None = None,
              name: str | None = None, inputs: Mapping[str, Sequence[int]] | None = None,
              calibration: str | Path | None = None, **budgets: float) -> BudgetResult:
        result = session.check(model, profile=profile, proxy=proxy, name=name, budgets=budgets, inputs=inputs,
                               calibration=calibration)
        _share_with_benchmark(request.fixturenames, request.getfixturevalue, result)
        return result

    return check


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Any:
    outcome = yield  # the test body; when it raised, the budget is not checked
    marker = pyfuncitem.get_closest_marker("edgeopt")
    if marker is not None:
        kwargs = dict(marker.kwargs)
        if len(marker.args) > 1 or (marker.args and "model" in kwargs):
            pytest.fail("@pytest.mark.edgeopt takes one model, then keywords: "
                        "@pytest.mark.edgeopt('model.onnx', p95_ms=20)", pytrace=False)
        model = marker.args[0] if marker.args else kwargs.pop("model", None)
        if model is None:
            pytest.fail("@pytest.mark.edgeopt needs the model: @pytest.mark.edgeopt('model.onnx', p95_ms=20)",
                        pytrace=False)
        profile, proxy, name = kwargs.pop("profile", None), kwargs.pop("proxy", None), kwargs.pop("name", None)
        inputs, calibration = kwargs.pop("inputs", None), kwargs.pop("calibration", None)
        session: EdgeoptSession = pyfuncitem.config.stash[_SESSION]
        result = session.check(model, profile=profile, proxy=proxy, name=name, budgets=kwargs, inputs=inputs,
                               calibration=calibration)
        _share_with_benchmark(pyfuncitem.fixturenames, pyfuncitem.funcargs.__getitem__, result)
    return outcome


class EdgeoptSession:
    """Per-pytest-session state: options, loaded profiles, measurements already taken, saved files."""

    def __init__(self, config: pytest.Config) -> None:
        self.profile_option: str | None = config.getoption("edgeopt_profile")
        self.proxy: bool = bool(config.getoption("edgeopt_proxy"))
        self.strict: bool = bool(config.getoption("edgeopt_strict"))
        save = config.getoption("edgeopt_save")
        baseline = config.getoption("edgeopt_baseline")
        self.save_dir: Path | None = Path(save) if save else None
        self.baseline_dir: Path | None = Path(baseline) if baseline else None
        thresholds = config.getoption("edgeopt_threshold")
        self.thresholds: tuple[str, ...] | None = tuple(thresholds) if thresholds else None  # None: compare's
        self._profiles: dict[str, HardwareProfile] = {}
        self._measurements: dict[tuple[str, str, int, bool, str, str], Measurement] = {}
        self._saved: dict[str, str] = {}  # stem -> sha256 of the model saved under it
        self._claims = contextlib.ExitStack()  # the --edgeopt-save names this session holds
        self._config = config
        self._work: Path | None = None
        self._judged: list[tuple[str, Measurement, GateResult]] = []  # (name, measurement, gate) of every check

    def close(self) -> None:
        self._claims.close()
        if self._work is not None:
            shutil.rmtree(self._work, ignore_errors=True)
            self._work = None

    def work_dir(self) -> Path:
        """This session's work folder: under pytest's temporary folder (``--basetemp``), or the system's one
        when pytest's tmpdir plugin is disabled (``-p no:tmpdir``)."""
        if self._work is None:
            factory = getattr(self._config, "_tmp_path_factory", None)  # set by pytest's tmpdir plugin
            if isinstance(factory, pytest.TempPathFactory):
                self._work = factory.mktemp("edgeopt-work", numbered=False)
            else:
                self._work = Path(tempfile.mkdtemp(prefix="edgeopt-pytest-"))
        return self._work

    def claim(self, stem: str) -> None:
        """Hold ``stem`` in the save folder until the session ends; fails the test when another session
        (another pytest process, an xdist worker) holds it."""
        from edgeopt.core.run_lock import FolderBusyError, run_lock

        assert self.save_dir is not None
        try:
            self._claims.enter_context(run_lock(self.save_dir / CLAIMS / stem, f"pytest --edgeopt-save {stem}"))
            return
        except FolderBusyError as error:
            text = str(error)  # "<folder>: another edgeopt command is writing this folder (<holder>); wait ..."
        holder = text.partition("this folder (")[2].partition("); wait for it")[0] or "another process"
        # failed outside the except block: the test's report shows this line alone, not the lock's own error
        pytest.fail(f"--edgeopt-save {self.save_dir}: another pytest session is saving {stem}.json there "
                    f"({holder}); give each session's model its own name= or its own --edgeopt-save", pytrace=False)

    def profile(self, name: str | Path | None) -> HardwareProfile:
        """Load (once) the named profile, or the session's ``--edgeopt-profile``; raises ConfigError."""
        from edgeopt.profiles.schema import load_profile

        key = str(name if name is not None else self.profile_option or DEFAULT_PROFILE)
        if key not in self._profiles:
            self._profiles[key] = load_profile(key)
        return self._profiles[key]

    def check(self, model: str | Path, *, profile: str | Path | None, proxy: bool | None, name: str | None,
              budgets: Mapping[str, Any], inputs: Mapping[str, Sequence[int]] | None = None,
              calibration: str | Path | None = None) -> BudgetResult:
        """Measure, gate, save, compare; turn the verdicts into pytest outcomes (fail/skip) or return."""
        from edgeopt.evaluate.gate import Verdict, gate_measurement

        proxy = self.proxy if proxy is None else bool(proxy)
        if name is not None:
            from edgeopt.profiles.schema import check_name

            try:
                check_name(str(name), "name")
            except EdgeoptError as error:
                refused = f"edgeopt: {error}"  # failed outside the except: no chained traceback in the report
            else:
                refused = ""
            if refused:
                pytest.fail(refused, pytrace=False)
        try:
            chosen = self.profile(profile)
            if budgets:
                chosen = chosen.with_budgets(dict(budgets))
            measurement = self._measure(Path(model), chosen, name, proxy, inputs, calibration)
        except EdgeoptError as error:
            refused = f"edgeopt: {error}"  # failed outside the except: no chained traceback in the report
        else:
            refused = ""
        if refused:
            pytest.fail(refused, pytrace=False)
        if not measurement.ok:
            failure = measurement.failure
            message = failure.message if failure is not None else "measurement failed"
            tail = f"\n{failure.stderr_tail.rstrip()}" if failure is not None and failure.stderr_tail else ""
            pytest.fail(f"edgeopt: {message}{tail}", pytrace=False)
        saved = self._save(measurement)
        gate = gate_measurement(measurement, chosen, proxy=proxy)
        self._judged.append((name or Path(model).stem, measurement, gate))
        failed = list(gate.violations)
        # inconclusive checks, and those of a measurement that broke its profile's stability policy (invalid)
        undecided = [c.sentence for c in gate.checks if c.verdict.value in _UNDECIDED]
        invalid = gate.invalid_reasons
        if invalid and not gate.checks:
            undecided += invalid
        comparison = None
        if self.baseline_dir is not None:
            comparison, regressions, unsure = self._compare(measurement)
            failed += regressions
            undecided += unsure
        if failed:
            pytest.fail("\n".join(failed), pytrace=False)
        if undecided:
            what = "edgeopt invalid measurement" if invalid else "edgeopt inconclusive"
            text = "\n".join(undecided)
            if self.strict:
                pytest.fail(f"{what} (--edgeopt-strict): {text}", pytrace=False)
            pytest.skip(f"{what}: {text}")
        if gate.verdict is Verdict.NOT_APPLICABLE:
            reason = next(c.sentence for c in gate.checks if c.verdict is Verdict.NOT_APPLICABLE)
            pytest.skip(f"edgeopt not applicable: {reason} (--edgeopt-proxy judges it anyway)")
        return BudgetResult(measurement, gate, saved, comparison)

    def recommendations(self) -> list[str]:
        """Per profile checked this session, the fastest model that passed every budget (or why none did):
        ``edgeopt.reports.recommendation``, each model named by its ``name=`` (else its file's stem)."""
        if not self._judged:
            return []
        import dataclasses

        from edgeopt.reports.recommendation import recommend
        from edgeopt.reports.table import build_row

        rows = [dataclasses.replace(build_row(m, g, None, [], None), variant=label) for label, m, g in self._judged]
        profiles = list(dict.fromkeys(r.profile for r in rows))
        return [recommend(rows, profile, reference="").line() for profile in profiles]

    def _measure(self, path: Path, profile: HardwareProfile, name: str | None, proxy: bool,
                 inputs: Mapping[str, Sequence[int]] | None = None,
                 calibration: str | Path | None = None) -> Measurement:
        """One measurement per (name, model bytes, profile settings, sample floor, proxy, inputs) and session:
        budgets re-judge a measurement, they do not re-measure it (as in ``edgeopt run``)."""
        from edgeopt.measure.cell import Cell, CellContext, measure_cell
        from edgeopt.measure.launcher import measurement_key, prepare_timing_inputs
        from edgeopt.measure.stored import result_stem
        from edgeopt.models.calibration import load_calibration
        from edgeopt.models.graph import input_specs, load_model
        from edgeopt.models.input_spec import InputSpec
        from edgeopt.models.variants import Variant
        from edgeopt.profiles.schema import budget_sample_floor

        variant = Variant.from_file(path, name)
        given = tuple(InputSpec(str(k), tuple(int(d) for d in v), "float32") for k, v in (inputs or {}).items())
        key = (variant.name, measurement_key(variant, profile, None), budget_sample_floor(profile), proxy,
               repr(given), str(calibration))
        if key not in self._measurements:
            samples = None
            if calibration is not None:
                samples = load_calibration(calibration, expected_inputs=input_specs(load_model(variant.path)),
                                           min_samples=1)
            stem = result_stem(variant.name, profile.name)
            if self.save_dir is not None:
                self.claim(stem)
            work = Path(tempfile.mkdtemp(prefix=f"{stem}-", dir=self.work_dir()))
            timing = prepare_timing_inputs(variant.path, profile, samples, work / "inputs.npz", given=given)
            self._measurements[key] = measure_cell(Cell(variant, profile, timing),
                                                   CellContext(work, proxy=proxy, force=True))
        return self._measurements[key]

    def _stem(self, measurement: Measurement) -> str:
        from edgeopt.measure.stored import result_stem

        return result_stem(measurement.variant_name, measurement.profile_name)

    def _save(self, measurement: Measurement) -> Path | None:
        if self.save_dir is None:
            return None
        stem, sha = self._stem(measurement), str(measurement.variant.sha256)
        if self._saved.setdefault(stem, sha) != sha:
            pytest.fail(f"--edgeopt-save: two different models are named {measurement.variant_name!r} on "
                        f"{measurement.profile_name} in this session; give each its own name=", pytrace=False)
        path = self.save_dir / f"{stem}.json"
        measurement.save(path)
        return path

    def _compare(self, measurement: Measurement) -> tuple[Comparison, list[str], list[str]]:
        """Compare with the stored baseline: (comparison, regression sentences, inconclusive sentences),
        each list led by the comparison's warnings (other host, other library versions) when not empty.

        A missing, corrupt, truncated or old-schema baseline fails the test: it is never skipped.
        """
        from edgeopt.evaluate.compare import compare_measurements
        from edgeopt.measure.stored import load_measurement

        assert self.baseline_dir is not None
        path = self.baseline_dir / f"{self._stem(measurement)}.json"
        if not path.is_file():
            pytest.fail(f"--edgeopt-baseline: no baseline {path} for {measurement.variant_name} on "
                        f"{measurement.profile_name} (write one with --edgeopt-save)", pytrace=False)
        try:
            baseline = load_measurement(path)
        except InputRejectedError as error:
            pytest.fail(f"--edgeopt-baseline: {path} is not a readable edgeopt measurement: {first_line(error)}",
                        pytrace=False)
        if not baseline.ok:
            pytest.fail(f"--edgeopt-baseline: {path} is a failed measurement; it cannot be a baseline",
                        pytrace=False)
        try:
            comparison = compare_measurements(baseline, measurement, self.thresholds)
        except EdgeoptError as error:
            pytest.fail(f"--edgeopt-baseline: {error}", pytrace=False)
        warnings = [f"WARNING: {w}" for w in comparison.warnings]
        regressed = [f"vs baseline: {r.sentence}" for r in comparison.rows if r.verdict == "regressed"]
        undecided = [f"vs baseline: {r.sentence}" for r in comparison.rows if r.verdict == "inconclusive"]
        return (comparison, [*warnings, *regressed] if regressed else [],
                [*warnings, *undecided] if undecided else [])


def _share_with_benchmark(fixturenames: Any, get: Any, result: BudgetResult) -> None:
    """When the test also uses pytest-benchmark's ``benchmark`` fixture, record edgeopt's numbers in its
    ``extra_info`` (so they land in ``--benchmark-json`` and ``--benchmark-autosave`` files)."""
    if "benchmark" not in fixturenames:
        return
    benchmark = get("benchmark")
    extra = getattr(benchmark, "extra_info", None)
    if not isinstance(extra, dict):
        return
    measurement = result.measurement
    entry: dict[str, Any] = {"profile": measurement.profile_name, "verdict": result.gate.verdict.value,
                             "peak_rss_mb": measurement.memory.peak_rss_mb if measurement.memory else None,
                             "size_mb": measurement.variant.size_bytes / 2**20}
    if measurement.latency is not None:
        summary = measurement.latency.summary()
        entry["samples"] = summary.n
        for label, est in summary.percentiles.items():
            entry[f"{label}_ms"] = [est.value, est.lower, est.upper]
    extra.setdefault("edgeopt", {})[measurement.variant_name] = entry


_SESSION = pytest.StashKey[EdgeoptSession]()
