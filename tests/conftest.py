"""Fixtures shared by the graph, export, quantize and worker tests: the zoo models and calibration sets.

Zoo models are built once per session into a session temporary folder; tests read them and never
write beside them (tests that need a private copy build one in ``tmp_path``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgeopt.models.calibration import CalibrationSet
from edgeopt.models.graph import input_specs
from tests import zoo

MakeCalibration = Callable[..., CalibrationSet]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "aarch64: in the subset scripts/aarch64_emulated.sh runs on arm64 under qemu (no torch, no timing)"
    )


@pytest.fixture(scope="session")
def zoo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("zoo")


@pytest.fixture(scope="session")
def conv_model(zoo_dir: Path) -> Path:
    return zoo.tiny_conv_model(zoo_dir / "tiny_conv.onnx")


@pytest.fixture(scope="session")
def mlp_model(zoo_dir: Path) -> Path:
    return zoo.tiny_mlp(zoo_dir / "tiny_mlp.onnx")


@pytest.fixture(scope="session")
def identity_model(zoo_dir: Path) -> Path:
    return zoo.identity_add(zoo_dir / "identity_add.onnx")


@pytest.fixture(scope="session")
def custom_op_model(zoo_dir: Path) -> Path:
    return zoo.custom_op_model(zoo_dir / "custom_op.onnx")


@pytest.fixture(scope="session")
def nan_model(zoo_dir: Path) -> Path:
    return zoo.nan_activation_model(zoo_dir / "nan_activation.onnx")


@pytest.fixture(scope="session")
def empty_tensor_model(zoo_dir: Path) -> Path:
    return zoo.empty_tensor_model(zoo_dir / "empty_tensor.onnx")


@pytest.fixture(scope="session")
def huge_mask_model(zoo_dir: Path) -> Path:
    return zoo.huge_mask_model(zoo_dir / "huge_mask.onnx")


def _random_calibration(model_path: Path, count: int = 8, seed: int = 0) -> CalibrationSet:
    """``count`` seeded standard-normal samples shaped like the model's (fixed-shape, float) inputs."""
    rng = np.random.default_rng(seed)
    specs = input_specs(onnx.load(str(model_path), load_external_data=False))
    samples = tuple(
        {
            spec.name: rng.standard_normal(tuple(int(d) for d in spec.shape)).astype(spec.dtype)
            for spec in specs
        }
        for _ in range(count)
    )
    return CalibrationSet(f"random-{model_path.stem}", f"tests: seeded random (seed {seed})", samples)


@pytest.fixture(scope="session")
def make_calibration() -> MakeCalibration:
    """Build a seeded random calibration set for a zoo model: ``make_calibration(path, count=8, seed=0)``."""
    return _random_calibration
