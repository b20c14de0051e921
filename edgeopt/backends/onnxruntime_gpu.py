"""ONNX Runtime on NVIDIA GPUs: CUDA and TensorRT execution providers with options from the profile.

Provider options come from ``edgeopt.backends.tensorrt.plan.ort_gpu_provider_options`` (engine and timing caches
under the work folder, FP16/INT8 enables, workspace, builder optimisation level, shape profiles).
As on the CPU runner, every provider asked for must be active (else ``ProviderFallbackError``).  Nodes
that still run on the CPU are listed: a one-run profiling session records each node's provider
(``node_placements``), and ``runtime_details['cpu_fallback_nodes']`` names those on
CPUExecutionProvider.  Needs the ``onnxruntime-gpu`` package (extra ``gpu``).

NOT VERIFIED ON HARDWARE with the CUDA or TensorRT providers; the placement reading is tested on CPU.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edgeopt.backends.onnxruntime import OnnxRuntimeRunner, session_options
from edgeopt.backends.onnxruntime_settings import OnnxRuntimeGpuSettings, OrtSessionSettings
from edgeopt.errors import ProviderFallbackError


def node_placements(profile_json: str | Path) -> dict[str, str]:
    """node name → execution provider, from an ONNX Runtime profiling trace (``end_profiling()``)."""
    events = json.loads(Path(profile_json).read_text(encoding="utf-8"))
    placements: dict[str, str] = {}
    for event in events:
        args = event.get("args") or {}
        if event.get("cat") == "Node" and "provider" in args:
            name = str(event.get("name", "")).removesuffix("_kernel_time")
            if name and not name.endswith(("_fence_before", "_fence_after")):
                placements[name] = str(args["provider"])
    return placements


def probe_placements(model_path: str, settings: OrtSessionSettings | dict[str, Any], providers: list[Any],
                     feeds: dict[str, np.ndarray] | None, work_dir: Path) -> dict[str, str]:
    """Open a profiling session, run once (seeded zeros if no feeds), and read each node's provider."""
    options = session_options(settings)
    options.enable_profiling = True
    options.profile_file_prefix = str(work_dir / f"ort-placement-{os.getpid()}")
    session = ort.InferenceSession(model_path, options, providers=providers)
    if feeds is None:
        feeds = {i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape],
                                  dtype=np.float16 if "float16" in i.type else np.float32)
                 for i in session.get_inputs()}
    session.run(None, feeds)
    trace = Path(session.end_profiling())
    try:
        return node_placements(trace)
    finally:
        trace.unlink(missing_ok=True)


class OnnxRuntimeGpuRunner(OnnxRuntimeRunner):
    """Settings (``OnnxRuntimeGpuSettings``): threads as for ``onnxruntime`` plus ``provider_options``
    ([(provider, options)]) and ``cache_dir``."""

    backend = "onnxruntime-gpu"
    settings_type = OnnxRuntimeGpuSettings
    settings: OnnxRuntimeGpuSettings  # type: ignore[assignment]

    def _activate(self) -> None:
        pairs = [(p, dict(o)) for p, o in self.settings.provider_options]
        requested = [p for p, _ in pairs]
        available = ort.get_available_providers()
        missing = [p for p in requested if p not in available]
        if missing:
            raise ProviderFallbackError(f"provider fallback: {missing} not in this onnxruntime build "
                                        f"({available}); install onnxruntime-gpu (pip install edgeopt[gpu])")
        work = Path(self.settings.cache_dir or ".")
        work.mkdir(parents=True, exist_ok=True)
        placements = probe_placements(self.model_path, self.settings, pairs, self.settings.probe_feeds, work)
        active = self._open(session_options(self.settings), pairs, requested)
        self.details = {"providers_requested": requested, "providers_active": active,
                        "provider_options": {p: {k: str(v) for k, v in o.items()} for p, o in pairs},
                        "node_placements": placements,
                        "cpu_fallback_nodes": sorted(n for n, p in placements.items() if p == "CPUExecutionProvider"
                                                     and "CPUExecutionProvider" not in requested[:1]),
                        "versions": {"onnxruntime": ort.__version__}}
