"""TensorRT backend: engine build from an ONNX variant (cached, verified) and a runner with CUDA-event timing.

NOT VERIFIED ON HARDWARE.  This module was written against the TensorRT 10.x/11.x Python API
documentation and type-checked with ``tensorrt-stubs`` (mypy); no line of it has run with TensorRT on
a GPU yet.  The logic that needs no GPU (build plans, shape profiles, cache keys, manifests) lives in
``edgeopt.backends.tensorrt.plan`` and ``edgeopt.backends.tensorrt.engines`` and is tested on CPU.

Build: ``OnnxParser`` → network (strongly typed unless a 10.x FP16 builder-flag build) → builder config
(workspace pool limit, builder optimisation level, one optimisation profile, timing cache) →
``build_serialized_network``.  A parser failure names the node and operator (``UnsupportedModelError``);
a build that returns nothing (e.g. out of workspace or device memory) is an ``EngineBuildError`` with
TensorRT's own error lines.  Engines are cached under ``settings.cache_dir`` keyed by ONNX hash,
TensorRT version, GPU name and compute capability, and build options; the bytes are checked against
their manifest's SHA-256 before ``deserialize_cuda_engine`` sees them.  ``engine_host_code_allowed`` is
left False, and a None engine is an ``EngineDeserializeError``.

Run: device and pinned host buffers are owned by the runner through ``cuda-python`` (``cudaMalloc``,
``cudaMallocHost``; no pycuda, no torch in the worker, and no onnx or pydantic either: the build is planned
from the job's plain ``TensorRtSection`` and the ONNX file's bytes, ``edgeopt.backends.tensorrt.plan``).
The timed call is H2D copies → ``execute_async_v3`` → D2H copies → stream synchronise; CUDA events between
the phases give H2D, compute and D2H device times per call (``runtime_details['phase_samples_ms']``), and the
worker's host wall clock around the call gives end-to-end.  GPU memory: the engine's device memory size, and the
device-wide used memory before and after loading (``cudaMemGetInfo``; other processes count too).
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tensorrt as trt

from edgeopt.backends.base import Feeds, Runner
from edgeopt.backends.tensorrt.engines import BuildOptions, EngineCache, EngineDeserializeError, EngineKey
from edgeopt.backends.tensorrt.plan import plan_build, shape_profile
from edgeopt.backends.tensorrt.settings import TensorRtRunSettings, TensorRtSection
from edgeopt.core.fileio import sha256_file
from edgeopt.errors import BackendError, UnsupportedModelError

try:  # cuda-python >= 12.6 moved the runtime bindings; older releases expose cuda.cudart
    from cuda.bindings import runtime as cudart
except ImportError:  # pragma: no cover - depends on the installed cuda-python
    from cuda import cudart


class EngineBuildError(BackendError):
    """TensorRT could not build an engine (out of workspace or memory, unsupported configuration, ...)."""


class CudaError(BackendError):
    """A CUDA runtime call failed."""


def _check(result: Any) -> Any:
    """cuda-python returns (error, *values); raise on an error, return the value(s)."""
    error, *values = result if isinstance(result, tuple) else (result,)
    if int(error) != 0:
        _, name = cudart.cudaGetErrorName(error)
        raise CudaError(f"CUDA error {int(error)} ({name.decode() if isinstance(name, bytes) else name})")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


class _Log(trt.ILogger):
    """Keeps TensorRT's warnings and errors so that failures can quote them."""

    def __init__(self) -> None:
        trt.ILogger.__init__(self)
        self.lines: list[str] = []

    def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
        if severity <= trt.ILogger.Severity.WARNING:
            self.lines.append(f"{severity.name}: {msg}")

    def errors(self, limit: int = 5) -> str:
        bad = [line for line in self.lines if not line.startswith("WARNING")]
        return " | ".join((bad or self.lines)[-limit:]) or "no message from TensorRT"


def gpu_identity() -> tuple[str, str]:
    """(GPU name, compute capability 'major.minor') of device 0."""
    props = _check(cudart.cudaGetDeviceProperties(0))
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    return name.strip("\x00 "), f"{props.major}.{props.minor}"


def build_engine(onnx_path: str, options: BuildOptions, log: _Log, timing_cache_path: Path | None = None) -> bytes:
    """A serialized engine for ``onnx_path`` with ``options``; the timing cache is read and written back."""
    builder = trt.Builder(log)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if options.strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, log)
    if not parser.parse_from_file(onnx_path):
        problems = []
        for index in range(parser.num_errors):
            error = parser.get_error(index)
            problems.append(f"node '{error.node_name()}' ({error.node_operator()}): {error.desc()}")
        raise UnsupportedModelError("TensorRT cannot parse the model: " + "; ".join(problems or [log.errors()]))
    config = builder.create_builder_config()
    if options.workspace_mb is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_mb * 2**20))
    config.builder_optimization_level = options.builder_optimization_level
    for flag in options.flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))  # only FP16, only on 10.x (plan_build)
    if options.shape_profile:
        profile = builder.create_optimization_profile()
        for r in options.shape_profile:
            profile.set_shape(r.name, trt.Dims(list(r.min)), trt.Dims(list(r.opt)), trt.Dims(list(r.max)))
        config.add_optimization_profile(profile)
    if timing_cache_path is not None:
        previous = timing_cache_path.read_bytes() if timing_cache_path.is_file() else b""
        cache = config.create_timing_cache(previous)
        config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT built no engine for {Path(onnx_path).name} ({options.precision}, "
                               f"workspace {options.workspace_mb} MB): {log.errors()}")
    if timing_cache_path is not None:
        timing_cache_path.parent.mkdir(parents=True, exist_ok=True)
        timing_cache_path.write_bytes(bytes(memoryview(config.get_timing_cache().serialize())))
    return bytes(memoryview(serialized))


def _device_used_bytes() -> int:
    free, total = _check(cudart.cudaMemGetInfo())
    return int(total) - int(free)


class TensorRtRunner(Runner[TensorRtRunSettings]):
    """Settings (``TensorRtRunSettings``): ``precision``, ``variant_kind``, ``tensorrt`` (the profile section as
    a dict), ``cache_dir``, ``input_shapes`` (the timing inputs' shapes)."""

    backend = "tensorrt"
    settings_type = TensorRtRunSettings

    def _activate(self) -> None:
        self._log = _Log()
        self._buffers: list[int] = []
        self._host: list[int] = []
        _check(cudart.cudaSetDevice(0))
        _check(cudart.cudaFree(0))  # create the context first, so that the memory delta is the model's
        used_before = _device_used_bytes()
        settings = TensorRtSection.from_dict(self.settings.tensorrt)  # validated in the parent: no pydantic here
        gpu_name, capability = gpu_identity()
        ranges = shape_profile(Path(self.model_path), settings, self.settings.input_shapes)
        options = plan_build(settings, self.settings.variant_kind, self.settings.precision, trt.__version__, ranges)
        key = EngineKey(sha256_file(Path(self.model_path)), trt.__version__, gpu_name, capability, options)
        if not self.settings.cache_dir:
            raise ValueError("tensorrt: the settings name no cache_dir for engines and timing caches")
        cache_dir = Path(self.settings.cache_dir)
        cache = EngineCache(cache_dir / "tensorrt-engines")
        self._runtime = trt.Runtime(self._log)
        self._runtime.engine_host_code_allowed = False  # never run host code shipped inside an engine file
        started = time.perf_counter()
        engine = cache.open(key, self._runtime.deserialize_cuda_engine)
        built = engine is None
        if engine is None:
            timing = cache_dir / f"timing-{trt.__version__}-{capability}.cache" if settings.timing_cache else None
            data = build_engine(self.model_path, options, self._log, timing)
            build_s = time.perf_counter() - started
            cache.store(key, data, {"build_seconds": round(build_s, 3)})
            engine = cache.open(key, self._runtime.deserialize_cuda_engine)  # what runs is what was verified
            if engine is None:
                raise EngineDeserializeError("the engine just built and stored is missing from the cache")
        load_s = time.perf_counter() - started
        self._engine = engine
        self._context = engine.create_execution_context()
        if self._context is None:
            raise BackendError(f"TensorRT could not create an execution context: {self._log.errors()}")
        shapes = {r.name: r.opt for r in ranges}
        shapes.update({k: tuple(v) for k, v in self.settings.input_shapes.items()})
        self._stream = _check(cudart.cudaStreamCreate())
        self._events = [_check(cudart.cudaEventCreate()) for _ in range(4)]
        self._io: list[tuple[str, bool, np.dtype[Any], tuple[int, ...], int, int]] = []
        self.inputs = {}
        self.output_names = []
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        for name in names:
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT and not self._context.set_input_shape(
                    name, trt.Dims(list(shapes[name]))):
                raise BackendError(f"input '{name}': shape {shapes[name]} is outside the engine's profile")
        for name in names:
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            dims = self._context.get_tensor_shape(name)
            shape = tuple(int(dims[i]) for i in range(len(dims)))
            nbytes = max(1, int(np.prod(shape)) * dtype.itemsize)
            device = int(_check(cudart.cudaMalloc(nbytes)))
            self._buffers.append(device)
            host = int(_check(cudart.cudaMallocHost(nbytes)))
            self._host.append(host)
            if not self._context.set_tensor_address(name, device):
                raise BackendError(f"TensorRT refused the device address of tensor '{name}'")
            self._io.append((name, is_input, dtype, shape, device, host))
            if is_input:
                self.inputs[name] = (shape, str(dtype))
            else:
                self.output_names.append(name)
        used_after = _device_used_bytes()
        # device_memory_size_v2 since 10.1; 11.x removed the older attribute, which 10.0 alone has
        engine_memory: int = engine.device_memory_size_v2 if hasattr(engine, "device_memory_size_v2") else int(
            getattr(engine, "device_memory_size", 0))
        self._phases: dict[str, list[float]] = {"h2d": [], "compute": [], "d2h": []}
        self.details = {
            "gpu": gpu_name, "compute_capability": capability, "precision": options.precision,
            "build_options": options.to_dict(), "engine_key": key.digest(), "engine_built": built,
            "engine_cache": str(cache.entry(key)), "engine_load_seconds": round(load_s, 4),
            "engine_host_code_allowed": False, "power_mode_assumed": settings.power_mode,
            "gpu_memory": {"engine_device_memory_mb": int(engine_memory) / 2**20,
                           "device_used_before_mb": used_before / 2**20,
                           "device_used_after_load_mb": used_after / 2**20,
                           "device_used_delta_mb": (used_after - used_before) / 2**20,
                           "method": "cudaMemGetInfo before/after loading (device-wide: other processes count)"},
            "phase_samples_ms": self._phases,
            "timing": "host wall clock around H2D + execute_async_v3 + D2H + stream sync (end-to-end); "
                      "CUDA events between the phases (phase_samples_ms)",
            "versions": {"tensorrt": trt.__version__},
        }

    def _stage(self, feeds: Feeds) -> None:
        for name, is_input, dtype, _shape, _, host in self._io:
            if is_input:
                value = np.require(feeds[name], dtype=dtype, requirements="C")  # a scalar stays rank 0
                ctypes.memmove(host, value.ctypes.data, value.nbytes)

    def _run_once(self) -> None:
        stream, (e0, e1, e2, e3) = self._stream, self._events
        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        cudart.cudaEventRecord(e0, stream)
        for _, is_input, dtype, shape, device, host in self._io:
            if is_input:
                cudart.cudaMemcpyAsync(device, host, max(1, int(np.prod(shape)) * dtype.itemsize), h2d, stream)
        cudart.cudaEventRecord(e1, stream)
        if not self._context.execute_async_v3(int(stream)):
            raise BackendError(f"execute_async_v3 failed: {self._log.errors()}")
        cudart.cudaEventRecord(e2, stream)
        for _, is_input, dtype, shape, device, host in self._io:
            if not is_input:
                cudart.cudaMemcpyAsync(host, device, max(1, int(np.prod(shape)) * dtype.itemsize), d2h, stream)
        cudart.cudaEventRecord(e3, stream)
        _check(cudart.cudaStreamSynchronize(stream))
        self._phases["h2d"].append(float(_check(cudart.cudaEventElapsedTime(e0, e1))))
        self._phases["compute"].append(float(_check(cudart.cudaEventElapsedTime(e1, e2))))
        self._phases["d2h"].append(float(_check(cudart.cudaEventElapsedTime(e2, e3))))

    def timed_call(self, feeds: Feeds) -> Callable[[], Any]:
        self._stage(feeds)  # into pinned host buffers, before the loop
        return self._run_once

    def _infer(self, feeds: Feeds) -> list[np.ndarray]:
        self._stage(feeds)
        self._run_once()
        outputs = []
        for _, is_input, dtype, shape, _, host in self._io:
            if not is_input:
                count = int(np.prod(shape))
                raw = ctypes.string_at(host, max(1, count * dtype.itemsize))
                outputs.append(np.frombuffer(raw, dtype=dtype, count=count).reshape(shape).copy())
        return outputs

    def _deactivate(self) -> None:
        for event in getattr(self, "_events", []):
            cudart.cudaEventDestroy(event)
        if hasattr(self, "_stream"):
            cudart.cudaStreamDestroy(self._stream)
        for device in self._buffers:
            cudart.cudaFree(device)
        for host in self._host:
            cudart.cudaFreeHost(host)
        self._buffers, self._host = [], []
        for name in ("_context", "_engine", "_runtime"):
            if hasattr(self, name):
                delattr(self, name)
