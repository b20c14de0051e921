"""What a CPU's instruction set means for each precision: which run natively, which INT8 activation type
is fast and faithful, and why — the one place edgeopt decides it.

Every rule cites where it comes from:

- ONNX Runtime, "Quantize ONNX models" (onnxruntime.ai/docs/performance/model-optimizations/quantization):
  on x86-64 with AVX2 or AVX-512 but no VNNI, int8 GEMMs use ``VPMADDUBSW`` (u8 x s8 products summed in
  pairs into saturating 16-bit lanes); U8S8 (uint8 activations) feeds it directly, S8S8 shifts the
  activations by +128 first (extra work, and the pair sums saturate as readily); ``reduce_range``
  (7-bit weights) "is designed for the U8S8 format on AVX2 and AVX512 (non-VNNI) machines to mitigate
  saturation issues".  VNNI (``VPDPBUSD``) and AMX accumulate in 32 bits: no saturation, both types fast.
- Arm: ``asimddp`` (SDOT/UDOT) and ``i8mm`` (SMMLA/UMMLA) accumulate in 32 bits; ONNX Runtime's
  default S8S8 QDQ is the native format.
- FP16/BF16 arithmetic: ``avx512_fp16``/``amx_fp16`` and ``avx512_bf16``/``amx_bf16`` on x86; ``asimdhp``
  (``fphp``) and ``bf16`` on Arm (OpenVINO's supported-precision table says the same per device).

Measured, ResNet-18-class default model, ONNX Runtime 1.32.0, 1 thread, on 2-vCPU AMD EPYC Zen 3 VMs (AVX2 +
FMA, no VNNI): issue 9's machine, fp32 ~48 ms, S8S8 QDQ 42 ms (cosine 0.9992), U8S8 QDQ 26 ms (cosine 0.9997);
this project's build VM, ``bash scripts/bench.sh --force`` 2026-11-30, fp32 96.1 ms, S8S8 113.5 ms (0.9991),
U8S8 98.4 ms (0.9997). U8S8 beat S8S8 in speed and fidelity on both; how much depends on the VM.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Int8Recipe", "int8_recipes", "native_precisions", "pair_sums_saturate"]

_VNNI = {"avx512_vnni", "avx_vnni", "amx_int8"}


@dataclass(frozen=True)
class Int8Recipe:
    """A default INT8 recipe for a CPU class, and the rule that chose it (recorded in provenance)."""

    name: str
    rule: str


def pair_sums_saturate(arch: str, flags: set[str] | frozenset[str] | tuple[str, ...]) -> bool:
    """x86 without VNNI/AMX: int8 products go through ``VPMADDUBSW``'s saturating 16-bit pair sums."""
    return arch == "x86_64" and not set(flags) & _VNNI


def native_precisions(arch: str, flags: set[str] | frozenset[str] | tuple[str, ...]) -> dict[str, bool]:
    """Whether the CPU has native fast kernels for 'fp32', 'fp16', 'bf16' and 'int8'."""
    present = set(flags)
    if arch == "aarch64":
        return {"fp32": True, "fp16": bool(present & {"asimdhp", "fphp"}), "bf16": "bf16" in present,
                "int8": bool(present & {"asimddp", "i8mm"})}
    return {"fp32": True, "fp16": bool(present & {"avx512_fp16", "amx_fp16"}),
            "bf16": bool(present & {"avx512_bf16", "amx_bf16"}), "int8": bool(present & _VNNI)}


def int8_recipes(arch: str, flags: set[str] | frozenset[str] | tuple[str, ...]) -> list[Int8Recipe]:
    """The static INT8 recipes worth making by default for a CPU of ``arch`` with ``flags``, beyond the
    symmetric S8S8 file every target gets (it is also what TensorRT takes)."""
    if arch != "x86_64":
        return []
    if pair_sums_saturate(arch, flags):
        return [Int8Recipe("int8-static-minmax-asym",
                           "x86 without VNNI: uint8 activations (U8S8) feed VPMADDUBSW directly, S8S8 pays a +128 "
                           "shift and saturates as readily (ONNX Runtime quantization docs)")]
    return [Int8Recipe("int8-static-minmax-asym",
                       "x86 with VNNI/AMX: VPDPBUSD takes uint8 activations natively; ONNX Runtime's CPU kernels "
                       "are written for U8S8, so it is measured beside S8S8 (ONNX Runtime quantization docs)")]
