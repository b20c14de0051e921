"""Static TensorRT readiness (edgeopt.backends.tensorrt.readiness, edgeopt trt-check) on real models: the default
image model's variants made by ONNX Runtime's real quantizer, graphs built with onnx.helper for each rule, and the
shipped operator tables with their regeneration script.  No TensorRT, no GPU, no mocks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeopt.backends.tensorrt.readiness import NECESSARY_NOT_SUFFICIENT, Readiness, check_tensorrt_readiness
from edgeopt.backends.tensorrt.support import operator_tables, resolve_target
from edgeopt.errors import ConfigError, ModelFileError
from edgeopt.models.quantize import TENSORRT_MAX_OPSET, make_variants
from edgeopt.models.recipes import Recipe
from edgeopt.models.variants import Variant

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = "edgeopt.zoo.resnet:resnet18"
RECIPES = ("int8-trt-qdq", "int8-static-minmax", "int8-static-minmax-asym")


def trt_check(*args: object) -> subprocess.CompletedProcess[str]:
    """``edgeopt trt-check ARGS`` in a subprocess (exit codes, messages)."""
    return subprocess.run([sys.executable, "-m", "edgeopt", "trt-check", *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)


def rules(result: Readiness, severity: str = "blocker") -> set[str]:
    return {f.rule for f in result.of(severity)}


# ------------------------------------------------------------------------------------ the default image model


@pytest.fixture(scope="module")
def default_variants(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The default image model (ResNet-18 class, exported from edgeopt.zoo) and its TensorRT-bound, S8S8 and U8S8
    variants, calibrated on 8 of the shipped photos."""
    pytest.importorskip("torch")
    from edgeopt.models.calibration import load_calibration
    from edgeopt.models.export import export_onnx
    from edgeopt.models.modelref import factory_input_specs, load_entry_point

    out = tmp_path_factory.mktemp("default-model")
    declared = factory_input_specs(DEFAULT_MODEL)
    assert declared is not None
    specs = declared.concrete()
    model = export_onnx(load_entry_point(DEFAULT_MODEL)(), specs, out / "resnet18.onnx").path
    calibration = load_calibration(ROOT / "calibration_data" / "images", expected_inputs=specs, min_samples=8,
                                   max_samples=8)
    made = make_variants(model, [Recipe.parse(name) for name in RECIPES], out / "variants", calibration=calibration)
    assert all(isinstance(v, Variant) for v in made), made
    return {"fp32": model, **{v.name: v.path for v in made if isinstance(v, Variant)}}


@pytest.mark.slow
@pytest.mark.parametrize("version", ["10.3", "11"])
def test_default_models_tensorrt_variant_is_statically_ready(default_variants: dict[str, Path], version: str) -> None:
    result = check_tensorrt_readiness(default_variants["int8-trt-qdq"], version)
    assert result.ready, [f.sentence() for f in result.blockers]
    assert not result.of("warning"), [f.sentence() for f in result.of("warning")]
    assert result.qdq_nodes > 100 and result.opset is not None and result.opset <= TENSORRT_MAX_OPSET
    assert result.verdict() == f"statically ready for {result.target.name} ({NECESSARY_NOT_SUFFICIENT})"
    run = trt_check(default_variants["int8-trt-qdq"], "--tensorrt", version)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"statically ready for TensorRT {version}" in run.stdout and "no engine was built" in run.stdout


@pytest.mark.slow
def test_int8_static_minmax_is_refused_for_its_int32_biases(default_variants: dict[str, Path]) -> None:
    """ONNX Runtime's S8S8 file: one INT32 bias DequantizeLinear per Conv/Gemm with a bias (20 convolutions on
    ResNet-18, and its classifier where the exporter wrote a Gemm), each named."""
    result = check_tensorrt_readiness(default_variants["int8-static-minmax"], "10.3")
    assert not result and rules(result) == {"int32-bias"}
    model = onnx.load(str(default_variants["int8-static-minmax"]))
    int32_dq = {n.name for n in model.graph.node if n.op_type == "DequantizeLinear"
                and any(i.name == n.input[0] and i.data_type == TensorProto.INT32 for i in model.graph.initializer)}
    source = onnx.load(str(default_variants["fp32"]))
    biased = sum(n.op_type in ("Conv", "Gemm") and len(n.input) == 3 for n in source.graph.node)
    assert biased >= 20 and len(int32_dq) == biased
    assert {f.node.strip("'") for f in result.blockers if f.node} == int32_dq
    first = result.blockers[0]
    assert first.op_type == "DequantizeLinear" and first.input is not None and first.input.startswith("x = ")
    assert "only activation types allowed as input to this layer" in first.message and "QuantizeBias=False" in \
        first.message
    assert "the bias of" in first.message
    assert rules(result, "warning") == {"unused-domain"}  # ONNX Runtime's optimiser domains
    run = trt_check(default_variants["int8-static-minmax"], "--tensorrt", "10.3", "--tensorrt", "11")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "only activation types allowed as input to this layer" in run.stdout
    assert f"not ready for TensorRT 10.3: {biased} blockers (int32-bias)" in run.stdout
    assert f"not ready for TensorRT 11 (11.1): {biased} blockers" in run.stdout


@pytest.mark.slow
def test_u8s8_file_is_refused_on_its_zero_points(default_variants: dict[str, Path]) -> None:
    result = check_tensorrt_readiness(default_variants["int8-static-minmax-asym"], "10.x")
    assert {"zero-point", "quantized-type"} <= rules(result)
    zero = next(f for f in result.blockers if f.rule == "zero-point")
    assert zero.op_type in ("QuantizeLinear", "DequantizeLinear") and zero.input and "zero_point" in zero.input
    assert "TensorRT only supports symmetric quantization" in zero.message
    uint8 = next(f for f in result.blockers if f.rule == "quantized-type")
    assert uint8.message.startswith("UINT8") and "U8S8" in uint8.message
    run = trt_check(default_variants["int8-static-minmax-asym"], "--json")
    assert run.returncode == 1
    document = json.loads(run.stdout)
    assert document["ready"] is False and document["tensorrt"]["table"] == "10.16"
    assert {f["rule"] for f in document["findings"] if f["severity"] == "blocker"} >= {"zero-point", "quantized-type"}


@pytest.mark.slow
def test_the_float_model_parses_and_says_int8_needs_qdq_on_11(default_variants: dict[str, Path]) -> None:
    assert check_tensorrt_readiness(default_variants["fp32"], "10.3")
    on_11 = check_tensorrt_readiness(default_variants["fp32"], "11")
    assert on_11 and "no-qdq" in rules(on_11, "note")


# ------------------------------------------------------------------------------------ operators


def _save(path: Path, nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto],
          outputs: list[onnx.ValueInfoProto], inits: list[TensorProto] | None = None, opset: int = 17,
          domains: dict[str, int] | None = None) -> Path:
    imports = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in (domains or {}).items()]
    graph = helper.make_graph(nodes, path.stem, inputs, outputs, inits or [])
    onnx.save(helper.make_model(graph, opset_imports=imports, ir_version=10), str(path))
    return path


def window_model(path: Path) -> Path:
    """HannWindow (opset 17) scaling a signal: parsed by TensorRT from 10.4 on, not by 10.3."""
    size = numpy_helper.from_array(np.array(16, dtype=np.int64), "size")
    nodes = [helper.make_node("HannWindow", ["size"], ["window"], name="hann"),
             helper.make_node("Mul", ["signal", "window"], ["output"], name="scale")]
    return _save(path, nodes, [helper.make_tensor_value_info("signal", TensorProto.FLOAT, [16])],
                 [helper.make_tensor_value_info("output", TensorProto.FLOAT, [16])], [size])


def test_an_operator_unsupported_in_10_3_is_named(tmp_path: Path) -> None:
    path = window_model(tmp_path / "window.onnx")
    on_10_3 = check_tensorrt_readiness(path, "10.3")
    assert [(f.rule, f.node, f.op_type) for f in on_10_3.blockers] == [("operator", "'hann'", "HannWindow")]
    assert "TensorRT 10.3 does not support HannWindow" in on_10_3.blockers[0].message
    assert "96e781103cfc" in on_10_3.blockers[0].message  # the table it was judged by
    assert check_tensorrt_readiness(path, "10.x") and check_tensorrt_readiness(path, "11")
    run = trt_check(path, "--tensorrt", "10.3")
    assert run.returncode == 1 and "node 'hann' (HannWindow)" in run.stdout


def test_foreign_domain_nodes(tmp_path: Path) -> None:
    """A node TensorRT has no importer for needs a plugin (blocker); one whose op type it knows is imported as
    the ONNX op (warning); unused opset domains are a warning."""
    value = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])]
    out = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])]
    fused = _save(tmp_path / "fused.onnx", [helper.make_node("FusedGemm", ["x"], ["y"], name="fg",
                                                               domain="com.microsoft")],
                  value, out, domains={"com.microsoft": 1, "com.microsoft.nchwc": 1})
    result = check_tensorrt_readiness(fused, "10.x")
    assert [(f.rule, f.node) for f in result.blockers] == [("no-importer", "'fg'")]
    assert "plugin registered as 'FusedGemm'" in result.blockers[0].message
    assert rules(result, "warning") >= {"unused-domain"}
    known = _save(tmp_path / "known.onnx", [helper.make_node("Relu", ["x"], ["y"], name="r", domain="custom")],
                  value, out, domains={"custom": 1})
    result = check_tensorrt_readiness(known, "10.x")
    assert result and rules(result, "warning") >= {"foreign-domain"}


def test_an_input_type_the_table_does_not_list_is_a_warning(tmp_path: Path) -> None:
    flags = [helper.make_tensor_value_info("x", TensorProto.BOOL, [4])]
    path = _save(tmp_path / "equal.onnx", [helper.make_node("Equal", ["x", "x"], ["y"], name="eq")], flags,
                 [helper.make_tensor_value_info("y", TensorProto.BOOL, [4])])
    result = check_tensorrt_readiness(path, "10.3")
    assert result and [(f.rule, f.node, f.input) for f in result.of("warning")] == [
        ("operator-type", "'eq'", "0 = 'x'")]
    assert "BOOL is not among the types operators.md lists for Equal" in result.of("warning")[0].message


def test_opset_above_the_parsers_range(tmp_path: Path) -> None:
    value = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])]
    out = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])]
    path = _save(tmp_path / "opset22.onnx", [helper.make_node("Relu", ["x"], ["y"], name="r")], value, out, opset=22)
    on_10_3 = check_tensorrt_readiness(path, "10.3")
    assert rules(on_10_3) == {"opset"} and "opset 22 is outside TensorRT 10.3's parser range 9..20" in \
        on_10_3.blockers[0].message
    assert check_tensorrt_readiness(path, "11")  # 11.1 parses opset 9..24


# ------------------------------------------------------------------------------------ Q/DQ rules


def qdq_conv(path: Path, **change: Any) -> Path:
    """x -Q/DQ (per-tensor)-> Conv(weights: int8 -> DequantizeLinear per channel, axis 0; float bias) -> y."""
    opts: dict[str, Any] = {"act_scale": np.array(0.02, np.float32), "act_zp": np.array(0, np.int8),
                            "w_scale": np.full(4, 0.01, np.float32), "w_zp": np.zeros(4, np.int8), "axis": 0,
                            "opset": 17, "computed_scale": False}
    opts.update(change)
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(opts["act_scale"], "s_a"), numpy_helper.from_array(opts["act_zp"], "zp_a"),
             numpy_helper.from_array(rng.integers(-127, 127, (4, 3, 3, 3)).astype(np.int8), "w_q"),
             numpy_helper.from_array(opts["w_scale"], "s_w"), numpy_helper.from_array(opts["w_zp"], "zp_w"),
             numpy_helper.from_array(np.zeros(4, np.float32), "bias")]
    nodes = []
    scale = "s_a"
    if opts["computed_scale"]:
        nodes.append(helper.make_node("Mul", ["s_a", "s_a"], ["s_a2"], name="square"))
        scale = "s_a2"
    act_axis = {"axis": 1} if opts["act_scale"].size > 1 else {}
    nodes += [helper.make_node("QuantizeLinear", ["x", scale, "zp_a"], ["x_q"], name="q_x", **act_axis),
              helper.make_node("DequantizeLinear", ["x_q", scale, "zp_a"], ["x_dq"], name="dq_x", **act_axis),
              helper.make_node("DequantizeLinear", ["w_q", "s_w", "zp_w"], ["w"], name="dq_w", axis=opts["axis"]),
              helper.make_node("Conv", ["x_dq", "w", "bias"], ["y"], name="conv", pads=[1, 1, 1, 1])]
    return _save(path, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits, opset=opts["opset"])


def test_well_formed_qdq_is_ready(tmp_path: Path) -> None:
    for version in ("10.3", "10.x", "11"):
        result = check_tensorrt_readiness(qdq_conv(tmp_path / "ok.onnx"), version)
        assert result.ready and not result.of("warning"), [f.sentence() for f in result.findings]
        assert result.qdq_nodes == 3


@pytest.mark.parametrize(("change", "rule", "node", "words"), [
    ({"act_zp": np.array(3, np.int8)}, "zero-point", "'q_x'", "must be all zeros (1 of 1 are not"),
    ({"act_zp": np.array(128, np.uint8)}, "quantized-type", "'q_x'", "UINT8"),
    ({"act_scale": np.full(3, 0.02, np.float32), "act_zp": np.zeros(3, np.int8)}, "per-axis-activation", "'q_x'",
     "Activations-quantization does not support per-axis quantization"),
    ({"w_scale": np.full(3, 0.01, np.float32), "w_zp": np.zeros(3, np.int8)}, "scale-shape", "'dq_w'",
     "Number of output channels = 4, number of scales = 3"),
    ({"w_scale": np.array([0.01, -0.01, 0.01, 0.01], np.float32)}, "scale-positive", "'dq_w'",
     "Scale coefficients must all be positive"),
    ({"act_scale": np.array(0.02, np.float16), "w_scale": np.full(4, 0.01, np.float16)}, "scale-type", "'q_x'",
     "FP16 scale needs opset 19"),
    ({"computed_scale": True}, "scale-constant", "'q_x'", "build-time constant"),
    ({"w_zp": np.zeros(2, np.int8)}, "scale-shape", "'dq_w'", "must have the same volume"),
])
def test_each_qdq_rule_names_node_input_and_rule(tmp_path: Path, change: dict[str, Any], rule: str, node: str,
                                                 words: str) -> None:
    result = check_tensorrt_readiness(qdq_conv(tmp_path / "m.onnx", **change), "10.3")
    found = [f for f in result.blockers if f.rule == rule]
    assert found and not result, [f.sentence() for f in result.findings]
    assert found[0].node == node and found[0].input and words in found[0].message, found[0].sentence()
    assert found[0].sentence().endswith(f"[{rule}]")


def test_fp16_scales_are_fine_from_opset_19(tmp_path: Path) -> None:
    path = qdq_conv(tmp_path / "fp16.onnx", act_scale=np.array(0.02, np.float16), w_scale=np.full(4, 0.01, np.float16),
                    opset=19)
    assert "scale-type" not in rules(check_tensorrt_readiness(path, "10.3"))


# ------------------------------------------------------------------------------------ targets, tables, CLI


def test_targets_resolve_to_the_tables_that_serve_them() -> None:
    assert [t.version for t in operator_tables()] == ["10.1", "10.16", "11.1"]
    assert (resolve_target("10.3").table.version, resolve_target("10.3").reason) == (
        "10.1", "the nearest published table at or below 10.3")
    assert resolve_target("10.x").table.version == "10.16" and resolve_target("10.x").name == "TensorRT 10.x (10.16)"
    assert resolve_target("11").table.version == "11.1" and resolve_target("11.1").reason == "its own table"
    assert resolve_target("10.16.1").table.version == "10.16"
    assert resolve_target("11.0").table.version == "11.1"  # no 11.0 table: the oldest 11.x one, said so
    for bad in ("9.3", "12", "ten", "10.x.1"):
        with pytest.raises(ConfigError, match="--tensorrt"):
            resolve_target(bad)


def test_tables_record_where_they_came_from() -> None:
    tables = {t.version: t for t in operator_tables()}
    assert {v: (t.opset_min, t.opset_max) for v, t in tables.items()} == {"10.1": (9, 20), "10.16": (9, 24),
                                                                          "11.1": (9, 24)}
    assert (len(tables["10.1"].operators), sum(r.supported for r in tables["10.1"].operators.values())) == (196, 150)
    for table in tables.values():
        assert len(table.source["commit"]) == 40 and table.source["branch"] and len(table.source["sha256"]) == 64
        assert (ROOT / table.source["saved_copy"]).is_file()
    assert tables["10.1"].source["branch"] == "10.1-GA"
    assert tables["11.1"].types_of("DequantizeLinear") == ("INT8", "FP8", "FP4", "INT4")
    # the recipe's opset ceiling is the lowest parser maximum shipped
    assert TENSORRT_MAX_OPSET == min(t.opset_max for t in tables.values())


def test_tables_regenerate_offline_from_the_saved_copies() -> None:
    run = subprocess.run([sys.executable, "scripts/tensorrt_operators.py", "--check"], capture_output=True,
                         text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("ok ") == 3


def test_cli_exit_codes_for_bad_input(tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(ModelFileError):
        check_tensorrt_readiness(broken, "10.3")
    run = trt_check(broken, "--tensorrt", "10.3")
    assert run.returncode == 3 and "not a valid ONNX model" in run.stderr
    run = trt_check(window_model(tmp_path / "w.onnx"), "--tensorrt", "9.3")
    assert run.returncode == 2 and "no operator table for TensorRT 9.x" in run.stderr


def test_cli_module_stays_light() -> None:
    code = "import sys, edgeopt.cli.tensorrt; print([m for m in ('numpy', 'onnx', 'onnxruntime') if m in sys.modules])"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0 and run.stdout.strip() == "[]", run.stdout + run.stderr
