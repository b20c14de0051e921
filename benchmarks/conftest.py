"""Fixtures for the overhead benchmarks: the models, one-thread ONNX Runtime sessions, and figure reporting.

Every benchmark reports its figures through the ``figures`` fixture: they go into
``benchmark.extra_info`` (so ``--benchmark-json`` / ``--benchmark-autosave`` store them), are
printed, and are repeated in a short table at the end of the run, where ``-q`` still shows them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.models import heavy_weights_model, matmul_chain_model, near_empty_model

Report = Callable[..., None]
_FIGURES: list[str] = []


def open_session(model_path: Path) -> Any:
    """An ONNX Runtime CPU session with the worker's settings for a one-thread profile."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench-models")


@pytest.fixture(scope="session")
def one_ms_model(model_dir: Path) -> Path:
    """About 1 ms per run on one thread of the 2-vCPU EPYC (12 x MatMul 64x256 @ 256x256)."""
    return matmul_chain_model(model_dir / "matmul_chain.onnx")


@pytest.fixture(scope="session")
def empty_model(model_dir: Path) -> Path:
    return near_empty_model(model_dir / "near_empty.onnx")


@pytest.fixture(scope="session")
def heavy_model(model_dir: Path) -> Path:
    """24 MiB of float32 weights, about 1 ms per run."""
    return heavy_weights_model(model_dir / "heavy_weights.onnx")


@pytest.fixture
def figures(benchmark: Any, request: pytest.FixtureRequest) -> Report:
    """``figures(headline, **values)``: store ``values`` in ``benchmark.extra_info`` and print ``headline``."""

    def report(headline: str, **values: Any) -> None:
        for key, value in values.items():
            benchmark.extra_info[key] = float(value) if isinstance(value, np.floating) else value
        line = f"{request.node.name}: {headline}"
        _FIGURES.append(line)
        print(line)

    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _FIGURES:
        terminalreporter.section("edgeopt overhead figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)
