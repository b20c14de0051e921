"""PyTorch → ONNX export with a numeric parity check and provenance saved beside the model."""

from __future__ import annotations

import importlib.metadata
import math
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from edgeopt.core.fileio import atomic_path, sha256_file, write_json_atomic
from edgeopt.errors import ExportError, first_line
from edgeopt.models.calibration import InputSpec
from edgeopt.models.graph import cpu_session
from edgeopt.models.inputs import DEFAULT_MAX_INPUT_MB, check_input_sizes, standard_normal

if TYPE_CHECKING:
    import torch

Exporter = Literal["torchscript", "dynamo"]


@dataclass(frozen=True)
class ParityTolerance:
    """Export is rejected when any output exceeds one of these."""

    max_abs: float = 1e-3
    max_rel: float = 1e-3
    min_cosine: float = 0.9999


@dataclass(frozen=True)
class OutputParity:
    output: str
    max_abs_error: float
    max_rel_error: float
    cosine: float


@dataclass(frozen=True)
class ExportResult:
    path: Path
    provenance_path: Path
    parity: tuple[OutputParity, ...]
    provenance: dict[str, Any]


def provenance_path_for(model_path: Path) -> Path:
    return model_path.with_name(model_path.stem + ".provenance.json")


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def random_feeds(specs: list[InputSpec], seed: int, batch: int = 1,
                 max_input_mb: float | None = DEFAULT_MAX_INPUT_MB) -> dict[str, np.ndarray]:
    """Seeded random inputs for the given specs, made in each input's dtype; a symbolic dimension becomes
    ``batch``.  An input over ``max_input_mb`` MiB is refused before anything is allocated (exit 3)."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    concrete = [InputSpec(s.name, tuple(d if isinstance(d, int) and d > 0 else batch for d in s.shape), s.dtype)
                for s in specs]
    if max_input_mb is not None:
        check_input_sizes(concrete, max_input_mb)
    for spec in concrete:
        shape = tuple(int(d) for d in spec.shape)
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f":
            feeds[spec.name] = standard_normal(rng, shape, dtype)
        elif dtype.kind in "iu":
            feeds[spec.name] = rng.integers(0, 10, size=shape, dtype=dtype)
        elif dtype.kind == "b":
            feeds[spec.name] = rng.integers(0, 2, size=shape, dtype=np.uint8).view(np.bool_)
        else:
            raise ExportError(f"input '{spec.name}': cannot generate random data of dtype {spec.dtype}")
    return feeds


def compare_outputs(name: str, expected: np.ndarray, actual: np.ndarray) -> OutputParity:
    a = np.asarray(expected, dtype=np.float64).ravel()
    b = np.asarray(actual, dtype=np.float64).ravel()
    diff = np.abs(a - b)
    max_abs = float(diff.max()) if diff.size else 0.0
    scale = float(np.abs(a).max()) if a.size else 0.0
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else math.inf)
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    cosine = float(np.dot(a, b) / norm) if norm > 0 else (1.0 if max_abs == 0 else 0.0)
    return OutputParity(output=name, max_abs_error=max_abs, max_rel_error=max_rel, cosine=cosine)


def _torch_export(
    model: torch.nn.Module,
    specs: list[InputSpec],
    output_path: Path,
    opset: int,
    dynamic_batch: bool,
    exporter: Exporter,
) -> list[str]:
    import torch

    example = tuple(torch.from_numpy(v) for v in random_feeds(specs, seed=0).values())
    names = [spec.name for spec in specs]
    with torch.no_grad():
        produced = model(*example)
    count = len(produced) if isinstance(produced, (tuple, list)) else 1
    output_names = ["output"] if count == 1 else [f"output_{i}" for i in range(count)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporters warn about their own deprecations
        if exporter == "torchscript":
            dynamic_axes = {name: {0: "batch"} for name in [*names, *output_names]} if dynamic_batch else None
            torch.onnx.export(
                model, example, str(output_path), input_names=names, output_names=output_names,
                opset_version=opset, dynamic_axes=dynamic_axes, dynamo=False,
            )
        else:
            dynamic_shapes = (
                tuple({0: torch.export.Dim("batch")} for _ in names) if dynamic_batch else None
            )
            program = torch.onnx.export(
                model, example, input_names=names, output_names=output_names, opset_version=opset, dynamo=True,
                dynamic_shapes=dynamic_shapes, external_data=False,
            )
            if program is None:
                raise ExportError("torch.onnx.export(dynamo=True) returned no program")
            program.save(str(output_path), external_data=False)
    import onnx

    return [output.name for output in onnx.load(str(output_path), load_external_data=False).graph.output]


def export_onnx(
    model: torch.nn.Module,
    inputs: list[InputSpec],
    output_path: Path | str,
    *,
    opset: int = 17,
    dynamic_batch: bool = False,
    exporter: Exporter = "torchscript",
    tolerance: ParityTolerance = ParityTolerance(),
    parity_samples: int = 3,
    seed: int = 1234,
    source: str = "",
    source_sha256: str | None = None,
) -> ExportResult:
    """Export ``model`` to ``output_path``, check it, and verify parity with PyTorch on fresh inputs.

    The ONNX file appears only after every check passed; provenance is written beside it.
    """
    try:
        import onnx
        import onnxruntime as ort
        import torch
    except ImportError as error:
        raise ExportError(f"export needs torch and onnxruntime: pip install 'edgeopt[torch]' ({error})") from error

    output_path = Path(output_path)
    model = model.eval()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgeopt-export-") as scratch:
        staged = Path(scratch) / "model.onnx"
        try:
            output_names = _torch_export(model, inputs, staged, opset, dynamic_batch, exporter)
        except ExportError:
            raise
        except Exception as error:  # noqa: BLE001 - any exporter failure becomes one clear error
            raise ExportError(f"{source or type(model).__name__}: torch.onnx.export ({exporter}) failed: "
                              f"{first_line(error)}") from error
        try:
            onnx.checker.check_model(str(staged))
            inferred = onnx.shape_inference.infer_shapes(onnx.load(str(staged)), strict_mode=True)
        except Exception as error:  # noqa: BLE001
            raise ExportError(f"{output_path}: exported model fails onnx checks: {error}") from error
        onnx.save(inferred, str(staged))
        actual_opset = next((int(e.version) for e in inferred.opset_import if e.domain in ("", "ai.onnx")), opset)

        session = cpu_session(staged, log_severity=2)
        worst: dict[str, OutputParity] = {}
        batch = 2 if dynamic_batch else 1
        for index in range(parity_samples):
            feeds = random_feeds(inputs, seed=seed + index, batch=batch)
            with torch.no_grad():
                expected = model(*(torch.from_numpy(v) for v in feeds.values()))
            expected_list = list(expected) if isinstance(expected, (tuple, list)) else [expected]
            actual = session.run(None, feeds)
            for name, want, got in zip(output_names, expected_list, actual, strict=True):
                parity = compare_outputs(name, want.detach().numpy(), got)
                previous = worst.get(name)
                worst[name] = parity if previous is None else OutputParity(
                    name,
                    max(parity.max_abs_error, previous.max_abs_error),
                    max(parity.max_rel_error, previous.max_rel_error),
                    min(parity.cosine, previous.cosine),
                )
        for parity in worst.values():
            problems = []
            if parity.max_abs_error > tolerance.max_abs:
                problems.append(f"max abs error {parity.max_abs_error:.3g} > {tolerance.max_abs!r}")
            if parity.max_rel_error > tolerance.max_rel:
                problems.append(f"max rel error {parity.max_rel_error:.3g} > {tolerance.max_rel!r}")
            if parity.cosine < tolerance.min_cosine:
                problems.append(f"cosine {parity.cosine!r} < {tolerance.min_cosine!r}")
            if problems:
                raise ExportError(
                    f"{output_path}: output '{parity.output}' differs from PyTorch: {'; '.join(problems)}"
                )
        provenance: dict[str, Any] = {
            "kind": "export",
            "source": source,
            "source_sha256": source_sha256,
            "exporter": exporter,
            "opset": actual_opset,
            "opset_requested": opset,
            "dynamic_batch": dynamic_batch,
            "inputs": [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype} for s in inputs],
            "outputs": output_names,
            "parity": [asdict(p) for p in worst.values()],
            "parity_samples": parity_samples,
            "parity_seed": seed,
            "tolerance": asdict(tolerance),
            "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__,
                         "onnxscript": _version("onnxscript")},
            "export_seconds": round(time.perf_counter() - started, 3),
        }
        output_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(output_path) as tmp:
            tmp.write_bytes(staged.read_bytes())
        provenance["sha256"] = sha256_file(output_path)
        write_json_atomic(provenance_path_for(output_path), provenance)
    return ExportResult(output_path, provenance_path_for(output_path), tuple(worst.values()), provenance)
