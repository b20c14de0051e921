"""TensorRT logic that needs no GPU, on real objects: cache keys and manifests, build plans, shape profiles,
ORT GPU provider options, backend availability.  Tests that need TensorRT or a GPU are marked and skip."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgeopt.backends import availability, runner_for
from edgeopt.backends.onnxruntime_gpu import node_placements, probe_placements
from edgeopt.backends.tensorrt.engines import (
    BuildOptions,
    EngineCache,
    EngineDeserializeError,
    EngineIntegrityError,
    EngineKey,
    EngineMismatchError,
    InputShapeRange,
    read_verified_engine,
)
from edgeopt.backends.tensorrt.plan import ort_gpu_provider_options, plan_build, shape_profile, version_family
from edgeopt.errors import BackendUnavailableError, ConfigError, InputRejectedError
from edgeopt.profiles.schema import ShapeRange, TensorRtSettings, load_profile

ENGINE = b"\x00fake-serialized-engine-bytes\x01" * 64  # opaque bytes: the cache never interprets them


def key(**changes: Any) -> EngineKey:
    options = BuildOptions(precision="fp16", strongly_typed=False, flags=("FP16",), workspace_mb=1024,
                           builder_optimization_level=3,
                           shape_profile=(InputShapeRange("x", (1, 3, 8, 8), (4, 3, 8, 8), (8, 3, 8, 8)),))
    option_changes = {k[4:]: v for k, v in changes.items() if k.startswith("opt_")}
    base = EngineKey("a" * 64, "10.3.0", "Orin (nvgpu)", "8.7", dataclasses.replace(options, **option_changes))
    return dataclasses.replace(base, **{k: v for k, v in changes.items() if not k.startswith("opt_")})


def dynamic_model(path: Path) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "h", "w"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, "h", "w"])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu0")], "dyn", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def static_model(path: Path) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu0"), helper.make_node("Neg", ["r"], ["y"], name="neg0")]
    graph = helper.make_graph(nodes, "static", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


# ------------------------------------------------------------------------------------------ cache keys


def test_engine_key_changes_with_every_part() -> None:
    base = key().digest()
    variants = [key(onnx_sha256="b" * 64), key(tensorrt_version="10.3.1"), key(tensorrt_version="11.0.0"),
                key(gpu_name="NVIDIA L4"), key(compute_capability="8.9"), key(opt_precision="int8"),
                key(opt_strongly_typed=True), key(opt_flags=()), key(opt_workspace_mb=2048),
                key(opt_builder_optimization_level=5),
                key(opt_shape_profile=(InputShapeRange("x", (1, 3, 8, 8), (1, 3, 8, 8), (8, 3, 8, 8)),))]
    digests = [v.digest() for v in variants]
    assert base not in digests and len(set(digests)) == len(digests)
    assert key().digest() == base  # deterministic


def test_cache_hit_miss_and_invalidation_when_any_key_part_changes(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    assert cache.load(key()) is None  # miss
    cache.store(key(), ENGINE, {"build_seconds": 1.0})
    assert cache.load(key()) == ENGINE
    for other in (key(tensorrt_version="10.4.0"), key(gpu_name="Orin 2"), key(compute_capability="8.6"),
                  key(onnx_sha256="c" * 64), key(opt_workspace_mb=512)):
        assert cache.load(other) is None  # another version, GPU, model or option is a new build, never stale
    assert cache.invalidate(key()) and cache.load(key()) is None and not cache.invalidate(key())


def test_tampered_engine_is_refused_before_deserialising(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    path = cache.store(key(), ENGINE)
    calls: list[bytes] = []

    def deserialize(data: bytes) -> str:
        calls.append(data)
        return "engine"

    assert cache.open(key(), deserialize) == "engine" and calls == [ENGINE]
    calls.clear()
    path.write_bytes(ENGINE[:-1] + b"\x02")  # same size, one byte flipped
    with pytest.raises(EngineIntegrityError, match="SHA-256"):
        cache.open(key(), deserialize)
    path.write_bytes(ENGINE[: len(ENGINE) // 2])  # truncated
    with pytest.raises(EngineIntegrityError, match="truncated"):
        cache.open(key(), deserialize)
    assert calls == []  # TensorRT never saw the bad bytes
    assert issubclass(EngineIntegrityError, InputRejectedError) and EngineIntegrityError.exit_code == 3


def test_manifest_for_another_version_or_gpu_is_a_mismatch(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    path = cache.store(key(), ENGINE)
    manifest = path.with_name("manifest.json")
    with pytest.raises(EngineMismatchError, match="tensorrt_version.*10.3.0.*11.0.0"):
        read_verified_engine(path, manifest, key(tensorrt_version="11.0.0"))
    with pytest.raises(EngineMismatchError, match="gpu_name"):
        read_verified_engine(path, manifest, key(gpu_name="NVIDIA L4"))
    manifest.write_text("{not json", encoding="utf-8")
    with pytest.raises(EngineIntegrityError, match="unreadable"):
        read_verified_engine(path, manifest, key())


def test_null_engine_after_deserialisation_is_an_error(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    cache.store(key(), ENGINE)
    with pytest.raises(EngineDeserializeError, match="could not deserialise"):
        cache.open(key(), lambda data: None)


def test_prune_removes_engines_of_another_tensorrt_version(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    cache.store(key(), ENGINE)
    cache.store(key(tensorrt_version="10.4.0"), ENGINE)
    (tmp_path / "half-written").mkdir()  # no manifest: never committed
    removed = cache.prune(lambda k: k.get("tensorrt_version") == "10.4.0")
    assert len(removed) == 2
    assert cache.load(key(tensorrt_version="10.4.0")) == ENGINE and cache.load(key()) is None


def test_manifest_records_hash_and_key(tmp_path: Path) -> None:
    path = EngineCache(tmp_path).store(key(), ENGINE, {"build_seconds": 2.5})
    manifest = json.loads(path.with_name("manifest.json").read_text(encoding="utf-8"))
    assert manifest["size_bytes"] == len(ENGINE) and len(manifest["sha256"]) == 64
    assert manifest["key"] == key().to_dict() and manifest["build_seconds"] == 2.5


# ----------------------------------------------------------------------------------------- build plans


SETTINGS10 = TensorRtSettings(version_family=10, precisions=["fp32", "fp16", "int8"], workspace_mb=1024,
                              builder_optimization_level=4)
SETTINGS11 = TensorRtSettings(version_family=11, precisions=["fp32", "fp16", "int8"])


def test_profile_to_builder_settings_on_tensorrt_10() -> None:
    fp16 = plan_build(SETTINGS10, "fp32", "fp16", "10.3.0")
    assert fp16.flags == ("FP16",) and not fp16.strongly_typed  # 10.x: the FP16 builder flag
    assert fp16.workspace_mb == 1024 and fp16.builder_optimization_level == 4
    int8 = plan_build(SETTINGS10, "int8-static", "int8", "10.3.0")
    assert int8.flags == () and int8.strongly_typed  # explicit Q/DQ, no INT8 flag, no calibrator
    assert plan_build(SETTINGS10, "fp16", "fp16", "10.3.0").strongly_typed
    fp32 = plan_build(SETTINGS10, "fp32", "fp32", "10.3.0")
    assert fp32.flags == () and fp32.precision == "fp32"


def test_profile_to_builder_settings_on_tensorrt_11() -> None:
    assert plan_build(SETTINGS11, "fp16", "fp16", "11.1.0").strongly_typed
    assert plan_build(SETTINGS11, "int8-static", "int8", "11.1.0").flags == ()
    with pytest.raises(ConfigError, match="no FP16 builder flag"):
        plan_build(SETTINGS11, "fp32", "fp16", "11.1.0")
    with pytest.raises(ConfigError, match="expects TensorRT 11"):
        plan_build(SETTINGS11, "fp32", "fp32", "10.3.0")


def test_impossible_builds_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="Q/DQ"):
        plan_build(SETTINGS10, "fp32", "int8", "10.3.0")
    with pytest.raises(ConfigError, match="int8-dynamic"):
        plan_build(SETTINGS10, "int8-dynamic", "int8", "10.3.0")
    with pytest.raises(ConfigError, match="not in the profile"):
        plan_build(TensorRtSettings(version_family=10), "fp32", "fp16", "10.3.0")
    with pytest.raises(ConfigError, match="cannot give"):
        plan_build(SETTINGS10, "fp16", "fp32", "10.3.0")
    with pytest.raises(ConfigError, match="not supported"):
        version_family("8.6.1")


def test_shipped_profiles_carry_tensorrt_sections() -> None:
    nano, agx, l4 = (load_profile(n) for n in ("jetson-orin-nano-8gb", "jetson-agx-orin-64gb", "nvidia-l4-trt11"))
    assert nano.tensorrt and nano.tensorrt.version_family == 10 and nano.tensorrt.power_mode == "15W"
    assert agx.tensorrt and agx.tensorrt.version_family == 10 and agx.tensorrt.power_mode == "MAXN"
    assert l4.tensorrt and l4.tensorrt.version_family == 11 and l4.runtime.backend == "tensorrt"
    assert plan_build(nano.tensorrt, "fp32", "fp16", "10.3.0").workspace_mb == 1024


def test_shape_range_validation() -> None:
    with pytest.raises(ValueError, match="min <= opt <= max"):
        ShapeRange(min=[4, 3], opt=[2, 3], max=[8, 3])
    with pytest.raises(ValueError, match="same rank"):
        ShapeRange(min=[1], opt=[1, 3], max=[1, 3])


# -------------------------------------------------------------------------------------- shape profiles


def test_shape_profile_from_onnx_with_dynamic_axes(tmp_path: Path) -> None:
    model = dynamic_model(tmp_path / "dyn.onnx")
    settings = TensorRtSettings(version_family=10, shape_profile={
        "x": ShapeRange(min=[1, 3, 32, 32], opt=[4, 3, 224, 224], max=[8, 3, 640, 640])})
    (r,) = shape_profile(model, settings)
    assert (r.name, r.min, r.opt, r.max) == ("x", (1, 3, 32, 32), (4, 3, 224, 224), (8, 3, 640, 640))
    # without a declared range the timing input fixes the shape (min = opt = max)
    (t,) = shape_profile(model, TensorRtSettings(version_family=10), {"x": [2, 3, 64, 64]})
    assert t.min == t.opt == t.max == (2, 3, 64, 64)
    with pytest.raises(ConfigError, match=r"declare tensorrt.shape_profile.x"):
        shape_profile(model, TensorRtSettings(version_family=10))
    bad = TensorRtSettings(version_family=10, shape_profile={
        "x": ShapeRange(min=[1, 1, 8, 8], opt=[1, 1, 8, 8], max=[1, 1, 8, 8])})  # channel dim is 3
    with pytest.raises(ConfigError, match="does not fit"):
        shape_profile(model, bad)
    with pytest.raises(ConfigError, match="no inputs called"):
        shape_profile(model, TensorRtSettings(version_family=10, shape_profile={
            "image": ShapeRange(min=[1], opt=[1], max=[1])}))


def test_static_model_gets_fixed_profile(tmp_path: Path) -> None:
    (r,) = shape_profile(static_model(tmp_path / "s.onnx"), None)
    assert r.min == r.opt == r.max == (1, 4)


# ----------------------------------------------------------------------------- ONNX Runtime GPU options


def test_ort_tensorrt_provider_options_from_profile(tmp_path: Path) -> None:
    ranges = (InputShapeRange("x", (1, 3, 8, 8), (4, 3, 8, 8), (8, 3, 8, 8)),)
    pairs = ort_gpu_provider_options(["TensorrtExecutionProvider", "CUDAExecutionProvider"], SETTINGS10, "int8",
                                     tmp_path, ranges)
    trt_options = dict(pairs)["TensorrtExecutionProvider"]
    assert trt_options["trt_int8_enable"] and not trt_options["trt_fp16_enable"]
    assert trt_options["trt_max_workspace_size"] == 1024 * 2**20
    assert trt_options["trt_engine_cache_enable"] and str(tmp_path) in trt_options["trt_engine_cache_path"]
    assert trt_options["trt_profile_max_shapes"] == "x:8x3x8x8"
    assert dict(pairs)["CUDAExecutionProvider"] == {"device_id": 0}


def test_node_placements_from_a_real_profiling_trace(tmp_path: Path) -> None:
    model = static_model(tmp_path / "s.onnx")
    settings = {"intra_op_threads": 1, "graph_optimization_level": "disable"}
    placements = probe_placements(str(model), settings, [("CPUExecutionProvider", {})],
                                  {"x": np.ones((1, 4), np.float32)}, tmp_path)
    assert placements == {"relu0": "CPUExecutionProvider", "neg0": "CPUExecutionProvider"}
    assert not list(tmp_path.glob("ort-placement-*"))  # the trace is removed
    trace = tmp_path / "trace.json"  # the same reader on a TensorRT EP trace: fused nodes and CPU fallbacks
    trace.write_text(json.dumps([
        {"cat": "Node", "name": "TRTKernel_graph_main_0_kernel_time",
         "args": {"provider": "TensorrtExecutionProvider"}},
        {"cat": "Node", "name": "NonMaxSuppression_12_kernel_time", "args": {"provider": "CPUExecutionProvider"}},
        {"cat": "Session", "name": "model_run", "args": {}}]), encoding="utf-8")
    assert node_placements(trace) == {"TRTKernel_graph_main_0": "TensorrtExecutionProvider",
                                      "NonMaxSuppression_12": "CPUExecutionProvider"}


# --------------------------------------------------------------------------------------- availability


def test_tensorrt_stubs_alone_do_not_make_tensorrt_available() -> None:
    status = availability()
    spec = importlib.util.find_spec("tensorrt")
    if spec is not None and spec.origin is None:  # tensorrt-stubs installed, TensorRT not
        assert status["tensorrt"].startswith("unavailable: tensorrt is not installed (pip install edgeopt[tensorrt])")
    assert status["torch"] == "available"
    if "onnxruntime-gpu" in status and status["onnxruntime-gpu"] != "available":
        assert "pip install edgeopt[gpu]" in status["onnxruntime-gpu"]


def test_runner_for_unavailable_tensorrt_names_the_extra() -> None:
    if availability()["tensorrt"] == "available":
        pytest.skip("TensorRT is installed here")
    with pytest.raises(BackendUnavailableError, match=r"edgeopt\[tensorrt\]"):
        runner_for("tensorrt", "m.onnx", {})


# ----------------------------------------------------------------------------- needs TensorRT and a GPU


def _has_tensorrt_gpu() -> str | None:
    if availability()["tensorrt"] != "available":
        return "TensorRT (and cuda-python) not installed: pip install edgeopt[tensorrt]"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU on this machine"
    return None


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_tensorrt_engine_build_and_run(tmp_path: Path) -> None:
    reason = _has_tensorrt_gpu()
    if reason:
        pytest.skip(reason)
    model = static_model(tmp_path / "s.onnx")
    settings = {"precision": "fp32", "variant_kind": "fp32", "cache_dir": str(tmp_path / "cache"),
                "tensorrt": {"version_family": int(__import__("tensorrt").__version__.split(".")[0])}}
    with runner_for("tensorrt", str(model), settings) as runner:
        (out,) = runner.infer({"x": np.array([[1, -2, 3, -4]], np.float32)})
        np.testing.assert_allclose(out, [[-1, 0, -3, 0]])
        assert runner.details["engine_built"] and runner.details["engine_host_code_allowed"] is False
    with runner_for("tensorrt", str(model), settings) as runner:  # second time: from the verified cache
        assert not runner.details["engine_built"]


# ------------------------------------------------------------- what each backend owns: settings, cells, failures


def _profile(**runtime: Any) -> Any:
    from edgeopt.profiles.schema import HardwareProfile

    return HardwareProfile.model_validate({
        "name": "p", "description": "d", "identity": {"any_host": True},
        "runtime": {"intra_op_threads": 2, **runtime},
        "tensorrt": {"version_family": 10, "precisions": ["fp32", "fp16", "int8"]}})


def test_registry_names_are_the_profile_schemas_backend_names() -> None:
    from typing import get_args

    from edgeopt.backends import PROFILE_BACKENDS
    from edgeopt.profiles.schema import Runtime

    backend = get_args(Runtime.model_fields["backend"].annotation)  # profiles.schema.BackendName
    (listed,) = get_args(get_args(Runtime.model_fields["backends"].annotation)[0])  # list[BackendName] | None
    assert set(PROFILE_BACKENDS) == set(backend) == set(get_args(listed))
    assert set(PROFILE_BACKENDS) <= set(availability())


def test_session_settings_keep_the_job_keys_and_read_back_typed(tmp_path: Path) -> None:
    from edgeopt.backends import runner_for, settings_for
    from edgeopt.measure.launcher import session_settings

    profile = _profile()
    shapes = {"x": [1, 4]}
    expected = {
        "onnxruntime": {"backend": "onnxruntime", "execution_providers": ["CPUExecutionProvider"],
                        "intra_op_threads": 2, "inter_op_threads": 1, "graph_optimization_level": "all"},
        "openvino": {"backend": "openvino", "device": "CPU", "intra_op_threads": 2, "precision": "bf16",
                     "input_shapes": shapes, "pinning": True, "cache_dir": str(tmp_path)},
        "torch": {"backend": "torch", "device": "cpu", "precision": "bf16", "mode": "eager", "cuda_graphs": False,
                  "intra_op_threads": 2},
        "tensorrt": {"backend": "tensorrt", "precision": "bf16", "variant_kind": "int8-static",
                     "tensorrt": profile.tensorrt.model_dump(mode="json"), "input_shapes": shapes,
                     "cache_dir": str(tmp_path)},
    }
    for backend, document in expected.items():
        session = session_settings(profile, backend, "bf16", shapes, tmp_path, "int8-static")
        assert session == document, backend
        typed = settings_for(profile, backend, "bf16", input_shapes=shapes, cache_dir=tmp_path,
                             variant_kind="int8-static")
        assert type(typed).from_dict(session) == typed and typed.to_dict() == session
    runner = runner_for("onnxruntime", "m.onnx", {**expected["onnxruntime"], "unknown_key": 1})
    assert runner.settings.intra_op_threads == 2 and runner.settings.execution_providers == ["CPUExecutionProvider"]
    with pytest.raises(BackendUnavailableError, match="nonesuch"):
        settings_for(profile, "nonesuch")


def test_each_backend_offers_its_cells(tmp_path: Path) -> None:
    from edgeopt.backends import cells_for
    from edgeopt.models.variants import Variant

    def variant(name: str, kind: str, **recipe: str) -> Variant:
        return Variant(name=name, path=tmp_path / f"{name}.onnx", precision="fp32",
                       provenance={"recipe": {"kind": kind, **recipe}})

    variants = [variant("fp32", "fp32"), variant("fp16", "fp16"), variant("int8", "int8-static"),
                variant("int8-trt-qdq", "int8-static", target="tensorrt")]
    names = lambda cells: [(b, v.name, p) for b, v, p in cells]  # noqa: E731
    # the TensorRT-bound file gets no CPU time: its accuracy is emulated (edgeopt.measure.emulation)
    assert names(cells_for(_profile(), variants)) == [
        ("onnxruntime", n, None) for n in ("fp32", "fp16", "int8")]
    assert names(cells_for(_profile(backend="tensorrt"), variants)) == [  # ORT's own int8 file: not for TensorRT
        ("tensorrt", "fp32", "fp32"), ("tensorrt", "fp32", "fp16"), ("tensorrt", "int8-trt-qdq", "int8")]
    assert names(cells_for(_profile(backends=["torch"], native_precisions=["fp32", "fp16"]), variants,
                           "pkg.mod:make")) == [("torch", "fp32", "fp32"), ("torch", "fp32", "fp16")]
    assert cells_for(_profile(backends=["torch"]), variants) == []  # no factory reference: nothing to run


def test_backend_failures_are_in_the_hierarchy_with_their_kind() -> None:
    from edgeopt.backends.base import ProviderFallbackError, UnsupportedModelError
    from edgeopt.errors import EXIT_BACKEND_FAILURE, BackendError, failure_kind
    from edgeopt.measure.results import row_name

    for error, kind in ((UnsupportedModelError("op"), "unsupported"), (ProviderFallbackError("p"), "provider-fallback"),
                        (BackendError("b"), "backend"), (BackendUnavailableError("u"), "unavailable"),
                        (ValueError("v"), "backend")):
        assert failure_kind(error) == kind
    assert issubclass(UnsupportedModelError, BackendError) and issubclass(ProviderFallbackError, BackendError)
    assert UnsupportedModelError.exit_code == ProviderFallbackError.exit_code == EXIT_BACKEND_FAILURE
    assert row_name("fp32", "onnxruntime", None) == row_name("fp32", "onnxruntime-gpu", None) == "fp32"
    assert row_name("fp32", "openvino", "fp32") == "fp32@openvino-fp32"
