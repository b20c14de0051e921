"""Tests for edgeopt.models.quantize, recipes and variants, and edgeopt.models.ranges, on zoo models with real ONNX
Runtime quantizers."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, numpy_helper

from edgeopt.core.fileio import sha256_file
from edgeopt.errors import QuantizationError
from edgeopt.models.calibration import CalibrationSet
from edgeopt.models.export import compare_outputs
from edgeopt.models.quantize import make_variant, make_variants
from edgeopt.models.ranges import collect_tensor_stats, compute_ranges
from edgeopt.models.recipes import DEFAULT_VARIANTS, Recipe
from edgeopt.models.variants import Variant, VariantFailure, provenance_path
from tests import zoo

MakeCalibration = Callable[..., CalibrationSet]  # conftest: make_calibration(path, count=8, seed=0)


def run(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return list(ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).run(None, feeds))


def initializers(path: Path) -> dict[str, TensorProto]:
    return {init.name: init for init in onnx.load(str(path)).graph.initializer}


@pytest.fixture(scope="module")
def conv_calibration(conv_model: Path, make_calibration: MakeCalibration) -> CalibrationSet:
    return make_calibration(conv_model, count=8, seed=0)


@pytest.fixture(scope="module")
def conv_variants(
    conv_model: Path, conv_calibration: CalibrationSet, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Variant | VariantFailure]:
    out_dir = tmp_path_factory.mktemp("variants")
    results = make_variants(
        conv_model, [Recipe.parse(name) for name in DEFAULT_VARIANTS], out_dir, calibration=conv_calibration
    )
    return {result.name: result for result in results}


def produced(results: dict[str, Variant | VariantFailure], name: str) -> Variant:
    result = results[name]
    assert isinstance(result, Variant), f"{name} failed: {result}"
    return result


# ------------------------------------------------------------------------------------ the default set


@pytest.mark.aarch64
def test_every_default_variant_is_made_and_runs(
    conv_model: Path, conv_variants: dict[str, Variant | VariantFailure], conv_calibration: CalibrationSet
) -> None:
    assert list(conv_variants) == list(DEFAULT_VARIANTS)
    feeds = conv_calibration.samples[1]
    (reference,) = run(conv_model, feeds)
    for name in DEFAULT_VARIANTS:
        variant = produced(conv_variants, name)
        assert variant.path.name == f"{name}.onnx" and variant.path.is_file()
        assert provenance_path(variant.path).is_file()
        assert variant.sha256 == sha256_file(variant.path)
        (got,) = run(variant.path, feeds)
        assert got.shape == zoo.CONV_OUTPUT_SHAPE and got.dtype == np.float32
        parity = compare_outputs(name, reference, got)
        floor = 0.999 if name in ("fp32", "fp16") else zoo.int8_cosine_floor()
        assert parity.cosine > floor, f"{name}: cosine {parity.cosine:.4f} vs the fp32 source"


def test_precisions(conv_variants: dict[str, Variant | VariantFailure]) -> None:
    precisions = {name: produced(conv_variants, name).precision for name in DEFAULT_VARIANTS}
    assert precisions == {
        "fp32": "fp32",
        "fp16": "fp16",
        "int8-dynamic": "int8",
        "int8-static-minmax": "int8",
        "int8-static-entropy": "int8",
        "int8-static-percentile": "int8",
    }


def test_fp16_variant_stores_half_precision_weights(
    conv_variants: dict[str, Variant | VariantFailure],
) -> None:
    weights = initializers(produced(conv_variants, "fp16").path)
    assert weights["conv.weight"].data_type == TensorProto.FLOAT16


@pytest.mark.aarch64
def test_fp16_of_a_graph_whose_branches_repeat_an_initializer_name(tmp_path: Path) -> None:
    # ONNX Runtime's float16 converter asserts on an initializer name held by two subgraphs; edgeopt renames
    # them apart in their own scopes, and each branch still reads its own weights
    model = zoo.if_branch_initializers_model(tmp_path / "if.onnx")
    variant = make_variant(model, Recipe.parse("fp16"), tmp_path / "out")
    x = np.random.default_rng(0).standard_normal((1, 4)).astype(np.float32)
    for cond in (True, False):
        feeds = {"x": x, "cond": np.array(cond)}
        np.testing.assert_allclose(run(variant.path, feeds)[0], run(model, feeds)[0], rtol=1e-2, atol=1e-2)
    assert not np.allclose(run(variant.path, {"x": x, "cond": np.array(True)})[0],
                           run(variant.path, {"x": x, "cond": np.array(False)})[0])
    assert any("renamed apart" in note["reason"] for note in variant.provenance["excluded"])


def test_int8_says_what_stays_float_inside_subgraphs(tmp_path: Path, make_calibration: MakeCalibration) -> None:
    # ONNX Runtime's quantizer does not enter If branches: dynamic quantization (MatMul only) quantizes nothing,
    # and its output would be the float model under an INT8 name; static Q/DQ quantizes the outer Add only
    model = zoo.if_branch_initializers_model(tmp_path / "if.onnx")
    dynamic, static = make_variants(model, [Recipe.parse("int8-dynamic"), Recipe.parse("int8-static-minmax")],
                                    tmp_path / "out", calibration=make_calibration(model, count=4, seed=0))
    assert isinstance(dynamic, VariantFailure) and dynamic.not_applicable
    assert "nothing to quantize" in dynamic.message and "(MatMul x2) is inside If" in dynamic.message
    assert isinstance(static, Variant), static
    (note,) = [n for n in static.provenance["excluded"] if "subgraphs" in n["reason"]]
    assert note["nodes"] == "MatMul x2" and "left float" in note["reason"]


def test_int8_static_is_symmetric_int8_qdq_with_per_channel_weights(
    conv_variants: dict[str, Variant | VariantFailure],
) -> None:
    path = produced(conv_variants, "int8-static-minmax").path
    model = onnx.load(str(path))
    inits = initializers(path)
    ops = [node.op_type for node in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    zero_point_types: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            zero_point_types[node.input[2]] = inits[node.input[2]].data_type
    assert zero_point_types, "no Q/DQ node has a zero point"
    assert TensorProto.UINT8 not in zero_point_types.values(), "uint8 zero points: activations are not int8"
    activation_points = {n: t for n, t in zero_point_types.items() if "bias" not in n}
    assert set(activation_points.values()) == {TensorProto.INT8}
    for name in activation_points:  # symmetric: every zero point is 0
        assert not numpy_helper.to_array(inits[name]).any(), f"{name} is not 0"
    (weight_dq,) = [
        n
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0].startswith("conv.weight")
    ]
    assert inits[weight_dq.input[0]].data_type == TensorProto.INT8
    assert tuple(inits[weight_dq.input[1]].dims) == (8,), "conv weight scales are not per output channel"
    axis = next((attr.i for attr in weight_dq.attribute if attr.name == "axis"), 1)
    assert axis == 0


def test_entropy_ranges_differ_from_minmax(
    conv_model: Path, conv_calibration: CalibrationSet, tmp_path: Path
) -> None:
    stats = collect_tensor_stats(conv_model, conv_calibration.feeds(), tmp_path, histograms=True)
    minmax = compute_ranges(stats, "minmax")
    entropy = compute_ranges(stats, "entropy")
    assert minmax.keys() == entropy.keys() >= {"input", "conv_out", "relu_out", "output"}
    assert minmax["conv_out"] == (stats["conv_out"].minimum, stats["conv_out"].maximum)
    differing = [name for name in minmax if not np.allclose(minmax[name], entropy[name])]
    assert "conv_out" in differing, f"entropy equals minmax on every tensor: {entropy}"
    for name in differing:  # KL clipping only ever narrows a range
        assert minmax[name][0] <= entropy[name][0] <= entropy[name][1] <= minmax[name][1]


def test_entropy_variant_is_not_the_minmax_variant(
    conv_variants: dict[str, Variant | VariantFailure],
) -> None:
    minmax, entropy = (
        produced(conv_variants, "int8-static-minmax"),
        produced(conv_variants, "int8-static-entropy"),
    )
    assert minmax.sha256 != entropy.sha256
    scale_minmax = numpy_helper.to_array(initializers(minmax.path)["conv_out_scale"])
    scale_entropy = numpy_helper.to_array(initializers(entropy.path)["conv_out_scale"])
    assert float(scale_entropy) < float(scale_minmax)


# ------------------------------------------------------------------------------ reuse and provenance


@pytest.mark.aarch64
def test_remaking_a_variant_is_byte_identical(
    conv_model: Path,
    conv_variants: dict[str, Variant | VariantFailure],
    conv_calibration: CalibrationSet,
    tmp_path: Path,
) -> None:
    for name in ("fp16", "int8-dynamic", "int8-static-entropy"):
        again = make_variant(conv_model, Recipe.parse(name), tmp_path, calibration=conv_calibration)
        assert again.sha256 == sha256_file(again.path) == produced(conv_variants, name).sha256, name


def test_matching_provenance_reuses_the_file(
    conv_model: Path, conv_calibration: CalibrationSet, tmp_path: Path
) -> None:
    recipe = Recipe.parse("int8-static-minmax")
    first = make_variant(conv_model, recipe, tmp_path, calibration=conv_calibration)
    stamp = first.path.stat().st_mtime_ns
    again = make_variant(conv_model, recipe, tmp_path, calibration=conv_calibration)
    assert again.path == first.path and again.provenance == first.provenance
    assert first.path.stat().st_mtime_ns == stamp, "a matching variant was rewritten"
    other_data = CalibrationSet("other", "tests", conv_calibration.samples[:4])
    remade = make_variant(conv_model, recipe, tmp_path, calibration=other_data)
    assert remade.provenance["key"] != first.provenance["key"]
    assert remade.provenance["calibration"]["content_hash"] == other_data.content_hash


def test_provenance_records_parent_recipe_and_calibration(
    conv_model: Path, conv_variants: dict[str, Variant | VariantFailure], conv_calibration: CalibrationSet
) -> None:
    static = produced(conv_variants, "int8-static-percentile")
    document = Variant.load(static.path).provenance
    assert document == static.provenance
    assert document["parent"] == {"path": str(conv_model), "sha256": sha256_file(conv_model)}
    assert document["recipe"]["calibration_method"] == "percentile"
    assert document["calibration"]["content_hash"] == conv_calibration.content_hash
    assert document["calibration"]["count"] == conv_calibration.count == 8
    assert document["excluded"] == []
    assert document["size_bytes"] == static.path.stat().st_size
    assert set(document["versions"]) >= {"onnx", "onnxruntime", "numpy"}
    for name in ("fp32", "fp16", "int8-dynamic"):
        assert produced(conv_variants, name).provenance["calibration"] is None


# ---------------------------------------------------------------------------------- quantizer failures


@pytest.mark.aarch64
def test_nan_activation_names_the_variant_and_the_node(
    nan_model: Path, make_calibration: MakeCalibration, tmp_path: Path
) -> None:
    with pytest.raises(QuantizationError) as caught:
        make_variant(
            nan_model, Recipe.parse("int8-static-minmax"), tmp_path, calibration=make_calibration(nan_model)
        )
    message = str(caught.value)
    assert "'sqrt'" in message and "NaN" in message
    assert "int8-static-minmax" in message, f"the message does not name the variant: {message}"
    assert not (tmp_path / "int8-static-minmax.onnx").exists()


def test_unobserved_activation_names_the_variant_and_the_node(
    empty_tensor_model: Path, make_calibration: MakeCalibration, tmp_path: Path
) -> None:
    with pytest.raises(QuantizationError) as caught:
        make_variant(
            empty_tensor_model,
            Recipe.parse("int8-static-minmax"),
            tmp_path,
            calibration=make_calibration(empty_tensor_model),
        )
    message = str(caught.value)
    assert "int8-static-minmax" in message and "'slice_empty'" in message and "never observed" in message
    assert not (tmp_path / "int8-static-minmax.onnx").exists()


def test_make_variants_goes_on_after_a_failure(
    nan_model: Path, make_calibration: MakeCalibration, tmp_path: Path
) -> None:
    names = ["fp32", "int8-static-minmax", "fp16"]
    results = make_variants(
        nan_model, [Recipe.parse(n) for n in names], tmp_path, calibration=make_calibration(nan_model)
    )
    assert [r.name for r in results] == names
    fp32, failed, fp16 = results
    assert isinstance(fp32, Variant) and isinstance(fp16, Variant)
    assert isinstance(failed, VariantFailure)
    assert failed.exit_code == QuantizationError.exit_code
    assert "'sqrt'" in failed.message
    assert sorted(p.name for p in tmp_path.glob("*.onnx")) == ["fp16.onnx", "fp32.onnx"]


def test_huge_mask_is_excluded_with_a_reason(
    huge_mask_model: Path, make_calibration: MakeCalibration, tmp_path: Path
) -> None:
    calibration = make_calibration(huge_mask_model)
    variant = make_variant(
        huge_mask_model, Recipe.parse("int8-static-minmax"), tmp_path, calibration=calibration
    )
    excluded = variant.provenance["excluded"]
    (entry,) = [e for e in excluded if e["tensor"] == zoo.MASKED_TENSOR]
    assert zoo.MASK_NODE in entry["nodes"]
    assert "sentinel" in entry["reason"] and "3.4e+38" in entry["reason"]
    model = onnx.load(str(variant.path))
    quantized_inputs = {n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    assert zoo.MASKED_TENSOR not in quantized_inputs
    assert "matmul" in {n.name for n in model.graph.node}
    feeds = calibration.samples[0]
    (want,), (got,) = run(huge_mask_model, feeds), run(variant.path, feeds)
    assert compare_outputs("output", want, got).cosine > 0.98


def test_quantizing_leaves_nothing_in_the_working_directory(
    conv_model: Path,
    custom_op_model: Path,
    conv_calibration: CalibrationSet,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The custom-op model makes ORT's symbolic shape inference fail, which is what leaves
    ``sym_shape_infer_temp.onnx`` in the current directory when it is not contained."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "keep.txt").write_text("mine\n", encoding="utf-8")
    monkeypatch.chdir(cwd)
    before = sorted(os.listdir(cwd))
    out_dir = tmp_path / "out"
    failures = make_variants(custom_op_model, [Recipe.parse("fp16"), Recipe.parse("int8-dynamic")], out_dir)
    assert all(isinstance(result, VariantFailure) for result in failures)
    made = make_variants(
        conv_model, [Recipe.parse("fp16"), Recipe.parse("int8-static")], out_dir, calibration=conv_calibration
    )
    assert all(isinstance(result, Variant) for result in made), made
    assert sorted(os.listdir(cwd)) == before
    assert Path.cwd() == cwd
    scratch_left = [p.name for p in (out_dir / ".work").iterdir() if p.name.startswith(".scratch-")]
    assert scratch_left == []


def test_recipe_names_encode_every_option() -> None:
    from dataclasses import replace

    from edgeopt.errors import EXIT_USAGE, ConfigError
    from edgeopt.models.recipes import Recipe

    recipe = Recipe.parse("int8-static-entropy-pt-asym-rr-n64")
    assert (recipe.calibration_method, recipe.per_channel, recipe.activation_symmetric, recipe.reduce_range,
            recipe.calibration_samples) == ("entropy", False, False, True, 64)
    assert recipe.name == "int8-static-entropy-pt-asym-rr-n64"
    assert Recipe.parse(recipe.name) == recipe
    assert Recipe.parse("int8-static").name == "int8-static-minmax"
    excluded = replace(Recipe.parse("int8-static-minmax"), exclude_nodes=("b", "a"))
    assert excluded.name.startswith("int8-static-minmax-x2-")
    with pytest.raises(ConfigError, match="unknown option 'zz'") as raised:
        Recipe.parse("int8-static-minmax-zz")
    assert raised.value.exit_code == EXIT_USAGE  # a bad --variant is a usage error (exit 2)
    with pytest.raises(ConfigError, match="unknown variant 'bogus'; choose from fp32, fp16, int8-dynamic"):
        Recipe.parse("bogus")


def test_constant_weights_are_lifted_and_old_opsets_upgraded_for_per_channel(tmp_path: Path) -> None:
    """A paddle2onnx-style graph (weights as Constant nodes, opset 12) still gets a per-channel QDQ variant."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgeopt.models.calibration import CalibrationSet
    from edgeopt.models.quantize import lift_constants

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Constant", [], ["w"], value=weight, name="const_w"),
             helper.make_node("Conv", ["input", "w"], ["conv"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["conv"], ["output"], name="relu")]
    graph = helper.make_graph(nodes, "constant_weights",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4, 8, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)], ir_version=7)
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    assert lift_constants(copy) == 1
    assert [i.name for i in copy.graph.initializer] == ["w"]
    assert [n.op_type for n in copy.graph.node] == ["Conv", "Relu"]
    path = tmp_path / "constant_weights.onnx"
    onnx.save(model, str(path))
    samples = tuple({"input": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)} for _ in range(8))
    variant = make_variant(path, Recipe.parse("int8-static-minmax"), tmp_path / "out",
                           calibration=CalibrationSet("c", "test", samples))
    quantized = onnx.load(str(variant.path))
    opset = next(e.version for e in quantized.opset_import if e.domain in ("", "ai.onnx"))
    assert opset >= 13
    assert any(n.op_type == "DequantizeLinear" and any(a.name == "axis" for a in n.attribute)
               for n in quantized.graph.node)  # per-channel weights
    assert any("opset upgraded" in note["reason"] for note in variant.provenance["excluded"])


# ------------------------------------------------------------------------------------ the TensorRT-bound recipe


def test_tensorrt_recipe_names_and_options() -> None:
    from edgeopt.errors import ConfigError
    from edgeopt.models.recipes import TENSORRT_PURPOSE

    recipe = Recipe.parse("int8-trt-qdq")
    assert (recipe.kind, recipe.calibration_method, recipe.target, recipe.per_channel) == (
        "int8-static", "minmax", "tensorrt", True)
    assert recipe.name == "int8-trt-qdq" and recipe.tensorrt_bound and recipe.precision == "int8"
    assert recipe.purpose == TENSORRT_PURPOSE
    for name in ("int8-trt-qdq-entropy-n32", "int8-trt-qdq-pt", "int8-trt-qdq-percentile-pt-n8"):
        assert Recipe.parse(name).name == name
    assert Recipe.parse("int8-trt-qdq-minmax").name == "int8-trt-qdq"  # minmax is the default, not spelled
    with pytest.raises(ConfigError, match="symmetric INT8 only; -asym"):
        Recipe.parse("int8-trt-qdq-asym")
    with pytest.raises(ConfigError, match="unknown option 'zz'"):
        Recipe.parse("int8-trt-qdq-zz")
    with pytest.raises(ConfigError, match="symmetric INT8 Q/DQ only"):
        Recipe(kind="int8-static", calibration_method="minmax", activation_symmetric=False, target="tensorrt")
    # the CPU recipes' keys do not change: a default target stays out of to_dict
    assert "target" not in Recipe.parse("int8-static-minmax").to_dict()
    assert Recipe.parse("int8-static-minmax").purpose != TENSORRT_PURPOSE


def _zero_points_and_types(path: Path) -> tuple[list[np.ndarray], set[int]]:
    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    zero_points, dq_types = [], set()
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            zero_points.append(numpy_helper.to_array(inits[node.input[2]]))
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            dq_types.add(inits[node.input[0]].data_type)
    return zero_points, dq_types


def test_tensorrt_variant_follows_tensorrt_rules(
    conv_model: Path, conv_calibration: CalibrationSet, tmp_path: Path
) -> None:
    """Symmetric INT8, zero points 0, biases left float (QuantizeBias=False), only used domains, purpose recorded."""
    from edgeopt.models.recipes import TENSORRT_PURPOSE

    variant = make_variant(conv_model, Recipe.parse("int8-trt-qdq"), tmp_path, calibration=conv_calibration)
    assert variant.name == "int8-trt-qdq" and variant.path.name == "int8-trt-qdq.onnx"
    assert variant.provenance["purpose"] == TENSORRT_PURPOSE and variant.provenance["target"] == "tensorrt"
    model = onnx.load(str(variant.path))
    assert [(e.domain, e.version) for e in model.opset_import] == [("", zoo.OPSET)]
    zero_points, dq_types = _zero_points_and_types(variant.path)
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    assert dq_types == {TensorProto.INT8}  # int8 weights; no INT32 bias
    inits = initializers(variant.path)
    biases = [n.input[2] for n in model.graph.node if n.op_type in ("Conv", "Gemm")]
    assert biases and all(inits[b].data_type == TensorProto.FLOAT for b in biases)  # float biases, no DQ
    feeds = conv_calibration.samples[0]
    want = run(conv_model, feeds)[0]
    assert compare_outputs("output", want, run(variant.path, feeds)[0]).cosine > zoo.int8_cosine_floor()


def test_tensorrt_variant_converts_the_opset_into_every_parsers_range(tmp_path: Path) -> None:
    """Opset 12 (no per-axis Q/DQ) goes up to 13; opset 21 (above TensorRT 10.0/10.1's 20) comes down to 20."""
    from onnx import helper

    from edgeopt.models.quantize import TENSORRT_MAX_OPSET

    rng = np.random.default_rng(3)
    samples = tuple({"input": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)} for _ in range(4))
    for opset, expected in ((12, 13), (21, TENSORRT_MAX_OPSET)):
        weight = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
        nodes = [helper.make_node("Conv", ["input", "w"], ["conv"], pads=[1, 1, 1, 1], name="conv"),
                 helper.make_node("Relu", ["conv"], ["output"], name="relu")]
        graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
                                  [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4, 8, 8])], [weight])
        path = tmp_path / f"opset{opset}.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10), str(path))
        variant = make_variant(path, Recipe.parse("int8-trt-qdq"), tmp_path / f"out{opset}",
                               calibration=CalibrationSet("c", "test", samples))
        model = onnx.load(str(variant.path))
        assert next(e.version for e in model.opset_import if e.domain in ("", "ai.onnx")) == expected
        assert any(f"from {opset} to {expected}" in n["reason"] for n in variant.provenance["excluded"])


# ------------------------------------------------------------------------------------ external data


def test_variants_of_a_model_with_external_data_are_self_contained_and_follow_its_weights(tmp_path: Path) -> None:
    """Exporters write big weights beside the graph (``model.onnx`` + ``weights/...``): each variant is one file
    (ONNX Runtime's optimiser would leave the references dangling), remade when only the weights change."""
    from edgeopt.models.graph import external_data_files

    model = zoo.external_data_model(tmp_path / "model", "weights/w.bin")
    feeds = {"input": np.arange(4, dtype=np.float32).reshape(1, 4)}
    (reference,) = run(model, feeds)
    made = {name: make_variant(model, Recipe.parse(name), tmp_path / "variants") for name in ("fp32", "int8-dynamic")}
    for name, variant in made.items():
        assert external_data_files(variant.path) == [], name
        (got,) = run(variant.path, feeds)
        assert compare_outputs(name, reference, got).cosine > 0.99, name
    assert make_variant(model, Recipe.parse("fp32"), tmp_path / "variants").sha256 == made["fp32"].sha256
    weights = tmp_path / "model" / "weights" / "w.bin"
    weights.write_bytes(bytes(reversed(weights.read_bytes())))  # new weights, the same model.onnx
    remade = make_variant(model, Recipe.parse("fp32"), tmp_path / "variants")
    assert remade.provenance["parent"]["sha256"] != made["fp32"].provenance["parent"]["sha256"]
    assert remade.sha256 != made["fp32"].sha256


def test_a_skipped_pre_processing_is_said_in_words() -> None:
    from edgeopt.models.quantize import _preprocessing_skipped

    incomplete = Exception("Incomplete symbolic shape inference")  # what quant_pre_process raises on real models
    assert _preprocessing_skipped(incomplete) == ("shape inference incomplete (Incomplete symbolic shape inference): "
                                                  "ONNX Runtime's pre-processing skipped")
    assert _preprocessing_skipped(ValueError("bad graph")) == ("ONNX Runtime's pre-processing failed (bad graph) "
                                                              "and was skipped")


def test_scratch_folders_a_killed_run_left_are_removed_by_the_next(tmp_path: Path) -> None:
    model = zoo.identity_add(tmp_path / "add.onnx")
    left = tmp_path / "variants" / ".work" / ".scratch-killed"
    (left / "inner").mkdir(parents=True)
    (left / "inner" / "calibrate.onnx").write_bytes(b"half written")
    (made,) = make_variants(model, [Recipe.parse("fp32")], tmp_path / "variants")
    assert isinstance(made, Variant) and not left.exists()
    assert not list((tmp_path / "variants" / ".work").glob(".scratch-*"))


def _transformer(path: Path) -> Path:
    """A two-layer torch TransformerEncoder (attention: MatMul -> Softmax -> MatMul), exported to ONNX."""
    torch = pytest.importorskip("torch")
    from edgeopt.models.export import export_onnx

    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(d_model=32, nhead=2, dim_feedforward=64, batch_first=True,
                                             dropout=0.0)
    model = torch.nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False).eval()
    return export_onnx(model, ["src:1x8x32"], path, exporter="torchscript").path


def test_recipe_options_name_round_trip() -> None:
    for name in ("int8-dynamic", "int8-dynamic-pc", "int8-dynamic-pc-rr-matmul", "int8-static-minmax-matmul",
                 "int8-static-entropy-pt-asym-n8-matmul"):
        assert Recipe.parse(name).name == name
    assert Recipe.parse("int8-dynamic-pc-matmul").op_types == ("MatMul",)
    assert "op_types" not in Recipe.parse("int8-dynamic").to_dict()  # keys of variants made before stay the same
    with pytest.raises(Exception, match="int8-dynamic options: pc per-channel weights, rr reduce_range, matmul"):
        Recipe.parse("int8-dynamic-gemm")


def test_a_transformers_int8_dynamic_is_made_matmul_only_per_channel(tmp_path: Path) -> None:
    """ONNX Runtime's default int8-dynamic on a transformer quantizes every op per tensor (MiniLM: cosine 0.972);
    edgeopt makes the plain int8-dynamic of a graph with attention as -pc-matmul and says so."""
    from edgeopt.models.model_kind import attention_softmaxes

    model = _transformer(tmp_path / "encoder.onnx")
    assert len(attention_softmaxes(onnx.load(str(model)).graph)) == 2
    made = make_variant(model, Recipe.parse("int8-dynamic"), tmp_path / "variants")
    assert made.name == "int8-dynamic" and made.path.name == "int8-dynamic.onnx"
    assert made.provenance["recipe"]["op_types"] == ["MatMul"] and made.provenance["recipe"]["per_channel"]
    assert "transformer (2 attention Softmax node(s)" in made.provenance["model_kind"]
    quantized = {n.op_type for n in onnx.load(str(made.path)).graph.node} - {
        n.op_type for n in onnx.load(str(model)).graph.node}
    assert quantized and quantized <= {"DynamicQuantizeLinear", "MatMulInteger", "Cast", "Mul", "Add",
                                       "DynamicQuantizeMatMul"}, quantized
    cnn = make_variant(zoo.tiny_conv_model(tmp_path / "conv.onnx"), Recipe.parse("int8-dynamic"), tmp_path / "v2")
    assert cnn.provenance["model_kind"] is None and "op_types" not in cnn.provenance["recipe"]


def test_float_ends_keep_the_first_and_last_compute_node_in_float(tmp_path: Path,
                                                                   make_calibration: MakeCalibration) -> None:
    model = zoo.tiny_conv_model(tmp_path / "conv.onnx")
    compute = [n.name for n in onnx.load(str(model)).graph.node if n.op_type in ("Conv", "MatMul", "Gemm")]
    made = make_variant(model, Recipe.parse("int8-static-minmax-fl"), tmp_path / "v",
                        calibration=make_calibration(model))
    assert made.name == "int8-static-minmax-fl" and made.provenance["recipe"]["float_ends"]
    kept = {e["nodes"] for e in made.provenance["excluded"] if "(-fl)" in e["reason"]}
    assert kept == {compute[0], compute[-1]}
    graph = onnx.load(str(made.path)).graph
    weights = {n.input[1] for n in graph.node if n.name in kept}
    assert weights and weights <= {i.name for i in graph.initializer}  # both read float weights, never int8 ones
