"""Tests for the host fingerprint (on this real machine) and precision support from CPU flags."""

from __future__ import annotations

import json
import sys

from edgeopt.core.host import (
    HostFingerprint,
    host_fingerprint,
    int8_pair_sums_saturate,
    normalise_arch,
    precision_support,
)


def synthetic(arch: str, flags: list[str]) -> HostFingerprint:
    return HostFingerprint.from_dict({"arch": arch, "cpu_flags": flags, "logical_cores": 4})


def test_real_fingerprint_of_this_host() -> None:
    fp = host_fingerprint()
    assert fp.arch == "x86_64"
    assert fp.logical_cores >= 1
    assert fp.memory_total_gb > 0
    assert fp.memory_total_gb == round(fp.memory_total_gb, 2)
    assert list(fp.cpu_flags) == sorted(fp.cpu_flags)
    assert fp.cpu_model
    assert fp.os == "Linux"
    assert fp.python_version.startswith(f"{sys.version_info.major}.{sys.version_info.minor}")
    assert host_fingerprint() is fp  # cached
    assert f"{fp.logical_cores} logical cores" in fp.summary()
    assert "\n" not in fp.summary()


def test_fingerprint_round_trips_through_json() -> None:
    fp = host_fingerprint()
    data = json.loads(json.dumps(fp.to_dict()))
    assert HostFingerprint.from_dict(data) == fp


def test_from_dict_tolerates_missing_optional_keys() -> None:
    fp = HostFingerprint.from_dict({"hostname": "pi", "arch": "arm64", "logical_cores": 4})
    assert fp.arch == "aarch64"
    assert fp.physical_cores is None
    assert fp.device_model is None
    assert fp.gpus == ()
    assert fp.cpu_flags == ()


def test_normalise_arch() -> None:
    assert normalise_arch("AMD64") == "x86_64"
    assert normalise_arch("arm64") == "aarch64"
    assert normalise_arch("aarch64") == "aarch64"




def test_precision_support_x86() -> None:
    plain = precision_support(synthetic("x86_64", ["avx2", "fma"]))
    assert plain == {"fp32": True, "fp16": False, "bf16": False, "int8": False}
    zen4 = precision_support(synthetic("x86_64", ["avx512f", "avx512_vnni", "avx512_bf16"]))
    assert zen4 == {"fp32": True, "fp16": False, "bf16": True, "int8": True}
    assert precision_support(synthetic("x86_64", ["avx_vnni"]))["int8"]
    sapphire = precision_support(synthetic("x86_64", ["amx_int8", "amx_bf16", "avx512_fp16"]))
    assert sapphire == {"fp32": True, "fp16": True, "bf16": True, "int8": True}


def test_precision_support_arm() -> None:
    a76 = precision_support(synthetic("aarch64", ["fp", "asimd", "fphp", "asimdhp", "asimddp"]))
    assert a76 == {"fp32": True, "fp16": True, "bf16": False, "int8": True}
    a53 = precision_support(synthetic("aarch64", ["fp", "asimd"]))
    assert a53 == {"fp32": True, "fp16": False, "bf16": False, "int8": False}
    assert precision_support(synthetic("aarch64", ["bf16"]))["bf16"]
    # ARM flag names mean nothing on x86 and vice versa
    assert not precision_support(synthetic("x86_64", ["asimddp"]))["int8"]


def test_int8_pair_sums_saturate_only_on_x86_without_vnni() -> None:
    assert int8_pair_sums_saturate(synthetic("x86_64", ["avx2", "fma"]))
    assert int8_pair_sums_saturate(synthetic("x86_64", ["avx2", "avx512f", "avx512bw"]))
    assert not int8_pair_sums_saturate(synthetic("x86_64", ["avx2", "avx512f", "avx512_vnni"]))
    assert not int8_pair_sums_saturate(synthetic("x86_64", ["avx2", "avx_vnni"]))
    assert not int8_pair_sums_saturate(synthetic("aarch64", ["asimd", "asimddp"]))
