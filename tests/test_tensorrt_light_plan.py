"""The TensorRT build planning the worker runs without onnx or pydantic (``edgeopt.backends.tensorrt.plan``).

``graph_inputs`` reads an ONNX file's graph inputs from its protobuf bytes: it must give what
``edgeopt.models.graph.input_specs`` gives through onnx, on edge cases built here and on every model of onnx's own
backend test data; a file that is not ONNX is a clear ``ModelFileError``.  ``TensorRtSection`` (the profile's
``tensorrt`` section as the job carries it) must read back what the pydantic ``TensorRtSettings`` holds, defaults
included, and plan the same build.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeopt.backends.tensorrt.plan import graph_inputs, plan_build, shape_profile
from edgeopt.backends.tensorrt.settings import ShapeBounds, TensorRtSection
from edgeopt.errors import ConfigError, ModelFileError
from edgeopt.models.graph import input_specs
from edgeopt.profiles.schema import ShapeRange, TensorRtSettings
from tests import zoo

BACKEND_TEST_DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"


def through_onnx(path: Path) -> dict[str, tuple[int | str, ...]]:
    return {spec.name: tuple(spec.shape) for spec in input_specs(onnx.load(str(path), load_external_data=False))}


def edge_cases(folder: Path) -> list[Path]:
    """Inputs with symbolic, unknown, zero, negative and huge dims; an initializer listed as an input (IR 3);
    a scalar; weights in external data (never opened)."""
    weight = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    dims = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", None, 3, 0, 2**40])  # None: nothing set
    negative = helper.make_tensor_value_info("n", TensorProto.FLOAT, [1, 4])
    negative.type.tensor_type.shape.dim[0].dim_value = -1
    scalar = helper.make_tensor_value_info("rate", TensorProto.INT64, [])
    listed_weight = helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 4])
    nodes = [helper.make_node("Identity", [name], [f"{name}_out"], name=name) for name in ("x", "n", "rate")]
    outputs = [helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, None) for name in ("x", "n", "rate")]
    graph = helper.make_graph(nodes, "edges", [dims, negative, scalar, listed_weight], outputs, [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(folder / "edges.onnx"))
    return [folder / "edges.onnx", zoo.tiny_conv_model(folder / "conv.onnx"),
            zoo.token_embedding_model(folder / "tokens.onnx"), zoo.dynamic_conv_model(folder / "dynamic.onnx"),
            zoo.if_branch_initializers_model(folder / "if.onnx"),
            zoo.external_data_model(folder / "external", "w.bin", write_data=False)]


def test_graph_inputs_read_what_onnx_reads_on_edge_cases(tmp_path: Path) -> None:
    for path in edge_cases(tmp_path):
        assert graph_inputs(path) == through_onnx(path), path.name
    assert graph_inputs(tmp_path / "edges.onnx") == {"x": ("batch", "?", 3, "?", 2**40), "n": ("?", 4),
                                                     "rate": ()}


def test_graph_inputs_read_what_onnx_reads_on_onnxs_backend_test_models() -> None:
    paths = sorted(BACKEND_TEST_DATA.rglob("*.onnx"))
    if not paths:
        pytest.skip(f"no ONNX files under {BACKEND_TEST_DATA} (this onnx wheel ships no backend test data)")
    differing = [str(path.relative_to(BACKEND_TEST_DATA)) for path in paths if graph_inputs(path) != through_onnx(path)]
    assert differing == [], f"{len(differing)} of {len(paths)} differ"


def test_a_file_that_is_not_onnx_is_a_model_file_error(tmp_path: Path) -> None:
    model = zoo.tiny_conv_model(tmp_path / "conv.onnx").read_bytes()
    cases = {"empty.onnx": (b"", "is empty"), "truncated.onnx": (model[: len(model) // 2], "truncated"),
             "readme.onnx": (b"# a README, not a model\n", "not an ONNX model: protobuf wire type"),
             "lfs.onnx": (b"version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 9\n", "not an ONNX model")}
    for name, (data, said) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ModelFileError, match=f"{name} .*{said}"):
            graph_inputs(tmp_path / name)


def test_the_jobs_section_reads_back_the_profiles_settings() -> None:
    partial = TensorRtSettings(version_family=10)  # a section given in part: the same defaults on both sides
    assert dataclasses.asdict(TensorRtSection.from_dict({"version_family": 10})) == {
        name: tuple(value) if isinstance(value, list) else value
        for name, value in partial.model_dump(include={f.name for f in dataclasses.fields(TensorRtSection)}).items()}
    full = TensorRtSettings(version_family=11, version="11.1", precisions=["fp32", "fp16"], workspace_mb=512.0,
                            builder_optimization_level=5, timing_cache=False, power_mode="MAXN",
                            shape_profile={"x": ShapeRange(min=[1, 3], opt=[4, 3], max=[8, 3])})
    section = TensorRtSection.from_dict(full.model_dump(mode="json"))  # what the worker's job carries
    assert section == TensorRtSection(version_family=11, precisions=("fp32", "fp16"), workspace_mb=512.0,
                                      builder_optimization_level=5, timing_cache=False, power_mode="MAXN",
                                      shape_profile={"x": ShapeBounds((1, 3), (4, 3), (8, 3))})
    assert plan_build(section, "fp16", "fp16", "11.1.0") == plan_build(full, "fp16", "fp16", "11.1.0")


def test_both_sections_plan_the_same_shape_profile_and_refuse_the_same(tmp_path: Path) -> None:
    model = zoo.dynamic_conv_model(tmp_path / "dynamic.onnx")
    ((name, dims),) = graph_inputs(model).items()
    low, high = [1 if isinstance(d, str) else d for d in dims], [2 if isinstance(d, str) else d for d in dims]
    profile = TensorRtSettings(version_family=10, shape_profile={name: ShapeRange(min=low, opt=low, max=high)})
    section = TensorRtSection.from_dict(profile.model_dump(mode="json"))
    assert shape_profile(model, section) == shape_profile(model, profile)
    wrong = {"version_family": 10, "shape_profile": {name: {"min": [1], "opt": [1], "max": [1]}}}
    messages = []
    for settings in (TensorRtSection.from_dict(wrong), TensorRtSettings.model_validate(wrong)):
        with pytest.raises(ConfigError) as raised:
            shape_profile(model, settings)
        messages.append(str(raised.value))
    assert messages[0] == messages[1] and "does not fit the model's input shape" in messages[0]
