"""The TensorRT engine cache: keys, a manifest per engine, integrity checks before deserialising.

An engine is only valid for the ONNX bytes it was built from, the TensorRT version that built it, the
GPU (name and compute capability) it was built on, and the build options.  All of these make up an
``EngineKey``; its digest names the cache entry, so changing any part of the key is a miss (a new
build), never a stale engine.  Each entry holds ``engine.plan`` and ``manifest.json``; the manifest
(written last, atomically: it is the commit point) records the full key and the SHA-256 and size of
the engine bytes.  ``EngineCache.load`` re-hashes the bytes and compares them with the manifest
*before* anything is handed to TensorRT: a truncated, corrupted or substituted engine is refused
without being deserialised.  Nothing here imports TensorRT; the deserialiser is passed in.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from edgeopt.core.fileio import sha256_json, write_bytes_atomic
from edgeopt.errors import BackendError, InputRejectedError

MANIFEST_SCHEMA = 1
ENGINE_FILE = "engine.plan"
MANIFEST_FILE = "manifest.json"

T = TypeVar("T")


class EngineIntegrityError(InputRejectedError):
    """An engine file does not match its manifest (hash or size), or its manifest is unreadable."""


class EngineMismatchError(InputRejectedError):
    """An engine was built for another ONNX file, TensorRT version, GPU or set of build options."""


class EngineDeserializeError(BackendError):
    """TensorRT returned no engine for bytes that passed the integrity check."""


@dataclass(frozen=True)
class InputShapeRange:
    """One input's optimisation-profile shapes as TensorRT takes them."""

    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


@dataclass(frozen=True)
class BuildOptions:
    """Everything that changes what ``build_serialized_network`` produces.

    ``flags`` are TensorRT ``BuilderFlag`` member names (only ``FP16`` on 10.x weakly typed builds);
    ``strongly_typed`` selects ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` (always on in 11.x).
    The timing cache is not part of the options: it speeds a build up, the engine format is the same.
    """

    precision: str
    strongly_typed: bool
    flags: tuple[str, ...] = ()
    workspace_mb: float | None = None
    builder_optimization_level: int = 3
    shape_profile: tuple[InputShapeRange, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["flags"] = list(self.flags)
        data["shape_profile"] = [{"name": r.name, "min": list(r.min), "opt": list(r.opt), "max": list(r.max)}
                                 for r in self.shape_profile]
        return data


@dataclass(frozen=True)
class EngineKey:
    """What an engine is valid for; ``digest`` names its cache entry."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    options: BuildOptions = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"onnx_sha256": self.onnx_sha256, "tensorrt_version": self.tensorrt_version,
                "gpu_name": self.gpu_name, "compute_capability": self.compute_capability,
                "options": self.options.to_dict()}

    def digest(self) -> str:
        return sha256_json(self.to_dict())

    def differences(self, other: dict[str, Any]) -> list[str]:
        """Human sentences for every key part in which a stored key ``other`` differs from this one."""
        mine = self.to_dict()
        return [f"{part}: engine has {other.get(part)!r}, wanted {mine[part]!r}"
                for part in mine if other.get(part) != mine[part]]


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_verified_engine(engine_path: Path, manifest_path: Path, key: EngineKey | None = None) -> bytes:
    """The engine bytes, only after they match the manifest's size and SHA-256 (and, given ``key``, the
    manifest's key matches it).  Raises ``EngineIntegrityError`` or ``EngineMismatchError``; never
    returns bytes that were not verified."""
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise EngineIntegrityError(f"{manifest_path}: engine manifest missing or unreadable: {error}") from error
    if not isinstance(manifest, dict) or manifest.get("schema") != MANIFEST_SCHEMA:
        raise EngineIntegrityError(f"{manifest_path}: not an edgeopt engine manifest (schema {MANIFEST_SCHEMA})")
    if key is not None:
        differences = key.differences(manifest.get("key") or {})
        if differences:
            raise EngineMismatchError(f"{engine_path}: engine was built for something else: " + "; ".join(differences))
    try:
        data = engine_path.read_bytes()
    except OSError as error:
        raise EngineIntegrityError(f"{engine_path}: cannot read engine: {error}") from error
    if len(data) != manifest.get("size_bytes"):
        raise EngineIntegrityError(f"{engine_path}: engine is {len(data)} bytes, its manifest says "
                                   f"{manifest.get('size_bytes')} (truncated or replaced); refused before "
                                   "deserialising")
    actual = _sha256_bytes(data)
    if actual != manifest.get("sha256"):
        raise EngineIntegrityError(f"{engine_path}: engine SHA-256 {actual[:16]}... does not match its manifest "
                                   f"{str(manifest.get('sha256'))[:16]}...; refused before deserialising")
    return data


class EngineCache:
    """A directory of engines, one sub-directory per ``EngineKey.digest()``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def entry(self, key: EngineKey) -> Path:
        return self.root / key.digest()[:32]

    def store(self, key: EngineKey, engine: bytes, extra: dict[str, Any] | None = None) -> Path:
        """Write the engine, then its manifest (the commit point); returns the engine path."""
        directory = self.entry(key)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / MANIFEST_FILE).unlink(missing_ok=True)  # an entry without a manifest is a miss
        write_bytes_atomic(directory / ENGINE_FILE, engine)
        manifest = {"schema": MANIFEST_SCHEMA, "key": key.to_dict(), "digest": key.digest(),
                    "sha256": _sha256_bytes(engine), "size_bytes": len(engine), **(extra or {})}
        write_bytes_atomic(directory / MANIFEST_FILE, json.dumps(manifest, indent=1, sort_keys=True).encode("utf-8"))
        return directory / ENGINE_FILE

    def load(self, key: EngineKey) -> bytes | None:
        """Verified engine bytes for ``key``, or None when there is no committed entry (a miss).

        An entry whose bytes or key do not match its manifest raises: it is never deserialised."""
        directory = self.entry(key)
        if not (directory / MANIFEST_FILE).is_file():
            return None
        return read_verified_engine(directory / ENGINE_FILE, directory / MANIFEST_FILE, key)

    def open(self, key: EngineKey, deserialize: Callable[[bytes], T | None]) -> T | None:
        """Deserialise the cached engine for ``key`` (None on a miss); ``deserialize`` sees verified bytes
        only, and a None from it is an ``EngineDeserializeError``."""
        data = self.load(key)
        if data is None:
            return None
        engine = deserialize(data)
        if engine is None:
            raise EngineDeserializeError(f"{self.entry(key) / ENGINE_FILE}: TensorRT could not deserialise the "
                                         "engine although it matches its manifest (see the TensorRT log above)")
        return engine

    def invalidate(self, key: EngineKey) -> bool:
        """Remove ``key``'s entry; True if there was one."""
        directory = self.entry(key)
        if directory.exists():
            shutil.rmtree(directory)
            return True
        return False

    def prune(self, keep: Callable[[dict[str, Any]], bool]) -> list[Path]:
        """Remove every entry whose manifest ``keep`` rejects (or that has no readable manifest), e.g. all
        engines of another TensorRT version after an upgrade; returns the removed directories."""
        removed: list[Path] = []
        if not self.root.is_dir():
            return removed
        for directory in sorted(p for p in self.root.iterdir() if p.is_dir()):
            try:
                manifest = json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8"))
                wanted = isinstance(manifest, dict) and keep(manifest.get("key") or {})
            except (OSError, ValueError):
                wanted = False
            if not wanted:
                shutil.rmtree(directory)
                removed.append(directory)
        return removed
