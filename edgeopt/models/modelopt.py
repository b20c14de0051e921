"""NVIDIA ModelOpt as the ``int8-trt-modelopt`` recipe, run in its own cached virtual environment.

ModelOpt (``nvidia-modelopt[onnx]``) needs torch and pins onnx ~1.21 and onnxruntime-gpu, so it never runs in
edgeopt's environment: :func:`ensure_venv` creates (once, under a lock; ready only when its stamp file, written
last, matches :data:`REQUIREMENTS`) or reuses a venv at ``$EDGEOPT_MODELOPT_VENV`` or in the user cache, and
:func:`quantize_with_modelopt` runs ``python -m modelopt.onnx.quantization`` there as a subprocess on the
calibration set written as ``.npz``, its output in a log beside the variant.  When the venv cannot be created,
the error (exit 4) says how to enable it.  The result is statically checked for TensorRT only; no engine is built.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import onnx

from edgeopt.core.fileio import (
    read_json,
    sha256_file,
    write_json_atomic,
    write_npz_atomic,
)
from edgeopt.errors import BackendUnavailableError, CalibrationError, QuantizationError

if TYPE_CHECKING:
    from edgeopt.models.calibration import CalibrationSet

#: What the venv holds.  torch is pinned like edgeopt's own (an unpinned torch pulls a multi-GB CUDA build).
REQUIREMENTS = ("torch==2.13.0", "nvidia-modelopt[onnx]==0.47.0")
RECIPE = "int8-trt-modelopt"
QUANTIZER = "modelopt"
PURPOSE = ("TensorRT-bound: NVIDIA ModelOpt's INT8 explicit Q/DQ for TensorRT (statically verified, not built on a "
           "GPU); not the CPU-fastest")
VENV_ENV = "EDGEOPT_MODELOPT_VENV"
STAMP = "edgeopt-modelopt.json"  # written last: a venv without it (a killed install) is never used
MARKER = ".edgeopt-modelopt"  # written first: a folder edgeopt may delete and rebuild
INSTALL_LOG = "edgeopt-install.log"
INSTALL_TIMEOUT_S = 3600.0
RUN_TIMEOUT_S = 1800.0
LOG_TAIL_LINES = 12
#: ModelOpt's command-line options besides the paths; ``--high_precision_dtype fp16`` and entropy calibration are
#: its int8 defaults, spelt out so that provenance says what was made.
MODELOPT_OPTIONS = ("--quantize_mode", "int8", "--calibration_method", "entropy", "--calibration_eps", "cpu",
                    "--high_precision_dtype", "fp16", "--log_level", "INFO")

#: Runs in the venv: the ModelOpt version, then ModelOpt's own CLI module, then the process's peak RSS.
_RUNNER = """\
import importlib.metadata, json, resource, runpy, sys
record, args = sys.argv[1], sys.argv[2:]
info = {"version": importlib.metadata.version("nvidia-modelopt")}
sys.argv = ["python -m modelopt.onnx.quantization", *args]
try:
    runpy.run_module("modelopt.onnx.quantization", run_name="__main__", alter_sys=True)
finally:
    peak = max(resource.getrusage(r).ru_maxrss for r in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    info["peak_rss_mb"] = round(peak / 1024, 1)
    with open(record, "w") as handle:
        json.dump(info, handle)
"""
_PROBE = "import importlib.metadata, modelopt.onnx.quantization; print(importlib.metadata.version('nvidia-modelopt'))"

logger = logging.getLogger(__name__)


def requirements_hash() -> str:
    """sha256 (16 hex digits) of :data:`REQUIREMENTS` and this interpreter's major.minor (a venv belongs to one)."""
    text = "\n".join([*REQUIREMENTS, f"python{sys.version_info[0]}.{sys.version_info[1]}"])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def venv_path() -> Path:
    """``$EDGEOPT_MODELOPT_VENV``, else ``${XDG_CACHE_HOME:-~/.cache}/edgeopt/modelopt-<requirements hash>``."""
    chosen = os.environ.get(VENV_ENV)
    if chosen:
        return Path(chosen).expanduser().absolute()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return (cache / "edgeopt" / f"modelopt-{requirements_hash()}").absolute()


def how_to_enable(venv: Path) -> str:
    """The sentence every failure to provide ModelOpt ends with."""
    pip = " ".join(f"'{r}'" if "[" in r else r for r in REQUIREMENTS)
    return (f"{RECIPE} is optional: it needs network access to PyPI once to create {venv} "
            f"(python -m venv, then pip install {pip}; about 2 GB on disk); set {VENV_ENV} to a writable folder to "
            f"put it elsewhere, or leave out --variant {RECIPE}")


def _unavailable(venv: Path, why: str, detail: str = "") -> BackendUnavailableError:
    """Exit 4; the first line says what failed and how to enable the recipe, ``detail`` (a log's tail) follows."""
    return BackendUnavailableError(f"{RECIPE}: ModelOpt's environment cannot be created at {venv}: {why}. "
                                   f"{how_to_enable(venv)}" + (f"\n{detail}" if detail else ""))


def _python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _stamp_matches(venv: Path) -> dict[str, Any] | None:
    """The stamp of a finished venv for :data:`REQUIREMENTS`, else None."""
    stamp = venv / STAMP
    if not stamp.is_file() or not _python(venv).exists():
        return None
    with contextlib.suppress(Exception):
        data = read_json(stamp)
        if isinstance(data, dict) and data.get("requirements") == list(REQUIREMENTS):
            return data
    return None


@contextlib.contextmanager
def _locked(venv: Path) -> Iterator[None]:
    """An exclusive OS lock on ``<venv>.lock`` (a sibling, so it survives removing the venv)."""
    lock = venv.with_name(venv.name + ".lock")
    try:
        venv.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock, "a+")  # noqa: SIM115 - held for the whole block
    except OSError as error:
        raise _unavailable(venv, f"cannot write {lock}: {error}") from error
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _clear_unfinished(venv: Path) -> None:
    """Remove a venv edgeopt started and did not finish (or made for other requirements); refuse anything else."""
    if not venv.exists():
        return
    if (venv / MARKER).is_file():
        shutil.rmtree(venv)
        return
    if venv.is_dir() and not any(venv.iterdir()):
        return
    raise _unavailable(venv, f"it exists and is not an environment edgeopt made (no {MARKER}); remove it or point "
                             f"{VENV_ENV} elsewhere")


def _run_logged(command: list[str], log: IO[str], timeout_s: float, cwd: Path | None = None,
                env: dict[str, str] | None = None) -> int:
    """Run ``command`` with stdout and stderr into ``log``; its process group is killed after ``timeout_s`` (or when
    this process is interrupted).  Returns the exit status, or -9 after a timeout."""
    log.write(f"$ {' '.join(command)}\n")
    log.flush()
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd,
                               env=env, start_new_session=True)
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        log.write(f"\nedgeopt: stopped after {timeout_s:g} s\n")
        return -9
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _child_env() -> dict[str, str]:
    """This environment, minus what would let edgeopt's own packages leak into the venv's interpreter."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` non-empty lines of a log file ('' when it cannot be read)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join([line for line in text.splitlines() if line.strip()][-lines:])


def _create(venv: Path) -> dict[str, Any]:
    """Build the venv in place: marker first, stamp last."""
    _clear_unfinished(venv)
    try:
        venv.mkdir(parents=True, exist_ok=True)
        (venv / MARKER).write_text("made by edgeopt (edgeopt.models.modelopt); safe to delete\n")
    except OSError as error:
        raise _unavailable(venv, f"cannot write there: {error}") from error
    install_log = venv / INSTALL_LOG
    logger.info(f"{RECIPE}: creating ModelOpt's environment at {venv} (once; log {install_log})")
    started = time.perf_counter()
    python = str(_python(venv))
    steps = {
        "python -m venv": [sys.executable, "-m", "venv", str(venv)],
        "pip install": [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--progress-bar",
                        "off", *REQUIREMENTS],
    }
    failed = ""
    with open(install_log, "w", encoding="utf-8") as handle:
        for label, step in steps.items():
            status = _run_logged(step, handle, INSTALL_TIMEOUT_S, env=_child_env())
            if status != 0:
                failed = f"{label} " + (f"stopped after {INSTALL_TIMEOUT_S:g} s" if status == -9 else
                                        f"failed (exit {status})")
                break
        else:
            probe = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, env=_child_env(),
                                   timeout=600, check=False)
            handle.write(probe.stdout + probe.stderr)
            if probe.returncode != 0:
                failed = "modelopt.onnx.quantization does not import"
    if failed:
        raise _unavailable(venv, f"{failed}; log {install_log}", tail(install_log))
    stamp = {"requirements": list(REQUIREMENTS), "modelopt": probe.stdout.strip().splitlines()[-1],
             "python": sys.version.split()[0], "seconds": round(time.perf_counter() - started, 1)}
    write_json_atomic(venv / STAMP, stamp)
    logger.info(f"{RECIPE}: ModelOpt {stamp['modelopt']} ready in {stamp['seconds']} s")
    return stamp


def ensure_venv() -> tuple[Path, dict[str, Any]]:
    """The venv holding :data:`REQUIREMENTS` and its stamp, created if missing.  Concurrent callers wait for one
    creator.  Raises BackendUnavailableError (exit 4) with :func:`how_to_enable` when it cannot be created."""
    venv = venv_path()
    stamp = _stamp_matches(venv)
    if stamp is not None:
        return venv, stamp
    with _locked(venv):
        stamp = _stamp_matches(venv)  # another process may have finished it while this one waited
        return venv, stamp if stamp is not None else _create(venv)


def available() -> bool:
    """Whether a finished venv is there (nothing is created)."""
    return _stamp_matches(venv_path()) is not None


def write_calibration(calibration: CalibrationSet, path: Path) -> tuple[str, str]:
    """Write ``calibration`` as ModelOpt reads it: one array per input, the samples concatenated along the batch
    axis (ModelOpt splits each array into ``len / batch`` steps).  Returns the file's sha256 and the
    ``--calibration_shapes`` spec of one step (the first sample's shapes: symbolic dims made concrete)."""
    first = calibration.samples[0]
    arrays: dict[str, np.ndarray] = {}
    for name in sorted(first):
        shapes = {sample[name].shape for sample in calibration.samples}
        if len(shapes) != 1 or not first[name].ndim:
            what = "is a scalar" if not first[name].ndim else f"has several shapes {sorted(shapes)}"
            raise CalibrationError(f"{calibration.source}: input '{name}' {what}; ModelOpt takes one batch-first "
                                   "shape per input")
        arrays[name] = np.concatenate([sample[name] for sample in calibration.samples], axis=0)
        if "," in name or ":" in name:
            raise CalibrationError(f"{calibration.source}: input '{name}': ModelOpt's shape option cannot name it")
    write_npz_atomic(path, arrays)
    spec = ",".join(f"{name}:{'x'.join(str(d) for d in first[name].shape)}" for name in sorted(first))
    return sha256_file(path), spec


def modelopt_arguments(model: str, calibration: str, output: str, shapes: str,
                       exclude_nodes: tuple[str, ...] = ()) -> list[str]:
    """ModelOpt's command line (after ``python -m modelopt.onnx.quantization``); node names are anchored regexes."""
    args = ["--onnx_path", model, *MODELOPT_OPTIONS, "--calibration_data_path", calibration,
            "--calibration_shapes", shapes, "--output_path", output]
    if exclude_nodes:
        args += ["--nodes_to_exclude", *(re.escape(name) + "$" for name in exclude_nodes)]
    return args


def run_modelopt(venv: Path, args: list[str], cwd: Path, log_path: Path,
                 timeout_s: float = RUN_TIMEOUT_S) -> dict[str, Any]:
    """Run ModelOpt with ``args`` in ``cwd``, its output into ``log_path``.  Returns ``version`` and
    ``peak_rss_mb`` (read in the venv) and ``seconds``; a failure names the log and quotes its tail."""
    record = cwd / "modelopt-run.json"
    started = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as handle:
        status = _run_logged([str(_python(venv)), "-c", _RUNNER, str(record), *args], handle, timeout_s, cwd=cwd,
                             env=_child_env())
    seconds = round(time.perf_counter() - started, 2)
    if status != 0:
        why = f"timed out after {timeout_s:g} s" if status == -9 else f"failed (exit {status})"
        raise QuantizationError(f"variant {RECIPE}: ModelOpt {why}; log {log_path}:\n{tail(log_path)}")
    info = read_json(record)
    return {"version": str(info["version"]), "peak_rss_mb": info.get("peak_rss_mb"), "seconds": seconds}


def _stage_model(source: Path, scratch: Path) -> Path:
    """The float model as one self-contained file in ``scratch`` (ModelOpt writes its intermediates beside it)."""
    staged = scratch / "model.onnx"
    model = onnx.load(str(source))
    onnx.save(model, str(staged))
    return staged


def quantize_with_modelopt(source: Path, name: str, exclude_nodes: tuple[str, ...],
                           calibration: CalibrationSet | None, scratch: Path, log_path: Path) -> ModelOptRun:
    """ModelOpt's INT8 Q/DQ file of ``source`` in ``scratch`` (``quantized.onnx``), made in its own venv on the
    calibration set, ModelOpt's output in ``log_path``; what ran (version, exact arguments, venv, calibration file
    sha256, log, time, peak RSS) in
    :class:`ModelOptRun`.  The caller (``edgeopt.models.quantize``) finishes the file for TensorRT and checks it."""
    if calibration is None:
        raise QuantizationError(f"variant {name}: ModelOpt's INT8 calibration needs a calibration set")
    venv, stamp = ensure_venv()
    model = _stage_model(source, scratch)
    npz_sha, shapes = write_calibration(calibration, scratch / "calibration.npz")
    args = modelopt_arguments(model.name, "calibration.npz", "quantized.onnx", shapes, exclude_nodes)
    run = run_modelopt(venv, args, scratch, log_path, RUN_TIMEOUT_S)
    staged = scratch / "quantized.onnx"
    if not staged.is_file():
        raise QuantizationError(f"variant {name}: ModelOpt wrote no model; log {log_path}:\n{tail(log_path)}")
    section = {"version": run["version"], "command": "python -m modelopt.onnx.quantization", "arguments": args,
               "venv": str(venv), "requirements": list(REQUIREMENTS), "calibration_npz_sha256": npz_sha,
               "log": str(log_path), "seconds": run["seconds"], "peak_rss_mb": run["peak_rss_mb"],
               "venv_created_in_s": stamp.get("seconds")}
    return ModelOptRun(staged, section)


@dataclass(frozen=True)
class ModelOptRun:
    """ModelOpt's output file and the provenance section (``modelopt``) saying how it was made."""

    path: Path
    provenance: dict[str, Any]
