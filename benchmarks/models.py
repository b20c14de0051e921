"""Small ONNX models for the overhead benchmarks, built in code with ``onnx.helper`` (no torch, no downloads).

* :func:`near_empty_model`: one ``Add`` on a 1x4 tensor; ``session.run`` is almost all call overhead.
* :func:`matmul_chain_model`: ``depth`` dense ``MatMul`` + ``Relu`` layers on a ``rows x width`` input;
  the defaults (12 layers, 64 x 256) run in about 1 ms on one thread of a 2-vCPU AVX-512 EPYC.
* :func:`heavy_weights_model`: ``depth`` ``MatMul`` layers on a 1 x ``width`` input whose
  initializers total about ``depth * width**2 * 4`` bytes (24 MiB by default), so a worker's peak
  RSS is dominated by the model rather than by the interpreter.

Weights are seeded, so a model's bytes (and its hash) are the same on every run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # old enough for every onnxruntime edgeopt supports


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edgeopt-bench")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def near_empty_model(path: Path) -> Path:
    """``y = x + c`` on a float32 1x4 tensor."""
    const = numpy_helper.from_array(np.ones((1, 4), dtype=np.float32), "c")
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "c"], ["y"], name="add")],
        "near_empty",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        initializer=[const],
    )
    return _save(graph, path)


def _dense_chain(name: str, rows: int, width: int, depth: int, seed: int) -> onnx.GraphProto:
    rng = np.random.default_rng(seed)
    scale = np.float32(1.0 / np.sqrt(width))  # keeps activations O(1) through the chain
    nodes: list[onnx.NodeProto] = []
    weights: list[onnx.TensorProto] = []
    current = "x"
    for i in range(depth):
        w = (rng.standard_normal((width, width), dtype=np.float32) * scale).astype(np.float32)
        weights.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("MatMul", [current, f"w{i}"], [f"mm{i}"], name=f"matmul{i}"))
        out = "y" if i == depth - 1 else f"h{i}"
        nodes.append(helper.make_node("Relu", [f"mm{i}"], [out], name=f"relu{i}"))
        current = out
    return helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, width])],
        initializer=weights,
    )


def matmul_chain_model(path: Path, *, rows: int = 64, width: int = 256, depth: int = 12, seed: int = 0) -> Path:
    """``depth`` x (MatMul with a ``width x width`` weight, then Relu) on a ``rows x width`` input."""
    return _save(_dense_chain("matmul_chain", rows, width, depth, seed), path)


def heavy_weights_model(path: Path, *, width: int = 1024, depth: int = 6, seed: int = 1) -> Path:
    """A 1 x ``width`` input through ``depth`` dense layers: ``depth * width**2 * 4`` bytes of weights."""
    return _save(_dense_chain("heavy_weights", 1, width, depth, seed), path)


def random_feeds(model_path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded float32 feeds for a model whose inputs all have static shapes."""
    model = onnx.load(str(model_path), load_external_data=False)
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for value in model.graph.input:
        shape = [d.dim_value for d in value.type.tensor_type.shape.dim]
        feeds[value.name] = rng.standard_normal(shape, dtype=np.float32)
    return feeds
