"""What a lab node does for one cell: check the shipped bytes, measure with edgeopt's own isolated worker
(:func:`edgeopt.measure.cell.measure_cell`, exactly as ``edgeopt run`` does locally) in a node-local
temporary folder, and hand back the measurement document and the outputs files it wrote.  No Ray here: the
Ray task in :mod:`edgeopt.lab.dispatch` calls :func:`measure_payload`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgeopt.errors import InputRejectedError
from edgeopt.measure.cell import Cell, CellContext, measure_cell
from edgeopt.models.variants import Variant
from edgeopt.profiles.schema import HardwareProfile


def now_ms() -> str:
    """Now, ISO 8601 UTC to the millisecond (a cell's start and end)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


WORKDIR_VARIABLE = "EDGEOPT_LAB_WORKDIR"  # where a node keeps its per-cell folders (default: the system temp)
CELL_PREFIX = "edgeopt-cell-"
OWNER_FILE = "owner.json"  # in each cell folder: the pid and start time of the process that made it


def cells_folder() -> Path:
    """Where this node keeps its cells' folders: ``$EDGEOPT_LAB_WORKDIR`` or the system temporary folder."""
    return Path(os.environ.get(WORKDIR_VARIABLE) or tempfile.gettempdir())


def _owner_alive(folder: Path) -> bool:
    import psutil

    try:
        owner = json.loads((folder / OWNER_FILE).read_text(encoding="utf-8"))
        process = psutil.Process(int(owner["pid"]))
        return abs(process.create_time() - float(owner["created"])) < 1.0
    except psutil.NoSuchProcess:
        return False
    except (OSError, ValueError, KeyError, TypeError, psutil.Error):
        return True  # no readable record (being written, or not ours to judge): leave it


def sweep_stale_cells(base: Path | None = None) -> list[str]:
    """Remove the cell folders whose process is gone (a node killed mid-cell: Ray kills the cell's worker with
    it, so nothing could clean up then); the names removed.  Run at each cell's start and by ``lab join``."""
    base = base or cells_folder()
    removed = []
    for folder in sorted(base.glob(f"{CELL_PREFIX}*")) if base.is_dir() else []:
        if folder.is_dir() and not folder.is_symlink() and not _owner_alive(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    return removed


def _new_cell_folder(node_id: str) -> Path:
    import psutil

    base = cells_folder()
    base.mkdir(parents=True, exist_ok=True)
    sweep_stale_cells(base)
    folder = Path(tempfile.mkdtemp(prefix=f"{CELL_PREFIX}{node_id[:12]}-", dir=base))
    me = psutil.Process()
    (folder / OWNER_FILE).write_text(json.dumps({"pid": me.pid, "created": me.create_time()}), encoding="utf-8")
    return folder


def cell_payload(cell: Cell, context: CellContext) -> dict[str, Any]:
    """Everything one cell needs on the node, as plain data (the files by content)."""
    def file(path: Path) -> dict[str, Any]:
        data = Path(path).read_bytes()
        return {"name": Path(path).name, "data": data, "sha256": hashlib.sha256(data).hexdigest()}

    variant, reference = cell.variant, context.reference_inputs
    weights = variant.provenance.get("weights")  # an OpenVINO IR's .bin travels with it
    return {"variant": {"name": variant.name, "precision": variant.precision, "provenance": variant.provenance,
                        "file": file(variant.path),
                        "weights": file(variant.path.parent / weights["path"]) if weights else None},
            "profile": cell.profile.model_dump(mode="json"), "timing": file(cell.timing_inputs), "stem": cell.stem,
            "reference": file(reference) if reference is not None else None,
            "reference_sha": context.reference_sha,
            "extra": {name: file(p) for name, p in context.extra_references.items()}, "proxy": context.proxy,
            "backend": cell.backend, "precision": cell.precision, "model_reference": cell.model_reference}


def _write_checked(folder: Path, entry: dict[str, Any], expected_sha256: str | None = None) -> Path:
    data: bytes = entry["data"]
    digest = hashlib.sha256(data).hexdigest()
    for wanted in {entry["sha256"], expected_sha256} - {None}:
        if digest != wanted:
            raise InputRejectedError(f"{entry['name']}: content hash {digest[:12]} on arrival, "
                                     f"expected {str(wanted)[:12]}")
    path = folder / Path(entry["name"]).name  # a bare name: nothing outside the cell's folder
    path.write_bytes(data)
    return path


def measure_payload(payload: dict[str, Any], node_id: str) -> dict[str, Any]:
    """Measure one cell here; returns ``measurement`` (the JSON document), ``files`` (outputs file name →
    bytes) and ``lab`` (node id, host name, start and end time)."""
    started = now_ms()
    folder = _new_cell_folder(node_id)
    try:
        described = payload["variant"]
        if described.get("weights"):
            _write_checked(folder, described["weights"], described["provenance"]["weights"]["sha256"])
        variant_path = _write_checked(folder, described["file"], described["provenance"].get("sha256"))
        variant = Variant(described["name"], variant_path, described["precision"], described["provenance"])
        timing = _write_checked(folder, payload["timing"])
        reference = _write_checked(folder, payload["reference"]) if payload["reference"] else None
        extra = {name: _write_checked(folder, entry) for name, entry in payload["extra"].items()}
        profile = HardwareProfile.model_validate(payload["profile"])
        measurements = folder / "measurements"
        cell = Cell(variant, profile, timing, payload["backend"], payload["precision"], payload["model_reference"],
                    file_stem=payload["stem"])
        # a node that dies mid-cell (its Ray processes killed) cannot clean up: the worker's lifeline then
        # removes the cell's folder with its own
        measurement = measure_cell(cell, CellContext(measurements, reference, payload["reference_sha"], extra,
                                                     payload["proxy"], force=True, owned=(folder,)))
        files = {path.name: path.read_bytes() for path in sorted(measurements.glob("*.outputs.npz"))}
        return {"measurement": measurement.model_dump(mode="json"), "files": files,
                "lab": {"node_id": node_id, "hostname": socket.gethostname(), "started_at": started,
                        "ended_at": now_ms()}}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
