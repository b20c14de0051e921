"""The variant types: :class:`Variant` (a model file plus the provenance that says how it was made, read back from
``<name>.provenance.json`` beside it) and :class:`VariantFailure` (a recipe that could not be made), with
:func:`provenance_path` and the provenance wording others read.  The makers are in :mod:`edgeopt.models.quantize`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from edgeopt.core.fileio import read_json, sha256_file
from edgeopt.models.graph import load_model, model_size_bytes

#: The reason noted in a variant's provenance (``excluded``) for compute ONNX Runtime's quantizer left float.
LEFT_FLOAT_IN_SUBGRAPHS = ("inside If/Loop/Scan subgraphs: left float (ONNX Runtime's quantizer does not enter "
                           "subgraphs)")


@dataclass(frozen=True)
class Variant:
    """A model file plus how it was made."""

    name: str
    path: Path
    precision: str
    provenance: dict[str, Any] = field(repr=False)

    @property
    def sha256(self) -> str:
        return str(self.provenance["sha256"])

    @property
    def kind(self) -> str | None:
        """The recipe kind that made it (``fp32``, ``fp16``, ``int8-dynamic``, ``int8-static``), if recorded."""
        kind = self.provenance.get("recipe", {}).get("kind")
        return str(kind) if kind else None

    @property
    def size_bytes(self) -> int:
        return int(self.provenance["size_bytes"])

    @classmethod
    def from_file(cls, path: Path, name: str | None = None) -> Variant:
        """A model edgeopt did not make, measured as it is; its precision is read off its operators."""
        model = load_model(path)
        ops = {node.op_type for node in model.graph.node}
        precision = "fp32"
        if ops & {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger",
                  "MatMulInteger", "DynamicQuantizeLinear"}:
            precision = "int8"
        elif any(init.data_type == onnx.TensorProto.FLOAT16 for init in model.graph.initializer):
            precision = "fp16"
        provenance = {"kind": "external", "name": name or path.stem, "precision": precision, "path": str(path),
                      "sha256": sha256_file(path), "size_bytes": model_size_bytes(path)}
        return cls(name=name or path.stem, path=path, precision=precision, provenance=provenance)

    @classmethod
    def load(cls, path: Path) -> Variant:
        provenance = read_json(provenance_path(path))
        return cls(name=provenance["name"], path=path, precision=provenance["precision"], provenance=provenance)


def provenance_path(model_path: Path) -> Path:
    return model_path.with_name(model_path.stem + ".provenance.json")


@dataclass(frozen=True)
class VariantFailure:
    """A recipe that could not be made: its variant name, the error's message and the exit code it maps to; or, with
    ``not_applicable``, one that does not apply to the model (already quantized, nothing to quantize): not a
    failure, a row that says why."""

    name: str
    message: str
    exit_code: int
    not_applicable: bool = False
