"""The recipe grammar and the default choice of variants.

:class:`Recipe` is how one variant is made and its short name (``Recipe.parse`` reads it back; an unknown name or
option is a ConfigError); :func:`default_variants` is the variant set a run makes when none is named: edgeopt's
default set for every target, the INT8 recipes each profile's CPU class runs well, and the TensorRT-bound Q/DQ
file for a profile that builds INT8 TensorRT engines.  The makers are in :mod:`edgeopt.models.quantize`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from edgeopt.core.host import HostFingerprint
from edgeopt.core.isa import int8_recipes
from edgeopt.errors import ConfigError
from edgeopt.models.modelopt import PURPOSE as MODELOPT_PURPOSE
from edgeopt.models.modelopt import QUANTIZER as MODELOPT
from edgeopt.models.modelopt import RECIPE as TENSORRT_MODELOPT
from edgeopt.models.nncf_quantize import ACCURACY_RECIPE as NNCF_AC
from edgeopt.models.nncf_quantize import PURPOSE as NNCF_PURPOSE
from edgeopt.models.nncf_quantize import QUANTIZER as NNCF
from edgeopt.models.nncf_quantize import RECIPE as NNCF_RECIPE
from edgeopt.models.nncf_quantize import available as nncf_available
from edgeopt.models.ranges import CALIBRATION_METHODS
from edgeopt.profiles.schema import HardwareProfile

TARGETS = ("onnxruntime", "tensorrt", "openvino")  # the runtime an int8-static file is built for
# what makes an int8-static file: ONNX Runtime's, NVIDIA ModelOpt (optional), Intel's NNCF (extra openvino)
QUANTIZERS = ("onnxruntime", MODELOPT, NNCF)
DEFAULT_VARIANTS = ("fp32", "fp16", "int8-dynamic", "int8-static-minmax", "int8-static-entropy",
                    "int8-static-percentile")
PRECISION_OF_KIND = {"fp32": "fp32", "fp16": "fp16", "int8-dynamic": "int8", "int8-static": "int8"}
DEFAULT_RULE = "edgeopt's default variant set for every target"

TENSORRT_QDQ = "int8-trt-qdq"
TENSORRT_PURPOSE = "TensorRT-bound: explicit Q/DQ per TensorRT rules; not the CPU-fastest"
ONNXRUNTIME_PURPOSE = ("ONNX Runtime-bound: Q/DQ as ONNX Runtime's CPU kernels run it; not for TensorRT (INT32 bias "
                       "DequantizeLinear; ONNX Runtime's opset domains)")


def default_variants(profiles: Sequence[HardwareProfile], host: HostFingerprint) -> dict[str, str]:
    """Variant name -> the rule that chose it: :data:`DEFAULT_VARIANTS` for every target, plus the INT8
    recipes each profile's CPU class runs fast and faithfully (:func:`edgeopt.core.isa.int8_recipes`), the
    TensorRT-bound Q/DQ file for a profile that builds TensorRT engines, and NNCF's OpenVINO IR (``int8-nncf``)
    for a profile that measures on OpenVINO, where NNCF is installed."""
    chosen = dict.fromkeys(DEFAULT_VARIANTS, DEFAULT_RULE)
    for profile in profiles:
        if profile.tensorrt is not None and "int8" in profile.tensorrt.precisions:
            chosen.setdefault(TENSORRT_QDQ, f"TensorRT builds INT8 only from explicit, symmetric Q/DQ without INT32 "
                                            f"bias dequantization (profile {profile.name})")
        arch, flags = profile.target_cpu(host)
        for recipe in int8_recipes(arch, flags):
            chosen.setdefault(recipe.name, f"{recipe.rule} (profile {profile.name})")
        if "openvino" in profile.runtime.runtimes and nncf_available() is None:
            chosen.setdefault(NNCF_RECIPE, f"OpenVINO's INT8 rows come from NNCF, its vendor's quantizer (profile "
                                           f"{profile.name} measures on OpenVINO)")
            chosen.setdefault(f"{NNCF_RECIPE}-mixed", f"NNCF's MIXED preset (asymmetric activations) beside its "
                                                      f"PERFORMANCE one: 13% faster on mtcnn-pnet, as faithful "
                                                      f"(profile {profile.name} measures on OpenVINO)")
    return chosen


@dataclass(frozen=True)
class Recipe:
    """How one variant is made; its ``name`` is the short name users see and encodes every non-default option.

    Suffixes after ``int8-static-<method>``: ``-pt`` per-tensor weights, ``-asym`` asymmetric activations,
    ``-rr`` reduce_range (7-bit weights), ``-n<count>`` the first <count> calibration samples, ``-fl`` the first
    and last Conv/MatMul/Gemm kept in float, ``-matmul`` only MatMul nodes quantized, and ``-x<k>-<hash>`` k nodes
    kept in float.  ``int8-dynamic[-pc][-rr][-matmul]``:
    per-channel weights, reduce_range, MatMul only (a transformer's plain ``int8-dynamic`` is made as
    ``int8-dynamic-pc-matmul``: :mod:`edgeopt.models.model_kind`).  ``target="tensorrt"`` is
    ``int8-trt-qdq[-<method>][-pt][-n<count>]`` (minmax unless named): symmetric only, so ``-asym`` and ``-rr``
    do not apply.  ``quantizer="modelopt"`` is ``int8-trt-modelopt``: NVIDIA ModelOpt in its own venv
    (:mod:`edgeopt.models.modelopt`), optional.  ``quantizer="nncf"`` is ``int8-nncf[-ac][-mixed][-n<count>]``:
    Intel's NNCF, an OpenVINO IR for the OpenVINO rows (:mod:`edgeopt.models.nncf_quantize`).
    """

    kind: str
    calibration_method: str | None = None
    per_channel: bool = True
    activation_symmetric: bool = True
    weight_symmetric: bool = True
    reduce_range: bool = False
    exclude_nodes: tuple[str, ...] = ()
    calibration_samples: int | None = None
    target: str = "onnxruntime"
    quantizer: str = "onnxruntime"
    op_types: tuple[str, ...] = ()  # the op types quantized (empty: ONNX Runtime's default set); -matmul: MatMul
    accuracy_control: bool = False  # NNCF's quantize_with_accuracy_control (int8-nncf-ac)
    float_ends: bool = False  # -fl: the first and the last Conv/MatMul/Gemm stay in float (input and head layers)

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ConfigError(f"recipe target '{self.target}': choose from {', '.join(TARGETS)}")
        if self.quantizer not in QUANTIZERS or (self.quantizer == MODELOPT and self.target != "tensorrt") or (
                (self.quantizer == NNCF) != (self.target == "openvino")):
            raise ConfigError(f"recipe quantizer '{self.quantizer}': choose from {', '.join(QUANTIZERS)} "
                              f"({MODELOPT} makes TensorRT-bound files only, {NNCF} OpenVINO IR only)")
        if self.target == "tensorrt" and (self.kind != "int8-static" or not self.activation_symmetric
                                          or not self.weight_symmetric or self.reduce_range):
            raise ConfigError(f"{TENSORRT_QDQ}: TensorRT takes symmetric INT8 Q/DQ only (static, no -asym, no -rr)")

    @property
    def tensorrt_bound(self) -> bool:
        """Built for TensorRT's explicit-quantization rules rather than for ONNX Runtime's CPU kernels."""
        return self.target == "tensorrt"

    @property
    def purpose(self) -> str | None:
        """What an int8-static file is for (recorded in provenance); None for the other kinds."""
        if self.kind != "int8-static":
            return None
        if self.quantizer == MODELOPT:
            return MODELOPT_PURPOSE
        if self.quantizer == NNCF:
            return NNCF_PURPOSE
        return TENSORRT_PURPOSE if self.tensorrt_bound else ONNXRUNTIME_PURPOSE

    @property
    def file_suffix(self) -> str:
        """The variant file's suffix: ``.xml`` (OpenVINO IR, weights beside as ``.bin``) for NNCF, else ``.onnx``."""
        return ".xml" if self.quantizer == NNCF else ".onnx"

    @property
    def name(self) -> str:
        if self.kind == "int8-dynamic":
            parts = [self.kind] + (["pc"] if self.per_channel else []) + (["rr"] if self.reduce_range else [])
            return "-".join(parts + self._op_types_suffix()) + self._exclusion_suffix()
        if self.kind != "int8-static":
            return self.kind
        if self.quantizer == MODELOPT:
            return TENSORRT_MODELOPT + self._exclusion_suffix()
        if self.quantizer == NNCF:
            parts = [NNCF_AC if self.accuracy_control else NNCF_RECIPE] + ([] if self.activation_symmetric
                                                                            else ["mixed"])
            if self.calibration_samples is not None:
                parts.append(f"n{self.calibration_samples}")
            return "-".join(parts) + self._exclusion_suffix()
        if self.tensorrt_bound:
            parts = [TENSORRT_QDQ] + ([self.calibration_method] if self.calibration_method not in (None, "minmax")
                                      else [])
            if not self.per_channel:
                parts.append("pt")
            if self.calibration_samples is not None:
                parts.append(f"n{self.calibration_samples}")
            return "-".join(p for p in parts if p) + self._exclusion_suffix()
        parts = [f"{self.kind}-{self.calibration_method}"]
        if not self.per_channel:
            parts.append("pt")
        if not self.activation_symmetric:
            parts.append("asym")
        if self.reduce_range:
            parts.append("rr")
        if self.calibration_samples is not None:
            parts.append(f"n{self.calibration_samples}")
        if self.float_ends:
            parts.append("fl")
        return "-".join(parts + self._op_types_suffix()) + self._exclusion_suffix()

    def _op_types_suffix(self) -> list[str]:
        if not self.op_types:
            return []
        if self.op_types == ("MatMul",):
            return ["matmul"]
        raise ConfigError(f"recipe op types {list(self.op_types)}: only MatMul alone (-matmul) has a name")

    def _exclusion_suffix(self) -> str:
        if not self.exclude_nodes:
            return ""
        digest = hashlib.sha256("\n".join(sorted(self.exclude_nodes)).encode()).hexdigest()[:6]
        return f"-x{len(self.exclude_nodes)}-{digest}"

    @property
    def precision(self) -> str:
        return PRECISION_OF_KIND[self.kind]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["exclude_nodes"] = list(self.exclude_nodes)
        if self.target == "onnxruntime":  # the default stays out, so keys of variants made before it are unchanged
            del data["target"]
        if self.quantizer == "onnxruntime":
            del data["quantizer"]
        if not self.accuracy_control:
            del data["accuracy_control"]
        if not self.float_ends:
            del data["float_ends"]
        if not self.op_types:
            del data["op_types"]
        else:
            data["op_types"] = list(self.op_types)
        return data

    @classmethod
    def parse(cls, name: str) -> Recipe:
        """``fp32``, ``fp16``, ``int8-dynamic``, ``int8-static`` (= minmax), ``int8-static-<method>[-options]`` or
        ``int8-trt-qdq[-<method>][-pt][-n<count>]`` or ``int8-trt-modelopt`` (ModelOpt's entropy calibration).

        An unknown name or option is a usage error: ConfigError (exit 2).
        """
        if name in ("fp32", "fp16"):
            return cls(kind=name)
        if name == "int8-dynamic" or name.startswith("int8-dynamic-"):
            found: dict[str, Any] = {"kind": "int8-dynamic", "per_channel": False}
            for part in name.split("-")[2:]:
                if part == "pc":
                    found["per_channel"] = True
                elif part == "rr":
                    found["reduce_range"] = True
                elif part == "matmul":
                    found["op_types"] = ("MatMul",)
                else:
                    raise ConfigError(f"variant '{name}': unknown option '{part}' (int8-dynamic options: pc "
                                      "per-channel weights, rr reduce_range, matmul MatMul only)")
            return cls(**found)
        if name == "int8-static":
            return cls(kind="int8-static", calibration_method="minmax")
        if name == TENSORRT_MODELOPT:
            return cls(kind="int8-static", calibration_method="entropy", target="tensorrt", quantizer=MODELOPT)
        if name == NNCF_RECIPE or name.startswith(NNCF_RECIPE + "-"):
            return cls._parse_nncf(name)
        parts = name.split("-")
        if name == TENSORRT_QDQ or name.startswith(TENSORRT_QDQ + "-"):
            return cls._parse_tensorrt(name, parts[3:])
        if name.startswith("int8-static-") and len(parts) >= 3 and parts[2] in CALIBRATION_METHODS:
            options: dict[str, Any] = {"kind": "int8-static", "calibration_method": parts[2]}
            for part in parts[3:]:
                if part == "pt":
                    options["per_channel"] = False
                elif part == "asym":
                    options["activation_symmetric"] = False
                elif part == "rr":
                    options["reduce_range"] = True
                elif re.fullmatch(r"n[1-9]\d*", part):
                    options["calibration_samples"] = int(part[1:])
                elif part == "matmul":
                    options["op_types"] = ("MatMul",)
                elif part == "fl":
                    options["float_ends"] = True
                else:
                    raise ConfigError(f"variant '{name}': unknown option '{part}' (pt, asym, rr, n<count>, fl, "
                                      "matmul)")
            return cls(**options)
        choices = ", ".join([*DEFAULT_VARIANTS, "int8-static", TENSORRT_QDQ, TENSORRT_MODELOPT, NNCF_RECIPE, NNCF_AC])
        raise ConfigError(f"unknown variant '{name}'; choose from {choices}, with int8-static options "
                          "-pt, -asym, -rr, -n<count>, -fl, -matmul and int8-dynamic options -pc, -rr, -matmul")

    @classmethod
    def _parse_nncf(cls, name: str) -> Recipe:
        """``int8-nncf[-ac][-mixed][-n<count>]``: NNCF's PTQ (``-ac``: with accuracy control), PERFORMANCE preset
        (symmetric) unless ``-mixed``."""
        found: dict[str, Any] = {"kind": "int8-static", "target": "openvino", "quantizer": NNCF}
        for index, part in enumerate(name.split("-")[2:]):
            if part == "ac" and index == 0:
                found["accuracy_control"] = True
            elif part == "mixed":
                found["activation_symmetric"] = False
            elif re.fullmatch(r"n[1-9]\d*", part):
                found["calibration_samples"] = int(part[1:])
            else:
                raise ConfigError(f"variant '{name}': unknown option '{part}' ({NNCF_RECIPE}[-ac][-mixed][-n<count>]: "
                                  "accuracy control, MIXED preset, the first <count> calibration samples)")
        return cls(**found)

    @classmethod
    def _parse_tensorrt(cls, name: str, options: list[str]) -> Recipe:
        found: dict[str, Any] = {"kind": "int8-static", "calibration_method": "minmax", "target": "tensorrt"}
        for index, part in enumerate(options):
            if part in CALIBRATION_METHODS and index == 0:
                found["calibration_method"] = part
            elif part == "pt":
                found["per_channel"] = False
            elif re.fullmatch(r"n[1-9]\d*", part):
                found["calibration_samples"] = int(part[1:])
            elif part in ("asym", "rr"):
                raise ConfigError(f"variant '{name}': TensorRT takes symmetric INT8 only; -{part} is an ONNX Runtime "
                                  f"CPU option (int8-static-<method>-{part})")
            else:
                raise ConfigError(f"variant '{name}': unknown option '{part}' (<method> first: "
                                  f"{', '.join(CALIBRATION_METHODS)}; pt, n<count>)")
        return cls(**found)
