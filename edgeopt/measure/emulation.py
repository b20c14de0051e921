"""Accuracy of a TensorRT-bound Q/DQ file, emulated on the CPU: its outputs under ONNX Runtime, no latency.

A machine without an NVIDIA GPU cannot build a TensorRT engine, but it can run the exact Q/DQ file TensorRT
would be given.  ONNX Runtime's CPU provider runs it at graph optimisation ``basic``: no QDQ-to-integer-kernel
fusion, so every QuantizeLinear/DequantizeLinear pair is computed as written (round, clip, rescale in float),
which is the arithmetic TensorRT's explicit quantization defines ("Working with Quantized Types"); TensorRT's
own INT8 kernels accumulate and round differently, so the figures estimate, and do not reproduce, the engine's.
The outputs go to ``<run>/emulated/<stem>.outputs.npz``; the record (``Emulation``, kind ``emulation``) beside it
says what ran, on what, and carries no latency: a CPU time of a TensorRT-bound file means nothing.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from edgeopt import __version__
from edgeopt.backends.onnxruntime_settings import OnnxRuntimeSettings
from edgeopt.core.fileio import read_json, sha256_json, write_json_atomic
from edgeopt.core.host import host_fingerprint
from edgeopt.measure.jobs import ReferenceSet, WorkerJob
from edgeopt.measure.launcher import run_worker, worker_memory_cap
from edgeopt.measure.results import Failure, ProfileRecord, VariantRecord, now_iso
from edgeopt.measure.stored import extra_outputs_file, result_stem
from edgeopt.models.variants import Variant
from edgeopt.profiles.schema import HardwareProfile

logger = logging.getLogger(__name__)

SCHEMA_VERSION: Literal[1] = 1
FOLDER = "emulated"  # under the run folder
LABEL = "TensorRT INT8 accuracy, emulated on CPU"
METHOD = ("ONNX Runtime CPUExecutionProvider, graph optimisation basic (Q/DQ computed as written, no integer-kernel "
          "fusion); estimates TensorRT's explicit-quantization arithmetic, not its kernels; no latency")


class Emulation(BaseModel):
    """The outputs of one TensorRT-bound variant run on the CPU for accuracy, or why that failed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = SCHEMA_VERSION
    kind: Literal["emulation"] = "emulation"
    key: str
    status: Literal["ok", "failed"]
    emulates: str  # the row it stands for: ``tensorrt int8``
    method: str = METHOD
    variant: VariantRecord
    profile: ProfileRecord
    host: dict[str, Any]
    session: dict[str, Any]
    versions: dict[str, Any] = {}
    outputs_file: str | None = None  # relative to the folder the record is in
    output_names: list[str] = []
    reference_count: int | None = None
    failure: Failure | None = None
    created_at: str

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def name(self) -> str:
        """The row's name: ``int8-trt-qdq@tensorrt-int8-emulated``."""
        return f"{self.variant.name}@{self.emulates.replace(' ', '-')}-emulated"


def emulation_session() -> dict[str, Any]:
    """The ONNX Runtime CPU session every emulation runs in (all cores: nothing is timed)."""
    return OnnxRuntimeSettings(intra_op_threads=os.cpu_count() or 1, inter_op_threads=1,
                               graph_optimization_level="basic",
                               execution_providers=["CPUExecutionProvider"]).to_dict()


def emulation_key(variant: Variant, reference_sha: str | None, emulates: str) -> str:
    """What a stored emulation must match to be reused: the file's bytes, the inputs, the method, the version."""
    return sha256_json({"variant": variant.sha256, "reference": reference_sha, "emulates": emulates,
                        "session": emulation_session(), "method": METHOD, "edgeopt": __version__})


def emulate_or_reuse(variant: Variant, profile: HardwareProfile, run_dir: Path, *, emulates: str,
                     reference_inputs: Path, reference_sha: str | None,
                     extra_references: dict[str, Path] | None = None, force: bool = False
                     ) -> tuple[Emulation, Path]:
    """The emulation of ``variant`` for ``profile`` (and the folder its outputs are in): the stored one when it
    still matches, else a fresh one from an isolated ONNX Runtime worker, saved atomically."""
    directory = Path(run_dir) / FOLDER
    directory.mkdir(parents=True, exist_ok=True)
    stem = result_stem(f"{variant.name}@{emulates.replace(' ', '-')}-emulated", profile.name)
    path = directory / f"{stem}.json"
    key = emulation_key(variant, reference_sha, emulates)
    previous = None if force else _try_load(path)
    complete = all((directory / extra_outputs_file(stem, name)).exists() for name in extra_references or {})
    if previous is not None and previous.ok and previous.key == key and complete:
        logger.info(f"emulate {stem}: done earlier, skipped (--force to redo)")
        return previous, directory
    logger.info(f"emulate {stem}: {LABEL} ...")
    emulation = _emulate(variant, profile, directory, stem, key, emulates, reference_inputs, extra_references)
    write_json_atomic(path, emulation.model_dump(mode="json"))
    if emulation.failure is not None:
        logger.warning(f"emulate {stem}: FAILED: {emulation.failure.message}")
    return emulation, directory


def _try_load(path: Path) -> Emulation | None:
    """The stored emulation at ``path``, or None when absent, unreadable or invalid (it is then made again)."""
    try:
        return Emulation.model_validate(read_json(path))
    except (OSError, ValueError, ValidationError):
        return None


def _emulate(variant: Variant, profile: HardwareProfile, directory: Path, stem: str, key: str, emulates: str,
             reference_inputs: Path, extra_references: dict[str, Path] | None) -> Emulation:
    session = emulation_session()
    outputs_file = f"{stem}.outputs.npz"
    extra = [(Path(p).resolve(), (directory / extra_outputs_file(stem, name)).resolve())
             for name, p in (extra_references or {}).items()]
    outputs = [(directory / outputs_file).resolve(), *(target for _, target in extra)]
    job = WorkerJob(mode="outputs", model_path=str(variant.path.resolve()), session=session,
                    reference=ReferenceSet(str(Path(reference_inputs).resolve()), str(outputs[0])),
                    extra_references=tuple(ReferenceSet(str(source), str(target)) for source, target in extra))
    base: dict[str, Any] = {
        "key": key, "emulates": emulates, "session": session, "created_at": now_iso(),
        "variant": VariantRecord.of(variant), "profile": ProfileRecord(name=profile.name, digest=profile.digest()),
        "host": host_fingerprint().to_dict()}
    run = run_worker("edgeopt.measure.worker", job, profile.bench.worker_timeout_s,
                     memory_cap=worker_memory_cap(profile), outputs=outputs)
    result = run.result
    if run.timed_out or run.returncode < 0 or result is None or result.get("status") != "ok":
        why = ("timed out" if run.timed_out else (result or {}).get("message")
               or f"worker exited {run.returncode} without a result")
        failure = Failure(kind="timeout" if run.timed_out else "backend",
                          message=f"{variant.name}: {LABEL} failed: {why}", returncode=run.returncode,
                          stderr_tail=run.stderr_tail)
        return Emulation(status="failed", failure=failure, **base)
    return Emulation(status="ok", outputs_file=outputs_file, output_names=result["output_names"],
                     reference_count=result["reference_count"],
                     versions={"edgeopt": __version__, **result["versions"]}, **base)
