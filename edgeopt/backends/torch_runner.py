"""PyTorch baseline runner: the model itself, eager or ``torch.compile``, on CPU or CUDA, fp32/fp16/bf16.

``model_path`` is a model reference ``package.module:factory`` (the factory returns an ``nn.Module``;
its module may declare ``input_spec()``), or ``settings.inputs`` gives ``[(name, shape, dtype)]``.
Feeds are numpy float32 arrays (numpy has no bfloat16); they are moved to the device and cast to the
precision once, before the loop, and outputs come back as float32 numpy arrays.

Timing: the timed call runs the model under ``torch.inference_mode()``; on CUDA it ends with
``torch.cuda.synchronize()``, so the worker's host clock covers the whole GPU work.  With
``cuda_graphs: true`` (CUDA only) the model is captured once into a ``torch.cuda.CUDAGraph`` with static
input buffers, and the timed call is ``graph.replay()`` + synchronise.  Memory on CUDA:
``torch.cuda.max_memory_allocated`` after the first calls (static shapes reach their peak there),
recorded in ``runtime_details['cuda_memory']``.

The CPU path runs here and is tested.  The CUDA path (device, synchronise, CUDA graphs, memory) is
NOT VERIFIED ON HARDWARE: no GPU was available when it was written.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from edgeopt.backends.base import Feeds, Runner
from edgeopt.backends.torch_settings import TorchSettings

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_MEMORY_READS = 3  # read the CUDA peak after this many timed calls, then stop paying for it


class TorchRunner(Runner[TorchSettings]):
    """Settings (``TorchSettings``): ``device`` (cpu|cuda), ``precision`` (fp32|fp16|bf16), ``mode``
    (eager|compile), ``compile_mode`` (torch.compile mode, optional), ``cuda_graphs`` (bool), ``inputs`` (optional)."""

    backend = "torch"
    settings_type = TorchSettings

    def _activate(self) -> None:
        from edgeopt.models.factory import factory_result
        from edgeopt.models.modelref import factory_input_specs
        from edgeopt.models.torch_io import FlatModule, bind_inputs

        device, precision, mode = self.settings.device, self.settings.precision, self.settings.mode
        if precision not in DTYPES:
            raise ValueError(f"torch: precision '{precision}' is not one of {sorted(DTYPES)}")
        if mode not in ("eager", "compile"):
            raise ValueError(f"torch: mode '{mode}' is not eager or compile")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError("torch: device cuda asked for, torch.cuda.is_available() is False")
        self.cuda_graphs = bool(self.settings.cuda_graphs)
        if self.cuda_graphs and not device.startswith("cuda"):
            raise ValueError("torch: cuda_graphs needs device cuda")
        self.device = torch.device(device)
        self.dtype = DTYPES[precision]
        declared = self.settings.inputs
        load_started = time.perf_counter()
        made = factory_result(self.model_path)
        declaration = factory_input_specs(self.model_path) or (made.declaration() if made.examples else None)
        specs = [tuple(s) for s in declared] if declared else [
            (s.name, s.shape, s.dtype) for s in (declaration.specs if declaration is not None else ())]
        if not specs:
            raise ValueError(f"torch: {self.model_path} declares no input_spec(); pass settings.inputs")
        self.inputs = {str(name): (tuple(shape), str(dtype)) for name, shape, dtype in specs}
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            allocated_before = torch.cuda.memory_allocated(self.device)
        flat = FlatModule(made.module, bind_inputs(made.module, list(self.inputs), self.model_path))
        model = flat.eval().to(self.device, self.dtype)  # inputs by forward's names, outputs the named leaves
        self.model: Callable[..., Any] = torch.compile(model, mode=self.settings.compile_mode) \
            if mode == "compile" else model
        self._calls = 0
        self._graph: Any = None
        self.details = {
            "device": str(self.device), "precision": precision, "mode": mode, "cuda_graphs": self.cuda_graphs,
            "compile_mode": self.settings.compile_mode, "load_seconds": round(time.perf_counter() - load_started, 4),
            "threads": torch.get_num_threads(),
            "timing": "host wall clock around the model call" + (" + torch.cuda.synchronize()"
                                                                 if self.device.type == "cuda" else ""),
            "versions": {"torch": torch.__version__},
        }
        if self.device.type == "cuda":
            self.details["gpu"] = torch.cuda.get_device_name(self.device)
            self.details["cuda_memory"] = {"model_allocated_mb": (torch.cuda.memory_allocated(self.device)
                                                                  - allocated_before) / 2**20}

    def _tensors(self, feeds: Feeds) -> list[torch.Tensor]:
        out = []
        for name in self.inputs:
            tensor = torch.from_numpy(np.require(feeds[name], requirements="C")).to(self.device)
            out.append(tensor.to(self.dtype) if tensor.is_floating_point() else tensor)
        return out

    def _forward(self, tensors: list[torch.Tensor]) -> Any:
        with torch.inference_mode():
            return self.model(*tensors)

    def _record_memory(self) -> None:
        self._calls += 1
        if self._calls <= _MEMORY_READS:
            peak = torch.cuda.max_memory_allocated(self.device)
            self.details["cuda_memory"]["max_memory_allocated_mb"] = peak / 2**20

    def timed_call(self, feeds: Feeds) -> Callable[[], Any]:
        tensors = self._tensors(feeds)
        if self.device.type != "cuda":
            return lambda: self._forward(tensors)
        if self.cuda_graphs:
            static = [t.clone() for t in tensors]
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):  # warm up on a side stream before capture, as torch documents
                for _ in range(3):
                    self._forward(static)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph), torch.inference_mode():
                self._graph_out = self.model(*static)
            self._graph = graph

            def replay() -> None:
                graph.replay()
                torch.cuda.synchronize(self.device)
                self._record_memory()

            return replay

        def call() -> None:
            self._forward(tensors)
            torch.cuda.synchronize(self.device)
            self._record_memory()

        return call

    def _infer(self, feeds: Feeds) -> list[np.ndarray]:
        result = self._forward(self._tensors(feeds))
        outputs = result if isinstance(result, list | tuple) else [result]
        return [o.detach().float().cpu().numpy() for o in outputs]

    def _deactivate(self) -> None:
        self._graph = None
        del self.model
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
