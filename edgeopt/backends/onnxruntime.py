"""ONNX Runtime runner: session options from the profile, and a check that no provider silently fell back.

The measurement worker imports this module, so it imports nothing beyond onnxruntime, numpy and the light parts of
edgeopt: a plain CPU session outside a measurement is :func:`edgeopt.models.graph.cpu_session` (it needs onnx).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import onnxruntime as ort

from edgeopt.backends.base import BackendSettings, Feeds, Runner
from edgeopt.backends.onnxruntime_settings import OnnxRuntimeSettings, OrtSessionSettings
from edgeopt.errors import ProviderFallbackError

__all__ = ["OnnxRuntimeRunner", "ProviderFallbackError", "session_options"]

_OPT_LEVELS = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
               "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
               "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
               "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
               "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8", "tensor(uint8)": "uint8",
               "tensor(bool)": "bool"}


def session_options(settings: OrtSessionSettings | Mapping[str, Any]) -> ort.SessionOptions:
    """Threads, execution mode and graph optimisation level from a job's session settings."""
    if not isinstance(settings, OrtSessionSettings):
        settings = OnnxRuntimeSettings.from_dict(settings)
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(settings.intra_op_threads)
    inter_op = int(settings.inter_op_threads)
    options.inter_op_num_threads = inter_op
    parallel = inter_op > 1  # inter-op threads only act in parallel mode
    options.execution_mode = ort.ExecutionMode.ORT_PARALLEL if parallel else ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = _OPT_LEVELS[settings.graph_optimization_level]
    options.log_severity_level = 3
    return options


def _as_array(value: Any) -> np.ndarray:
    """One output as an array: a tensor as it is (a string tensor is an object array of ``str``), a sequence or a
    map (ZipMap's list of dicts) as a 0-d object array holding it, for the caller to recognise and leave out."""
    if isinstance(value, np.ndarray):
        return value
    held = np.empty((), dtype=object)
    held[()] = value
    return held


class OnnxRuntimeRunner(Runner[OnnxRuntimeSettings]):
    backend = "onnxruntime"
    settings_type: type[BackendSettings] = OnnxRuntimeSettings

    def _activate(self) -> None:
        requested = list(self.settings.execution_providers)
        active = self._open(session_options(self.settings), requested, requested)
        self.details = {"providers_requested": requested, "providers_active": active,
                        "versions": {"onnxruntime": ort.__version__}}

    def _open(self, options: ort.SessionOptions, providers: list[Any], requested: list[str]) -> list[str]:
        """Open the session; every provider asked for must be active (a silent fallback is an error)."""
        self.session = ort.InferenceSession(self.model_path, options, providers=providers)
        active: list[str] = self.session.get_providers()
        missing = [p for p in requested if p not in active]
        if missing:
            raise ProviderFallbackError(f"provider fallback: asked for {requested}, active {active}; "
                                        f"{missing} not active")
        self.inputs = {i.name: (tuple(d if isinstance(d, int) else str(d) for d in i.shape),
                                _ORT_DTYPES.get(i.type, i.type)) for i in self.session.get_inputs()}
        self.output_names = [o.name for o in self.session.get_outputs()]
        return active

    def timed_call(self, feeds: Feeds) -> Callable[[], Any]:
        return functools.partial(self.session.run, None, feeds)

    def _infer(self, feeds: Feeds) -> list[np.ndarray]:
        return [_as_array(value) for value in self.session.run(None, feeds)]

    def _deactivate(self) -> None:
        del self.session
