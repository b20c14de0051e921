"""Static TensorRT readiness: would TensorRT X's ONNX parser take this model, and is its Q/DQ what TensorRT's
explicit quantization accepts?  No TensorRT and no GPU are involved: passing is necessary, not sufficient (no
engine was built; layer fusions, tactics, shapes and memory are only known on the device).

Each finding names the node, the input and the rule, with the parser's own words where it has them
(onnx-tensorrt ``onnxOpImporters.cpp``, ``QuantDequantLinearHelper``; TensorRT developer guide, "Working with
Quantized Types"):

==================== ============================================================================================
rule                 what is checked
==================== ============================================================================================
opset                the default-domain opset lies in the range the target's operators.md documents
operator             every node's op type is a supported row of the target's table (subgraphs included)
no-importer          a node outside the ONNX domain that no ONNX importer covers: the parser would need a plugin
zero-point           Q/DQ zero points are constant and all zero ("TensorRT only supports symmetric quantization")
quantized-type       DequantizeLinear inputs and QuantizeLinear zero points are a type the table lists for
                     DequantizeLinear (INT8; FP8/INT4/FP4 by version); UINT8 is refused by the parser
int32-bias           an INT32 DequantizeLinear input (ONNX Runtime's quantized biases): "only activation types
                     allowed as input to this layer" (onnx/onnx-tensorrt#850)
q-input-type         QuantizeLinear inputs are FP32/FP16/BF16 (the table's QuantizeLinear row)
scale-constant       scales are build-time constants
scale-positive       "Scale coefficients must all be positive" (and finite)
scale-shape          scalar (per-tensor) or 1-D of length dim[axis] (per-channel); zero point as large as scale
per-axis-activation  per-channel scales only on weights ("Activations-quantization does not support per-axis")
scale-type           FP16/BF16 scales need opset 19
==================== ============================================================================================

Warnings (not blockers): a node in a foreign domain the parser would import as an ONNX op (it dispatches on the
op type alone), an input type the table does not list for that operator, opset domains no node uses, a model
``onnx.checker`` rejects, a zero point that is not a constant.  Notes: the restrictions column of every operator
used (not checked), and on TensorRT 11 a model without Q/DQ (it builds INT8 only from explicit Q/DQ).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from edgeopt.backends.tensorrt.support import OperatorTable, Target, resolve_target
from edgeopt.errors import first_line
from edgeopt.models.graph import load_model
from edgeopt.models.subgraphs import subgraphs

__all__ = ["Finding", "Readiness", "check_tensorrt_readiness", "NECESSARY_NOT_SUFFICIENT"]

SCHEMA_VERSION = 1
NECESSARY_NOT_SUFFICIENT = "necessary, not sufficient: no engine was built"
ONNX_DOMAINS = ("", "ai.onnx")
QDQ = ("QuantizeLinear", "DequantizeLinear")
SEVERITIES = ("blocker", "warning", "note")

#: ONNX element types in the names operators.md uses.
_TRT_TYPE: dict[int, str] = {TensorProto.FLOAT: "FP32", TensorProto.FLOAT16: "FP16", TensorProto.BFLOAT16: "BF16",
             TensorProto.DOUBLE: "DOUBLE", TensorProto.INT8: "INT8", TensorProto.UINT8: "UINT8",
             TensorProto.INT32: "INT32", TensorProto.INT64: "INT64", TensorProto.BOOL: "BOOL",
             TensorProto.INT4: "INT4", TensorProto.FLOAT8E4M3FN: "FP8", TensorProto.FLOAT4E2M1: "FP4"}
_BIAS_INPUT = {"Conv": 2, "ConvTranspose": 2, "Gemm": 2, "BatchNormalization": 2, "InstanceNormalization": 2,
               "LayerNormalization": 2}  # op -> its bias input (ONNX Runtime quantizes these to INT32)


def _type_name(elem_type: int) -> str:
    return _TRT_TYPE.get(elem_type) or str(TensorProto.DataType.Name(elem_type))


@dataclass(frozen=True)
class Finding:
    """One thing the check found: ``severity`` blocker | warning | note, the ``rule``, where, and what."""

    severity: str
    rule: str
    message: str
    node: str | None = None
    op_type: str | None = None
    input: str | None = None

    def sentence(self) -> str:
        where = f"node {self.node} ({self.op_type})" if self.node else (self.op_type or "model")
        if self.input:
            where += f", input {self.input}"
        return f"{where}: {self.message} [{self.rule}]"

    def to_dict(self) -> dict[str, Any]:
        return {"severity": self.severity, "rule": self.rule, "node": self.node, "op_type": self.op_type,
                "input": self.input, "message": self.message}


@dataclass(frozen=True)
class Readiness:
    """The verdict of one model against one TensorRT target; truthy when nothing blocks it."""

    model: str
    target: Target
    findings: tuple[Finding, ...]
    opset: int | None
    nodes: int
    qdq_nodes: int

    def of(self, severity: str) -> list[Finding]:
        return [f for f in self.findings if f.severity == severity]

    @property
    def blockers(self) -> list[Finding]:
        return self.of("blocker")

    @property
    def ready(self) -> bool:
        return not self.blockers

    def __bool__(self) -> bool:
        return self.ready

    def verdict(self) -> str:
        if self.ready:
            return f"statically ready for {self.target.name} ({NECESSARY_NOT_SUFFICIENT})"
        rules = sorted({f.rule for f in self.blockers})
        count = len(self.blockers)
        return (f"not ready for {self.target.name}: {count} blocker{'s' * (count != 1)} ({', '.join(rules)}); "
                "static check, no engine was built")

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "model": self.model, "tensorrt": self.target.to_dict(),
                "ready": self.ready, "verdict": self.verdict(), "opset": self.opset, "nodes": self.nodes,
                "qdq_nodes": self.qdq_nodes, "counts": {s: len(self.of(s)) for s in SEVERITIES},
                "findings": [f.to_dict() for f in self.findings]}


def check_tensorrt_readiness(model: Path | str, tensorrt: str | Target = "10.x") -> Readiness:
    """Check ``model`` (an ONNX file) against TensorRT ``tensorrt`` (``10.3``, ``10.x``, ``11`` or a
    :class:`Target`).  An unreadable file raises ``ModelFileError`` (exit 3); an unknown version ``ConfigError``."""
    target = tensorrt if isinstance(tensorrt, Target) else resolve_target(tensorrt)
    proto = load_model(model, load_external_data=True, check=False)
    checker = _Checker(proto, target)
    checker.run()
    return Readiness(model=str(model), target=target, findings=tuple(checker.findings), opset=checker.opset,
                     nodes=checker.node_count, qdq_nodes=checker.qdq_count)


@dataclass
class _Scope:
    """A node with the name the findings use for it (``#index`` when unnamed, ``parent/child`` in subgraphs)."""

    node: onnx.NodeProto
    label: str
    in_function: bool = False


def _walk(graph: onnx.GraphProto, prefix: str = "") -> Iterator[_Scope]:
    for index, node in enumerate(graph.node):
        label = f"{prefix}{node.name or f'#{index}'}"
        yield _Scope(node, f"'{label}'" if node.name else label)
        for attribute in node.attribute:
            held = ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs)
            for sub in held:
                yield from _walk(sub, f"{label}/{attribute.name}/")


def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    yield graph
    for node in graph.node:
        for sub in subgraphs(node):
            yield from _graphs(sub)


@dataclass
class _Checker:
    model: onnx.ModelProto
    target: Target
    findings: list[Finding] = field(default_factory=list)
    constants: dict[str, TensorProto] = field(default_factory=dict)
    types: dict[str, int] = field(default_factory=dict)
    producers: dict[str, onnx.NodeProto] = field(default_factory=dict)
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = field(default_factory=dict)
    opset: int | None = None
    node_count: int = 0
    qdq_count: int = 0

    @property
    def table(self) -> OperatorTable:
        return self.target.table

    def add(self, severity: str, rule: str, message: str, scope: _Scope | None = None,
            where: str | None = None) -> None:
        self.findings.append(Finding(severity, rule, message, scope.label if scope else None,
                                     scope.node.op_type if scope else None, where))

    def run(self) -> None:
        self._index()
        self._check_model()
        scopes = list(_walk(self.model.graph))
        for function in self.model.functions:  # model-local functions: the parser imports their bodies
            scopes += [_Scope(n, f"'{function.name}/{n.name or f'#{i}'}'", True) for i, n in enumerate(function.node)]
        self.node_count = len(scopes)
        seen_restrictions: set[str] = set()
        for scope in scopes:
            self._check_operator(scope, seen_restrictions)
            if scope.node.op_type in QDQ:
                self.qdq_count += 1
                self._check_qdq(scope)
        if self.target.major >= 11 and not self.qdq_count:
            self.add("note", "no-qdq", f"no QuantizeLinear/DequantizeLinear: {self.target.name} builds INT8 only from "
                     "explicit Q/DQ (strongly typed; implicit calibration is gone), so this model builds in float")
        order = {s: i for i, s in enumerate(SEVERITIES)}
        self.findings.sort(key=lambda f: order[f.severity])

    # ------------------------------------------------------------------------------------------------ indexing
    def _index(self) -> None:
        for graph in _graphs(self.model.graph):
            for init in graph.initializer:
                self.constants[init.name] = init
                self.types[init.name] = init.data_type
            for value in list(graph.input) + list(graph.output) + list(graph.value_info):
                if value.type.HasField("tensor_type") and value.type.tensor_type.elem_type:
                    self.types.setdefault(value.name, value.type.tensor_type.elem_type)
        try:  # element types of intermediate tensors (warnings only depend on them)
            inferred = onnx.shape_inference.infer_shapes(self.model, check_type=False, strict_mode=False)
            for graph in _graphs(inferred.graph):
                for value in list(graph.value_info) + list(graph.output):
                    if value.type.HasField("tensor_type") and value.type.tensor_type.elem_type:
                        self.types.setdefault(value.name, value.type.tensor_type.elem_type)
        except Exception as error:  # noqa: BLE001 - onnx raises several types; the check goes on without types
            self.add("warning", "shape-inference", f"ONNX shape inference failed ({first_line(error)}): input types "
                     "of intermediate tensors are unknown, so operator type checks are partial")
        for scope in _walk(self.model.graph):
            node = scope.node
            for index, name in enumerate(node.input):
                if name:
                    self.consumers.setdefault(name, []).append((node, index))
            for name in node.output:
                self.producers[name] = node
            if node.op_type == "Constant" and node.domain in ONNX_DOMAINS and node.output:
                value = next((a for a in node.attribute if a.name == "value"), None)
                if value is not None:
                    self.constants[node.output[0]] = value.t
                    self.types[node.output[0]] = value.t.data_type
            elif node.op_type == "Identity" and node.input and node.input[0] in self.constants:
                self.constants[node.output[0]] = self.constants[node.input[0]]  # the parser looks through Identity
            for name in node.output:
                if name in self.constants:
                    self.types.setdefault(name, self.constants[name].data_type)

    def _array(self, name: str) -> np.ndarray | None:
        tensor = self.constants.get(name)
        if tensor is None:
            return None
        try:
            return np.asarray(numpy_helper.to_array(tensor))
        except Exception:  # noqa: BLE001 - an exotic type (FP8, packed INT4) or a broken tensor: no values
            return None

    # ------------------------------------------------------------------------------------------------ model
    def _check_model(self) -> None:
        table = self.table
        self.opset = next((int(e.version) for e in self.model.opset_import if e.domain in ONNX_DOMAINS), None)
        if self.opset is None:
            self.add("blocker", "opset", "the model imports no default ONNX domain opset")
        elif not table.opset_min <= self.opset <= table.opset_max:
            self.add("blocker", "opset", f"opset {self.opset} is outside {self.target.name}'s parser range "
                     f"{table.opset_min}..{table.opset_max} ({table.label}); convert the model "
                     f"(onnx.version_converter) to opset {table.opset_max} or below")
        used = {s.node.domain for s in _walk(self.model.graph)} | {f.domain for f in self.model.functions}
        unused = sorted(e.domain for e in self.model.opset_import if e.domain not in (*ONNX_DOMAINS, *used))
        if unused:
            self.add("warning", "unused-domain", f"opset_import lists domains no node uses ({', '.join(unused)}): "
                     "the parser ignores them, but they mark a graph saved after ONNX Runtime's optimiser")
        try:
            onnx.checker.check_model(self.model, full_check=False)
        except Exception as error:  # noqa: BLE001 - ValidationError and friends
            self.add("warning", "onnx-checker", f"onnx.checker rejects the model ({first_line(error)}); TensorRT's "
                     "parser does not run it, but an invalid graph rarely parses")

    # ------------------------------------------------------------------------------------------------ operators
    def _check_operator(self, scope: _Scope, seen_restrictions: set[str]) -> None:
        node, table = scope.node, self.table
        row = table.operators.get(node.op_type)
        if node.domain not in ONNX_DOMAINS:
            if row is not None and row.supported:
                self.add("warning", "foreign-domain", f"domain '{node.domain}': TensorRT's parser dispatches on the "
                         f"op type alone and would import it as ONNX {node.op_type}, whose semantics may differ", scope)
                return
            if any(f.name == node.op_type for f in self.model.functions):
                return  # a model-local function: its body nodes are checked themselves
            self.add("blocker", "no-importer", f"no ONNX importer for {node.domain}.{node.op_type}: TensorRT's parser "
                     f"would look for a plugin registered as '{node.op_type}' (a custom layer you must supply)", scope)
            return
        if row is None:
            self.add("blocker", "operator", f"{node.op_type} is not in {self.target.name}'s operator table "
                     f"({table.label}); the parser would try to import it as a plugin", scope)
            return
        if not row.supported:
            self.add("blocker", "operator", f"{self.target.name} does not support {node.op_type} ({table.label}: "
                     f"Supported N{'; ' + row.restrictions if row.restrictions else ''})", scope)
            return
        if row.restrictions and node.op_type not in seen_restrictions and node.op_type not in QDQ:  # Q/DQ: checked
            seen_restrictions.add(node.op_type)
            self.findings.append(Finding("note", "restriction", f"restrictions not checked statically: "
                                         f"{row.restrictions}", op_type=node.op_type))
        if node.op_type in QDQ or node.op_type in ("Cast", "CastLike", "Shape", "Size") or not row.types:
            return
        first = node.input[0] if node.input else ""
        elem = self.types.get(first) if first else None
        if elem is not None and _type_name(elem) not in row.types and _type_name(elem) != "DOUBLE":
            self.add("warning", "operator-type", f"{_type_name(elem)} is not among the types operators.md lists for "
                     f"{node.op_type} ({', '.join(row.types)})", scope, f"0 = '{first}'")

    # ------------------------------------------------------------------------------------------------ Q/DQ
    def _quantized_type(self, node: onnx.NodeProto) -> int | None:
        """The integer/FP8 side's element type: a DequantizeLinear's input, a QuantizeLinear's output."""
        if node.op_type == "DequantizeLinear":
            x = node.input[0]
            if x in self.types:
                return self.types[x]
            producer = self.producers.get(x)
            if producer is not None and producer.op_type == "QuantizeLinear":
                return self._quantized_type(producer)
        if len(node.input) > 2 and node.input[2] in self.types:
            return self.types[node.input[2]]
        output_dtype = next((a.i for a in node.attribute if a.name == "output_dtype"), 0)
        return int(output_dtype) or None  # None: no zero point, no output_dtype (the parser then takes INT8)

    def _is_weight(self, node: onnx.NodeProto) -> bool:
        """Its data input is a constant: directly, or through the QuantizeLinear feeding a DequantizeLinear."""
        x = node.input[0]
        if x in self.constants:
            return True
        producer = self.producers.get(x)
        return producer is not None and producer.op_type == "QuantizeLinear" and producer.input[0] in self.constants

    def _weight_dims(self, node: onnx.NodeProto) -> tuple[int, ...] | None:
        x = node.input[0]
        producer = self.producers.get(x)
        if x not in self.constants and producer is not None and producer.op_type == "QuantizeLinear":
            x = producer.input[0]
        tensor = self.constants.get(x)
        return tuple(int(d) for d in tensor.dims) if tensor is not None else None

    def _check_qdq(self, scope: _Scope) -> None:
        node, table = scope.node, self.table
        is_dq = node.op_type == "DequantizeLinear"
        if len(node.input) < 2 or not node.input[1]:
            self.add("blocker", "scale-shape", "TensorRT requires at least 2 inputs (x, scale) for Q/DQ", scope)
            return
        x, scale_name = node.input[0], node.input[1]
        zp_name = node.input[2] if len(node.input) > 2 and node.input[2] else None
        allowed = table.types_of("DequantizeLinear") or ("INT8",)
        quantized = self._quantized_type(node)
        if quantized is not None:
            name = _type_name(quantized)
            where = f"x = '{x}'" if is_dq else f"y_zero_point = '{zp_name}'"
            if quantized == TensorProto.INT32 and is_dq:
                self.add("blocker", "int32-bias", f"INT32{self._bias_of(node)}: TensorRT's parser refuses it ('only "
                         "activation types allowed as input to this layer', onnx/onnx-tensorrt#850); ONNX Runtime's "
                         "quantize_static writes these for biases: quantize with extra_options QuantizeBias=False "
                         "(edgeopt's int8-trt-qdq) or leave biases in float", scope, where)
            elif name not in allowed:
                hint = (": asymmetric UINT8 Q/DQ (U8S8, ONNX Runtime's x86 CPU format) is not a TensorRT file; make "
                        "the symmetric INT8 one (int8-trt-qdq)" if quantized == TensorProto.UINT8 else "")
                self.add("blocker", "quantized-type", f"{name}: {self.target.name} quantizes to {', '.join(allowed)} "
                         f"only ({table.label}, DequantizeLinear row){hint}", scope, where)
        if not is_dq:
            elem = self.types.get(x)
            q_types = table.types_of("QuantizeLinear") or ("FP32", "FP16", "BF16")
            if elem is not None and _type_name(elem) not in q_types:
                self.add("blocker", "q-input-type", f"{_type_name(elem)}: QuantizeLinear takes {', '.join(q_types)} "
                         f"({table.label})", scope, f"x = '{x}'")
        scale = self._check_scale(scope, scale_name)
        if zp_name is not None:
            self._check_zero_point(scope, zp_name, quantized, scale)
        if scale is not None and scale.size > 1:
            self._check_per_axis(scope, scale)

    def _bias_of(self, node: onnx.NodeProto) -> str:
        for consumer, index in self.consumers.get(node.output[0], []) if node.output else []:
            if _BIAS_INPUT.get(consumer.op_type) == index:
                return f" (the bias of {consumer.op_type} '{consumer.name or consumer.output[0]}')"
        return ""

    def _check_scale(self, scope: _Scope, name: str) -> np.ndarray | None:
        if name not in self.constants:
            self.add("blocker", "scale-constant", "the scale is computed in the graph; TensorRT needs a build-time "
                     "constant (initializer or Constant)", scope, f"scale = '{name}'")
            return None
        elem = self.constants[name].data_type
        if elem in (TensorProto.FLOAT16, TensorProto.BFLOAT16) and (self.opset or 0) < 19:
            self.add("blocker", "scale-type", f"{_type_name(elem)} scale needs opset 19 (QuantizeLinear/"
                     f"DequantizeLinear-19); the model is opset {self.opset}", scope, f"scale = '{name}'")
        elif elem not in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16):
            self.add("blocker", "scale-type", f"{_type_name(elem)} scale: TensorRT takes FP32 (FP16/BF16 from "
                     "opset 19)", scope, f"scale = '{name}'")
        values = self._array(name)
        if values is None:
            return None
        as_float = values.astype(np.float64)
        if values.size == 0:
            self.add("blocker", "scale-shape", "Cannot have scale with no coefficients.", scope, f"scale = '{name}'")
            return None
        if not np.all(np.isfinite(as_float) & (as_float > 0)):
            bad = int(np.sum(~(np.isfinite(as_float) & (as_float > 0))))
            self.add("blocker", "scale-positive", f"Scale coefficients must all be positive ({bad} of {values.size} "
                     f"are not: min {np.nanmin(as_float):.3g})", scope, f"scale = '{name}'")
        return values

    def _check_zero_point(self, scope: _Scope, name: str, quantized: int | None, scale: np.ndarray | None) -> None:
        where = f"zero_point = '{name}'"
        if quantized in (TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT4E2M1):
            return  # the parser skips the zero check for FP8 (its zero point is a float zero by construction)
        if name not in self.constants:
            self.add("warning", "zero-point", "the zero point is computed in the graph: its values cannot be checked "
                     "statically (TensorRT needs all zeros)", scope, where)
            return
        values = self._array(name)
        if values is None:
            return
        nonzero = int(np.count_nonzero(values))
        if nonzero:
            self.add("blocker", "zero-point", f"TensorRT only supports symmetric quantization. The zero point for the "
                     f"QuantizeLinear/DequantizeLinear operator must be all zeros ({nonzero} of {values.size} are not; "
                     f"range {values.min()}..{values.max()})", scope, where)
        if scale is not None and values.size != scale.size:
            self.add("blocker", "scale-shape", f"The scale and zero point must have the same volume. Size of zero "
                     f"point = {values.size}, size of the scale = {scale.size}.", scope, where)

    def _check_per_axis(self, scope: _Scope, scale: np.ndarray) -> None:
        node = scope.node
        where = f"scale = '{node.input[1]}'"
        if (self.opset or 0) < 13:
            self.add("blocker", "scale-shape", f"per-axis Q/DQ needs opset 13 (the model is opset {self.opset})",
                     scope, where)
        if not self._is_weight(node):
            self.add("blocker", "per-axis-activation", f"a per-channel scale ({scale.size} values) on an activation: "
                     "Activations-quantization does not support per-axis quantization; use one scale per tensor",
                     scope, where)
            return
        dims = self._weight_dims(node)
        if dims is None:
            return
        if scale.ndim == 1:
            axis_attr = next((a.i for a in node.attribute if a.name == "axis"), None)
            axis = 0 if axis_attr is None else int(axis_attr)  # the parser's default; ONNX's is 1
            axis = axis + len(dims) if axis < 0 else axis
            if not 0 <= axis < len(dims):
                self.add("blocker", "scale-shape", f"axis {axis_attr} is outside the weight's rank {len(dims)}",
                         scope, where)
            elif dims[axis] != scale.size:
                self.add("blocker", "scale-shape", f"The number of scales is not equal to the number of output "
                         f"channels. Number of output channels = {dims[axis]}, number of scales = {scale.size}.",
                         scope, where)
            if axis_attr is None:
                self.add("warning", "scale-shape", "per-axis scale without an 'axis' attribute: ONNX means axis 1, "
                         "TensorRT's parser takes 0", scope, where)
        elif scale.ndim == len(dims):
            self.add("warning", "block-quantization", f"block-wise scale {tuple(scale.shape)} on weights {dims}: "
                     "TensorRT takes one blocked dimension (INT4/FP4 weights); not checked further", scope, where)
        else:
            self.add("blocker", "scale-shape", f"Invalid rank for the scale tensor. Rank = {scale.ndim}.", scope, where)
