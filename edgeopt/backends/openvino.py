"""OpenVINO runner: reads the same ONNX variants, latency-oriented CPU settings, explicit inference precision.

OpenVINO on a CPU with BF16 runs BF16 by default, so the precision is always set explicitly and
the precision the compiled model really uses is read back and recorded.  A dynamic model is
reshaped to the static input shapes of the timing inputs before compiling.  Compile time and the
model cache directory are recorded.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import openvino as ov
import openvino.properties as props
import openvino.properties.hint as hints

from edgeopt.backends.base import Feeds, Runner
from edgeopt.backends.openvino_settings import OpenVinoSettings, device_precisions
from edgeopt.errors import UnsupportedModelError

__all__ = ["OpenVinoRunner", "device_precisions", "first_meaningful_line"]

# edgeopt's precision names → OpenVINO's inference precision hint
PRECISIONS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}


_BOILERPLATE = ("exception from ", "check '", "frontend api failed", "model wasn't fully converted", "summary:")
_MEANINGFUL = ("no conversion rule", "operation", "node", "not supported", "unsupported", "op ")


def first_meaningful_line(error: BaseException) -> str:
    """The converter's first line that names an operator or node (skipping its boilerplate)."""
    lines = [line.strip(" -\t") for line in str(error).splitlines()]
    lines = [line for line in lines if line and not line.lower().startswith(_BOILERPLATE)]
    for line in lines:
        if any(word in line.lower() for word in _MEANINGFUL):
            return line[:400]
    return (lines[0] if lines else type(error).__name__)[:400]


class OpenVinoRunner(Runner[OpenVinoSettings]):
    backend = "openvino"
    settings_type = OpenVinoSettings

    def _activate(self) -> None:
        precision = self.settings.precision
        if precision not in PRECISIONS:
            raise ValueError(f"openvino: precision '{precision}' is not one of {sorted(PRECISIONS)}")
        device = self.settings.device
        core = ov.Core()
        started = time.perf_counter()
        try:
            model = core.read_model(self.model_path)
        except RuntimeError as error:
            raise UnsupportedModelError(f"OpenVINO cannot convert the model: {first_meaningful_line(error)}") from error
        shapes = self.settings.input_shapes
        if any(not inp.get_partial_shape().is_static for inp in model.inputs):
            if not shapes:
                raise ValueError("openvino: the model has dynamic inputs and no static input shapes were given")
            model.reshape({name: ov.PartialShape(list(shape)) for name, shape in shapes.items()})
        read_s = time.perf_counter() - started
        config: dict[str, Any] = {
            hints.performance_mode(): hints.PerformanceMode.LATENCY,
            props.num_streams(): 1,
            props.inference_num_threads(): int(self.settings.intra_op_threads),
            hints.enable_cpu_pinning(): bool(self.settings.pinning),
            hints.inference_precision(): PRECISIONS[precision],
        }
        if self.settings.cache_dir:
            config[props.cache_dir()] = str(self.settings.cache_dir)
        started = time.perf_counter()
        try:
            self.compiled = core.compile_model(model, device, config)
        except RuntimeError as error:
            raise UnsupportedModelError(f"OpenVINO cannot compile the model: {first_meaningful_line(error)}") from error
        compile_s = time.perf_counter() - started
        self.request = self.compiled.create_infer_request()
        self.inputs = {
            inp.get_any_name(): (tuple(int(d) for d in inp.get_shape()),
                                 str(np.dtype(inp.get_element_type().to_dtype())))
            for inp in self.compiled.inputs
        }
        self.output_names = [out.get_any_name() for out in self.compiled.outputs]
        self.details = {
            "device": device,
            "device_name": core.get_property(device, "FULL_DEVICE_NAME"),
            "precision_requested": precision,
            "precision_used": str(self.compiled.get_property(hints.inference_precision())),
            "device_precisions": device_precisions(device),
            "read_seconds": round(read_s, 4),
            "compile_seconds": round(compile_s, 4),
            "cache_dir": self.settings.cache_dir,
            "threads": int(self.compiled.get_property(props.inference_num_threads())),
            "streams": int(self.compiled.get_property(props.num_streams())),
            "versions": {"openvino": ov.get_version()},
        }

    def timed_call(self, feeds: Feeds) -> Callable[[], Any]:
        return functools.partial(self.request.infer, feeds, share_inputs=True)

    def _infer(self, feeds: Feeds) -> list[np.ndarray]:
        result = self.request.infer(feeds)
        return [np.array(result[out]) for out in self.compiled.outputs]

    def _deactivate(self) -> None:
        del self.request
        del self.compiled
