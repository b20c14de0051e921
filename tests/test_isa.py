"""ISA knowledge in one place: native precisions, INT8 saturation, default INT8 recipes per CPU class."""

from __future__ import annotations

from edgeopt.core.host import HostFingerprint
from edgeopt.core.isa import int8_recipes, native_precisions, pair_sums_saturate
from edgeopt.models.nncf_quantize import available as nncf_available
from edgeopt.models.recipes import DEFAULT_VARIANTS, default_variants
from edgeopt.profiles.schema import load_profile

ZEN3 = ("avx", "avx2", "fma", "f16c")
ZEN4 = (*ZEN3, "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16")
PI5 = ("fp", "asimd", "asimdhp", "asimddp", "fphp")


def host(arch: str, flags: tuple[str, ...]) -> HostFingerprint:
    return HostFingerprint.from_dict({"arch": arch, "cpu_flags": list(flags), "logical_cores": 2})


def test_native_precisions_and_saturation_by_cpu_class() -> None:
    assert native_precisions("x86_64", ZEN3) == {"fp32": True, "fp16": False, "bf16": False, "int8": False}
    assert native_precisions("x86_64", ZEN4) == {"fp32": True, "fp16": False, "bf16": True, "int8": True}
    assert native_precisions("aarch64", PI5) == {"fp32": True, "fp16": True, "bf16": False, "int8": True}
    assert pair_sums_saturate("x86_64", ZEN3) and not pair_sums_saturate("x86_64", ZEN4)
    assert not pair_sums_saturate("aarch64", PI5)


def test_x86_gets_the_uint8_activation_recipe_with_its_rule() -> None:
    (zen3,) = int8_recipes("x86_64", ZEN3)
    assert zen3.name == "int8-static-minmax-asym" and "VPMADDUBSW" in zen3.rule
    assert int8_recipes("aarch64", PI5) == []


def test_default_variants_follow_each_profiles_cpu() -> None:
    chosen = default_variants([load_profile("host-cpu")], host("x86_64", ZEN3))
    assert list(chosen)[: len(DEFAULT_VARIANTS)] == list(DEFAULT_VARIANTS)
    assert "VPMADDUBSW" in chosen["int8-static-minmax-asym"] and "host-cpu" in chosen["int8-static-minmax-asym"]
    pi = default_variants([load_profile("raspberry-pi-5")], host("x86_64", ZEN3))
    assert [v for v in pi if not v.startswith("int8-nncf")] == list(DEFAULT_VARIANTS)  # Arm: S8S8 is native
    if nncf_available() is None:  # the profile measures on OpenVINO: its INT8 rows come from NNCF's IR
        assert "NNCF" in pi["int8-nncf"] and "MIXED" in pi["int8-nncf-mixed"] and "int8-nncf" in chosen
    vnni = default_variants([load_profile("x86-avx512vnni-2core")], host("aarch64", PI5))
    assert "VNNI" in vnni["int8-static-minmax-asym"]  # the profile's declared CPU, not the host's
    jetson = default_variants([load_profile("jetson-orin-nano-8gb")], host("x86_64", ZEN3))
    assert "INT32 bias" in jetson["int8-trt-qdq"] and "int8-trt-qdq" not in pi  # TensorRT's own Q/DQ file


def test_native_column_of_an_any_host_profile_is_the_hosts_isa() -> None:
    profile = load_profile("host-cpu")
    assert profile.expects_fast("int8", host("x86_64", ZEN4))
    assert not profile.expects_fast("int8", host("x86_64", ZEN3))
    assert not load_profile("raspberry-pi-5").expects_fast("bf16", host("x86_64", ZEN4))  # declared, not the host's
