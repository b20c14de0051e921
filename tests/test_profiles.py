"""Tests for hardware profiles: shipped files, strict YAML loading, budget overrides, identity matching."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from edgeopt.core.host import HostFingerprint
from edgeopt.errors import ConfigError
from edgeopt.profiles.schema import (
    HardwareProfile,
    Stability,
    check_profile_files,
    list_profiles,
    load_profile,
    match_identity,
    profile_dirs,
    shipped_profiles_dir,
)

SHIPPED = [
    "host-cpu",
    "jetson-agx-orin-64gb",
    "jetson-orin-nano-8gb",
    "nvidia-l4-trt11",
    "raspberry-pi-5",
    "x86-avx512vnni-2core",
]
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "hardware_profiles"  # package data edgeopt.profiles.shipped

GOOD = """\
name: {name}
description: test profile
identity:
  arch: [x86_64]
  required_cpu_flags: [avx512_vnni]
runtime:
  intra_op_threads: 1
  native_precisions: [fp32, int8]
bench:
  warmup_iterations: 2
budgets:
  p50_ms: 10
  p95_ms: 12
"""


def write(tmp_path: Path, text: str, name: str = "t") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def host(**overrides: object) -> HostFingerprint:
    data: dict[str, object] = {
        "hostname": "ci",
        "os": "Linux",
        "os_release": "6.1",
        "arch": "x86_64",
        "cpu_model": "AMD EPYC 9R14",
        "cpu_flags": ["avx2", "avx512_bf16", "avx512_vnni", "avx512f", "fma"],
        "logical_cores": 2,
        "physical_cores": 1,
        "memory_total_gb": 7.6,
        "gpus": [],
        "device_model": None,
        "python_version": "3.11.7",
    }
    data.update(overrides)
    return HostFingerprint.from_dict(data)


RPI5 = {
    "arch": "aarch64",
    "cpu_model": "Cortex-A76",
    "cpu_flags": ["asimd", "asimddp", "asimdhp", "fp", "fphp"],
    "logical_cores": 4,
    "memory_total_gb": 7.87,
    "device_model": "Raspberry Pi 5 Model B Rev 1.0",
}


# ------------------------------------------------------------------------------------- shipped profiles


def test_shipped_profiles_load_by_name_and_path() -> None:
    assert sorted(p.stem for p in SHIPPED_DIR.glob("*.yaml")) == SHIPPED
    for name in SHIPPED:
        profile = load_profile(name)
        assert profile.name == name
        assert load_profile(SHIPPED_DIR / f"{name}.yaml") == profile
        assert profile.expects_fast("fp32")
    assert SHIPPED_DIR in [d.resolve() for d in profile_dirs()]
    assert {p.name for p in list_profiles()} >= set(SHIPPED)
    assert all(isinstance(result, HardwareProfile) for _, result in check_profile_files())


def test_the_checkouts_hardware_profiles_are_the_shipped_ones_listed_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the checkout's root ``./hardware_profiles`` is the shipped folder: searched once, at the shipped
    folder's place (after ``$EDGEOPT_PROFILE_PATH``), so every profile and file is listed once."""
    assert shipped_profiles_dir().resolve() == SHIPPED_DIR
    mine = tmp_path / "mine"
    mine.mkdir()
    write(mine, GOOD.format(name="host-cpu"), name="host-cpu")
    monkeypatch.chdir(SHIPPED_DIR.parent)
    monkeypatch.setenv("EDGEOPT_PROFILE_PATH", str(mine))
    assert [d.resolve() for d in profile_dirs()] == [mine.resolve(), SHIPPED_DIR]
    assert load_profile("host-cpu").description == "test profile"  # $EDGEOPT_PROFILE_PATH before the shipped
    names = [p.name for p in list_profiles()]
    assert sorted(names) == names == SHIPPED
    checked = [path.resolve() for path, _ in check_profile_files()]
    assert len(checked) == len(set(checked)) == len(SHIPPED) + 1


def test_shipped_numbers_all_carry_a_comment() -> None:
    for path in SHIPPED_DIR.glob("*.yaml"):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            value = line.split("#", 1)[0].partition(":")[2].strip()
            if re.fullmatch(r"-?[0-9][0-9_.e+-]*", value):
                assert "#" in line, f"{path.name}:{number}: number without a source comment"


def test_x86_profile_settings() -> None:
    profile = load_profile("x86-avx512vnni-2core")
    assert profile.runtime.intra_op_threads == 1
    assert profile.runtime.native_precisions == ["fp32", "int8", "bf16"]  # bf16: OpenVINO on avx512_bf16
    assert not profile.expects_fast("fp16")
    assert profile.runtime.runtimes == ["onnxruntime", "openvino"]
    assert profile.budgets.p95_ms == 80
    assert profile.budgets.model_size_mb == 60


def test_digest_is_stable_and_tracks_changes(tmp_path: Path) -> None:
    a = load_profile(write(tmp_path, GOOD.format(name="t")))
    b = load_profile(write(tmp_path, GOOD.format(name="t")))
    assert a.digest() == b.digest()
    assert len(a.digest()) == 64
    c = load_profile(write(tmp_path, GOOD.format(name="t").replace("p95_ms: 12", "p95_ms: 13")))
    assert c.digest() != a.digest()


def test_with_budgets_returns_validated_copy(tmp_path: Path) -> None:
    profile = load_profile(write(tmp_path, GOOD.format(name="t")))
    tighter = profile.with_budgets({"p95_ms": 8.5, "peak_rss_mb": 300})
    assert tighter.budgets.p95_ms == 8.5
    assert tighter.budgets.peak_rss_mb == 300
    assert tighter.budgets.p50_ms == 10
    assert profile.budgets.p95_ms == 12
    assert tighter.digest() != profile.digest()
    for bad, key in [({"p95_ms": 0.0}, "p95_ms"), ({"p95": 8.0}, "p95_ms"), ({"bogus_ms": 1.0}, "bogus_ms")]:
        with pytest.raises(ConfigError, match=key):
            profile.with_budgets(bad)


# ------------------------------------------------------------------------------------------- bad files


def _bad(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new)


BASE = GOOD.format(name="t")
BAD_CASES = {
    "unknown-key": (_bad(BASE, "  warmup_iterations: 2", "  warmup_iters: 2"), "bench.warmup_iters"),
    "duplicate-top": (BASE + "budgets:\n  p50_ms: 1\n", "budgets"),
    "duplicate-nested": (_bad(BASE, "  p95_ms: 12", "  p95_ms: 12\n  p95_ms: 13"), "budgets.p95_ms"),
    "bare-p95": (_bad(BASE, "  p95_ms: 12", "  p95: 8"), "budgets.p95"),
    "unit-string": (_bad(BASE, "  p95_ms: 12", '  p95_ms: "8 ms"'), "budgets.p95_ms"),
    "inf": (_bad(BASE, "  p95_ms: 12", "  p95_ms: .inf"), "budgets.p95_ms"),
    "nan": (_bad(BASE, "  p95_ms: 12", "  p95_ms: .nan"), "budgets.p95_ms"),
    "zero": (_bad(BASE, "  p95_ms: 12", "  p95_ms: 0"), "budgets.p95_ms"),
    "negative": (_bad(BASE, "  p95_ms: 12", "  p95_ms: -1"), "budgets.p95_ms"),
    "bad-literal": (
        _bad(BASE, "  intra_op_threads: 1", "  intra_op_threads: 1\n  backend: tflite"),
        "backend",
    ),
    "no-criterion": (
        _bad(BASE, "  arch: [x86_64]\n  required_cpu_flags: [avx512_vnni]\n", "  {}\n"),
        "identity",
    ),
    "missing-threads": (_bad(BASE, "  intra_op_threads: 1\n", ""), "runtime.intra_op_threads"),
    "name-mismatch": (GOOD.format(name="other"), "name"),
    "not-mapping": ("- a\n- b\n", "mapping"),
    "empty": ("", "empty"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_yaml_is_one_line_config_error(tmp_path: Path, case: str) -> None:
    text, key = BAD_CASES[case]
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_profile(path)
    message = str(info.value)
    assert "t.yaml" in message
    assert key in message
    assert "\n" not in message
    assert info.value.exit_code == 2


def test_specific_messages(tmp_path: Path) -> None:
    cases = {
        "  p95: 8": "budgets.p95: a bare number needs its unit in the key name; use p95_ms",
        '  p95_ms: "8 ms"': "budgets.p95_ms: expected a number of milliseconds",
        "  p95_ms: .inf": "budgets.p95_ms: must be a finite number > 0, got inf",
        "  p95_ms: 0": "budgets.p95_ms: must be a finite number > 0, got 0",
        "  p95_ms: -1": "budgets.p95_ms: must be a finite number > 0, got -1",
        "  peak_rss: 100": "use peak_rss_mb",
        "  model_size: 100": "use model_size_mb",
    }
    for line, expected in cases.items():
        with pytest.raises(ConfigError, match=expected):
            load_profile(write(tmp_path, _bad(BASE, "  p95_ms: 12", line)))
    for section_line, expected in [("  timeout: 5", "worker_timeout_s"), ("  max_time: 5", "max_seconds")]:
        with pytest.raises(ConfigError, match=f"bench.*use {expected}"):
            load_profile(write(tmp_path, _bad(BASE, "  warmup_iterations: 2", section_line)))
    with pytest.raises(ConfigError, match="runtime.workspace: .*use workspace_mb"):
        load_profile(
            write(tmp_path, _bad(BASE, "  intra_op_threads: 1", "  intra_op_threads: 1\n  workspace: 64"))
        )


def test_duplicate_key_names_key_and_line(tmp_path: Path) -> None:
    text = _bad(BASE, "  p95_ms: 12", "  p95_ms: 12\n  p95_ms: 13")
    with pytest.raises(
        ConfigError, match=r"t\.yaml: budgets\.p95_ms: duplicate key \(line 14, first at line 13\)"
    ):
        load_profile(write(tmp_path, text))


def test_unknown_key_lists_allowed_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"bench\.warmup_iters: unknown key; allowed: warmup_iterations"):
        load_profile(write(tmp_path, BAD_CASES["unknown-key"][0]))


def test_python_tag_is_rejected_without_executing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    tags = [
        f'!!python/object/apply:os.system ["touch {marker}"]',
        f'!!python/object/apply:pathlib.Path.touch [!!python/object/apply:pathlib.Path ["{marker}"]]',
        '!!python/object/apply:os.system ["echo hi"]',
    ]
    for tag in tags:
        path = write(tmp_path, _bad(BASE, "description: test profile", f"description: {tag}"))
        with pytest.raises(ConfigError, match=r"t\.yaml: line 2: invalid YAML") as info:
            load_profile(path)
        assert "\n" not in str(info.value)
    assert not marker.exists()


def test_missing_file_and_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: profile file not found"):
        load_profile(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="unknown hardware profile 'no-such-board'; available: .*host-cpu"):
        load_profile("no-such-board")


def test_cwd_profiles_come_first_and_check_reports_every_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = tmp_path / "hardware_profiles"
    local.mkdir()
    write(local, GOOD.format(name="host-cpu"), name="host-cpu")
    write(local, "budgets: [", name="broken")
    write(local, GOOD.format(name="mine"), name="mine")
    monkeypatch.chdir(tmp_path)
    assert profile_dirs()[0] == local
    assert load_profile("host-cpu").description == "test profile"
    assert load_profile("mine").name == "mine"
    results = {path.name: result for path, result in check_profile_files()}
    assert isinstance(results["broken.yaml"], ConfigError)
    assert "hardware_profiles" + os.sep + "broken.yaml" in str(results["broken.yaml"])
    assert isinstance(results["mine.yaml"], HardwareProfile)
    with pytest.raises(ConfigError, match="broken.yaml"):
        list_profiles()


# ------------------------------------------------------------------------------------------- matching


def test_vnni_two_core_host_matches_x86_profile() -> None:
    result = match_identity(load_profile("x86-avx512vnni-2core"), host())
    assert result.matches and result
    assert "CPU flag avx512_vnni present" in result.reasons


def test_host_without_vnni_does_not_match() -> None:
    flags = ["avx2", "avx512f", "fma"]
    result = match_identity(load_profile("x86-avx512vnni-2core"), host(cpu_flags=flags, logical_cores=4))
    assert not result.matches
    assert "CPU flag avx512_vnni missing" in result.reasons
    assert "2 logical cores required, host has 4" in result.reasons


def test_raspberry_pi_matches_pi_profile_only() -> None:
    pi = host(**RPI5)
    assert match_identity(load_profile("raspberry-pi-5"), pi).matches
    jetson = match_identity(load_profile("jetson-orin-nano-8gb"), pi)
    assert not jetson.matches
    assert any("Jetson Orin Nano" in reason for reason in jetson.reasons)
    x86 = match_identity(load_profile("x86-avx512vnni-2core"), pi)
    assert "arch x86_64 required, host is aarch64" in x86.reasons


def test_jetson_fingerprints_match_their_boards() -> None:
    nano = host(**{**RPI5, "logical_cores": 6, "memory_total_gb": 7.44,
                   "device_model": "NVIDIA Jetson Orin Nano Developer Kit"})  # fmt: skip
    agx = host(**{**RPI5, "logical_cores": 12, "memory_total_gb": 61.4,
                  "device_model": "NVIDIA Jetson AGX Orin Developer Kit"})  # fmt: skip
    assert match_identity(load_profile("jetson-orin-nano-8gb"), nano).matches
    assert not match_identity(load_profile("jetson-agx-orin-64gb"), nano).matches
    assert match_identity(load_profile("jetson-agx-orin-64gb"), agx).matches
    assert not match_identity(load_profile("jetson-orin-nano-8gb"), agx).matches


def test_any_host_matches_host_cpu() -> None:
    for fingerprint in (host(), host(**RPI5), host(arch="riscv64", cpu_flags=[])):
        result = match_identity(load_profile("host-cpu"), fingerprint)
        assert result.matches
        assert result.reasons == ("profile accepts any host",)


def test_regex_criteria_on_cpu_model_and_gpu(tmp_path: Path) -> None:
    text = _bad(BASE, "  arch: [x86_64]\n", '  cpu_model_regex: "EPYC"\n  gpu_name_regex: "H100"\n')
    profile = load_profile(write(tmp_path, text))
    result = match_identity(profile, host(gpus=["NVIDIA H100 80GB HBM3"]))
    assert result.matches, result.reasons
    result = match_identity(profile, host(cpu_model="Intel Xeon", gpus=[]))
    assert "CPU model 'Intel Xeon' does not match /EPYC/" in result.reasons
    assert "no GPU matches /H100/ (host GPUs: none)" in result.reasons
    with pytest.raises(ConfigError, match="identity.cpu_model_regex: not a valid regular expression"):
        load_profile(write(tmp_path, _bad(BASE, "  arch: [x86_64]\n", '  cpu_model_regex: "(("\n')))


# ------------------------------------------------------------------------------------------- stability


def test_stability_defaults_and_section(tmp_path: Path) -> None:
    default = load_profile(write(tmp_path, BASE)).stability
    assert default == Stability()
    assert (default.max_cv, default.max_drift_rel, default.max_outlier_fraction) == (None, 0.10, 0.25)
    assert (default.max_load_avg_per_core, default.required_governor, default.fail_on_throttling) == (1.5, None, True)
    text = _bad(BASE, "budgets:", "stability:\n  max_cv: 0.2\n  max_drift_rel: null\n  required_governor: performance\n"
                                  "budgets:")
    policy = load_profile(write(tmp_path, text)).stability
    assert (policy.max_cv, policy.max_drift_rel, policy.required_governor) == (0.2, None, "performance")
    assert policy.max_outlier_fraction == 0.25  # the rest keep their defaults


def test_shipped_profiles_declare_a_stability_policy() -> None:
    for name in SHIPPED:
        assert "\nstability:" in (SHIPPED_DIR / f"{name}.yaml").read_text(encoding="utf-8"), name
    x86 = load_profile("x86-avx512vnni-2core").stability
    assert (x86.max_drift_rel, x86.max_load_avg_per_core, x86.max_cv) == (0.10, 1.0, None)
    assert load_profile("jetson-orin-nano-8gb").stability.max_drift_rel == 0.05


STABILITY_CASES = {
    "unknown": ("  max_jitter: 0.1", "stability.max_jitter: unknown key; allowed: max_cv, max_drift_rel"),
    "bare-cv": ("  cv: 0.1", "stability.cv: a rule is named by what it limits; use max_cv"),
    "bare-drift": ("  drift: 0.1", "use max_drift_rel"),
    "bare-load": ("  load: 1", "use max_load_avg_per_core"),
    "bare-governor": ("  governor: performance", "use required_governor"),
    "zero-cv": ("  max_cv: 0", "stability.max_cv: Input should be greater than 0"),
    "fraction-above-1": ("  max_outlier_fraction: 1.5", "stability.max_outlier_fraction: Input should be less than"),
    "string-drift": ('  max_drift_rel: "5%"', "stability.max_drift_rel: Input should be a valid number"),
    "nan-load": ("  max_load_avg_per_core: .nan", "stability.max_load_avg_per_core: must be a finite number > 0"),
    "bool-as-string": ('  fail_on_throttling: "yes"', "stability.fail_on_throttling: Input should be a valid boolean"),
    "empty-governor": ('  required_governor: ""', "stability.required_governor"),
}


@pytest.mark.parametrize("case", sorted(STABILITY_CASES))
def test_bad_stability_section_is_one_line_config_error(tmp_path: Path, case: str) -> None:
    line, message = STABILITY_CASES[case]
    path = write(tmp_path, _bad(BASE, "budgets:", f"stability:\n{line}\nbudgets:"))
    with pytest.raises(ConfigError) as info:
        load_profile(path)
    assert message in str(info.value), str(info.value)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------ every field named, per kind

MINIMAL = "name: t\ndescription: test profile\nidentity:\n  arch: [x86_64]\nruntime:\n  intra_op_threads: 1\n"
ARCH, THREADS, NAME, DESCRIPTION = "  arch: [x86_64]", "  intra_op_threads: 1", "name: t", "description: test profile"
# case: (line of MINIMAL replaced, or "" to append; the new text; the start of the message after "t.yaml: ")
FIELD_CASES: dict[str, tuple[str, str, str]] = {
    # wrong type
    "type-top": (NAME, "name: 5", "name: Input should be a valid string, got 5 (line 1)"),
    "type-identity-list": (ARCH, "  arch: x86_64",
                           "identity.arch: Input should be a valid list, got 'x86_64' (line 4)"),
    "type-identity-item": (ARCH, "  arch: [x86_64]\n  required_cpu_flags: [1]",
                           "identity.required_cpu_flags[0]: Input should be a valid string, got 1 (line 5)"),
    "type-runtime": (THREADS, "  intra_op_threads: one",
                     "runtime.intra_op_threads: Input should be a valid integer, got 'one'"),
    "type-bench-shape": ("", "bench:\n  input_shapes: {x: [1, a]}",
                         "bench.input_shapes.x[1]: Input should be a valid integer, got 'a'"),
    "type-bench-key": ("", "bench:\n  input_shapes: {1: [1]}", "bench.input_shapes: key 1: keys must be strings"),
    "type-section": ("", "bench: 5", "bench: Input should be a valid dictionary or instance of Bench, got 5"),
    "type-stability": ("", "stability:\n  fail_on_throttling: maybe",
                       "stability.fail_on_throttling: Input should be a valid boolean, got 'maybe'"),
    "type-budgets": ("", "budgets:\n  min_cosine: high",
                     "budgets.min_cosine: Input should be a valid number, got 'high'"),
    "type-peak-rates": ("", "peak_rates: [1]",
                        "peak_rates: Input should be a valid dictionary or instance of PeakRates"),
    "type-tensorrt": ("", "tensorrt:\n  version_family: 10\n  shape_profile: {x: {min: [1], opt: two, max: [1]}}",
                      "tensorrt.shape_profile.x.opt: Input should be a valid list, got 'two'"),
    "type-top-key": ("", "1: x", "(top level): key 1: keys must be strings"),
    # unknown key
    "unknown-top": ("", "extra: 1", "extra: unknown key; allowed: name, description, identity, runtime"),
    "unknown-identity": (ARCH, "  arch: [x86_64]\n  cpus: 2", "identity.cpus: unknown key; allowed: any_host, arch"),
    "unknown-runtime": (THREADS, "  intra_op_threads: 1\n  threads: 2",
                        "runtime.threads: unknown key; allowed: backend"),
    "unknown-bench": ("", "bench:\n  warmup: 2", "bench.warmup: unknown key; allowed: warmup_iterations"),
    "unknown-budgets": ("", "budgets:\n  p97_ms: 2", "budgets.p97_ms: unknown key; allowed: p50_ms"),
    "unknown-peak-rates": ("", "peak_rates:\n  fp64_gflops: 1",
                           "peak_rates.fp64_gflops: unknown key; allowed: fp32"),
    "unknown-tensorrt-range": ("", "tensorrt:\n  version_family: 10\n  shape_profile: {x: {min: [1], opt: [1], "
                               "max: [1], best: [1]}}",
                               "tensorrt.shape_profile.x.best: unknown key; allowed: min, opt, max"),
    # out of range
    "range-identity": (ARCH, "  arch: [x86_64]\n  logical_cores: 0",
                       "identity.logical_cores: Input should be greater than or equal to 1, got 0"),
    "range-runtime": (THREADS, "  intra_op_threads: 0",
                      "runtime.intra_op_threads: Input should be greater than or equal to 1"),
    "range-bench": ("", "bench:\n  max_input_mb: -1", "bench.max_input_mb: must be a finite number > 0, got -1"),
    "range-bench-shape": ("", "bench:\n  input_shapes: {x: [1, 0]}",
                          "bench.input_shapes.x[1]: Input should be greater than or equal to 1, got 0"),
    "range-stability": ("", "stability:\n  max_outlier_fraction: 2",
                        "stability.max_outlier_fraction: Input should be less than or equal to 1, got 2"),
    "range-budgets": ("", "budgets:\n  min_cosine: 2", "budgets.min_cosine: Input should be less than or equal to 1"),
    "range-peak-rates": ("", "peak_rates:\n  fp32_gflops: 0", "peak_rates.fp32_gflops: must be a finite number > 0"),
    "range-tensorrt": ("", "tensorrt:\n  version_family: 10\n  builder_optimization_level: 9",
                       "tensorrt.builder_optimization_level: Input should be less than or equal to 5, got 9"),
    "range-description": (DESCRIPTION, "description: " + "d" * 2001,
                          "description: at most 2000 characters, got 2001 (line 2)"),
    "range-name": (NAME, "name: " + "n" * 201, "name: at most 200 characters, got 201 (line 1)"),
    "long-value-cut": ("", "bench:\n  stop_percentile: " + "p" * 500, "bench.stop_percentile: Input should be 'p50'"),
}


def _field_case(old: str, new: str) -> str:
    return MINIMAL + new + "\n" if not old else MINIMAL.replace(old, new)


@pytest.mark.parametrize("case", sorted(FIELD_CASES))
def test_every_schema_error_names_its_field(tmp_path: Path, case: str) -> None:
    old, new, expected = FIELD_CASES[case]
    with pytest.raises(ConfigError) as info:
        load_profile(write(tmp_path, _field_case(old, new)))
    message = str(info.value)
    assert f"t.yaml: {expected}" in message, message
    assert "\n" not in message and len(message) < 400, message
    assert info.value.exit_code == 2


def test_a_long_value_is_quoted_cut_short(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"got 'p{59}\.\.\. \(502 characters\)") as info:
        load_profile(write(tmp_path, _field_case(*FIELD_CASES["long-value-cut"][:2])))
    assert "p" * 100 not in str(info.value)


def test_a_ten_megabyte_description_is_refused_before_it_is_copied(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("test profile", "d" * 10 * 2**20))
    with pytest.raises(ConfigError, match=r"t\.yaml: profile file is 10\.0 MiB, larger than 4 MiB; refused"):
        load_profile(path)
    path = write(tmp_path, MINIMAL.replace("test profile", "d" * 3 * 2**20))
    with pytest.raises(ConfigError, match=r"t\.yaml: description: at most 2000 characters, got 3145728"):
        load_profile(path)


def test_anchors_aliases_and_deep_nesting_are_refused_naming_the_file_and_line(tmp_path: Path) -> None:
    cases = {
        MINIMAL + "bench: &b {warmup_iterations: 2}\nstability: *b\n": r"t\.yaml: line 7: YAML anchor &b refused",
        MINIMAL + "budgets: {p95_ms: *x}\n": r"t\.yaml: line 7: YAML alias \*x refused",
        MINIMAL + "peak_rates:\n  <<: {fp32_gflops: 1}\n": r"t\.yaml: line 8: YAML merge key << refused",
        MINIMAL + "bench: " + "[" * 40 + "]" * 40 + "\n": r"t\.yaml: line 7: nested deeper than 32 levels",
    }
    for text, pattern in cases.items():
        with pytest.raises(ConfigError, match=pattern) as info:
            load_profile(write(tmp_path, text))
        assert info.value.exit_code == 2
