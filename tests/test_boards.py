"""Identity and ISA detection from real captured board files (tests/data/boards, provenance in its README).

Fast and native on any host: edgeopt reads a Raspberry Pi 5's and a Jetson AGX Orin's /proc/cpuinfo and
/proc/device-tree/model as it would on the board, and the shipped profiles match the board they describe
and no other. The same tests run on arm64 under qemu (scripts/aarch64_emulated.sh), where this host's own
/proc/cpuinfo is the x86 machine's text and only captured files can say what a board is.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from edgeopt.core.host import (
    HostFingerprint,
    fingerprint_from_root,
    host_fingerprint,
    int8_pair_sums_saturate,
    precision_support,
)
from edgeopt.core.isa import int8_recipes
from edgeopt.profiles.schema import HardwareProfile, load_profile, match_identity, shipped_profiles_dir

pytestmark = pytest.mark.aarch64

BOARDS = Path(__file__).parent / "data" / "boards"
PI5 = BOARDS / "raspberry-pi-5"
ORIN = BOARDS / "jetson-agx-orin"
# The fixture files hold no memory size; the AGX Orin 64GB profile has a memory window. `free -h` on an
# AGX Orin 64GB Developer Kit (JetPack 6.2) reads "Mem: 61Gi"; the profile's note says ~61 GiB visible.
ORIN_64GB_MEMORY_GB = 61.0


def shipped() -> dict[str, HardwareProfile]:
    return {path.stem: load_profile(path) for path in sorted(shipped_profiles_dir().glob("*.yaml"))}


def matching(host: HostFingerprint) -> set[str]:
    return {name for name, profile in shipped().items() if match_identity(profile, host)}


def lscpu(path: Path) -> dict[str, str]:
    fields = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def test_raspberry_pi_5_is_four_cortex_a76_with_dot_product_and_no_i8mm() -> None:
    pi = fingerprint_from_root(PI5)
    assert pi.arch == "aarch64"
    assert pi.cpu_model == "Cortex-A76"  # CPU part 0xd0b; the kernel's 'Hardware : BCM2835' names no SoC
    assert pi.device_model == "Raspberry Pi 5 Model B Rev 1.0"
    assert pi.logical_cores == 4 and pi.gpus == ()
    flags = set(pi.cpu_flags)
    assert {"asimd", "asimddp", "asimdhp", "fphp", "atomics", "lrcpc"} <= flags
    assert not flags & {"i8mm", "bf16", "sve", "sve2", "asimdfhm"}  # Armv8.2-A: no 8.6 matrix ops, no SVE
    assert precision_support(pi) == {"fp32": True, "fp16": True, "bf16": False, "int8": True}
    assert not int8_pair_sums_saturate(pi)  # SDOT accumulates in 32 bits
    assert int8_recipes(pi.arch, pi.cpu_flags) == []  # S8S8 QDQ, every target's file, is the native format


def test_jetson_agx_orin_is_cortex_a78ae_with_dot_product_and_no_i8mm() -> None:
    orin = fingerprint_from_root(ORIN)
    assert orin.arch == "aarch64"
    assert orin.cpu_model == "Cortex-A78AE"  # CPU implementer 0x41, part 0xd42
    assert orin.device_model == "NVIDIA Jetson AGX Orin Developer Kit"
    assert orin.gpus == ("NVIDIA Jetson AGX Orin Developer Kit integrated GPU",)
    flags = set(orin.cpu_flags)
    assert {"asimd", "asimddp", "asimdhp", "fphp", "lrcpc", "ilrcpc", "paca", "pacg"} <= flags
    assert not flags & {"i8mm", "bf16", "sve", "sve2", "asimdfhm"}
    assert precision_support(orin) == {"fp32": True, "fp16": True, "bf16": False, "int8": True}
    assert not int8_pair_sums_saturate(orin)
    assert int8_recipes(orin.arch, orin.cpu_flags) == []


def test_orin_cpuinfo_agrees_with_the_independent_lscpu_capture() -> None:
    """The cpuinfo fixture is assembled from captured lines (README): lscpu of another capture must agree."""
    orin = fingerprint_from_root(ORIN)
    listed = lscpu(ORIN / "lscpu.txt")
    assert listed["Architecture"] == orin.arch
    assert listed["Model name"] == orin.cpu_model
    assert tuple(sorted(listed["Flags"].split())) == orin.cpu_flags


@pytest.mark.parametrize(
    ("board", "memory_gb", "expected"),
    [(PI5, None, {"host-cpu", "raspberry-pi-5"}), (ORIN, ORIN_64GB_MEMORY_GB, {"host-cpu", "jetson-agx-orin-64gb"})],
    ids=["raspberry-pi-5", "jetson-agx-orin"],
)
def test_each_board_matches_its_shipped_profile_and_no_other(
    board: Path, memory_gb: float | None, expected: set[str]
) -> None:
    host = fingerprint_from_root(board)
    if memory_gb is not None:
        host = dataclasses.replace(host, memory_total_gb=memory_gb)
    assert matching(host) == expected
    profiles = shipped()
    for name in ("x86-avx512vnni-2core", "nvidia-l4-trt11"):  # the x86 ones say why: the architecture
        verdict = match_identity(profiles[name], host)
        assert not verdict and any("arch" in reason for reason in verdict.reasons), (name, verdict.reasons)
    (own,) = expected - {"host-cpu"}
    native = {precision for precision, fast in precision_support(host).items() if fast}
    assert set(profiles[own].runtime.native_precisions) <= native  # what the profile calls native, the ISA runs


def test_the_orin_nano_profile_rejects_the_agx_kit_by_its_device_tree_model() -> None:
    orin = dataclasses.replace(fingerprint_from_root(ORIN), memory_total_gb=ORIN_64GB_MEMORY_GB)
    verdict = match_identity(load_profile("jetson-orin-nano-8gb"), orin)
    assert not verdict
    assert any("device model 'NVIDIA Jetson AGX Orin Developer Kit' does not match" in r for r in verdict.reasons)


def test_board_profiles_do_not_match_this_host() -> None:
    """Here (x86, or arm64 under qemu with no device tree) neither board profile may claim the machine."""
    here = host_fingerprint()
    for name in ("raspberry-pi-5", "jetson-agx-orin-64gb", "jetson-orin-nano-8gb"):
        assert not match_identity(load_profile(name), here), name


def test_board_fingerprints_round_trip_through_dicts() -> None:
    for board in (PI5, ORIN):
        fingerprint = fingerprint_from_root(board)
        assert HostFingerprint.from_dict(fingerprint.to_dict()) == fingerprint


def test_a_root_without_identity_files_knows_nothing(tmp_path: Path) -> None:
    empty = fingerprint_from_root(tmp_path)
    assert (empty.arch, empty.cpu_model, empty.cpu_flags, empty.device_model) == ("unknown", "unknown", (), None)
    assert (empty.logical_cores, empty.memory_total_gb, empty.gpus) == (0, 0.0, ())
