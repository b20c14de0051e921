"""Calibration and evaluation data: strict loading, validation and a hashed, immutable sample set.

A source is a directory holding ``manifest.yaml`` (kind ``arrays``: ``.npz``/``.npy`` files; kind ``images``:
JPEG/PNG files plus a preprocessing recipe) or a ``package.module:function`` entry point returning or yielding feed
dicts (read up to ``max_samples``, by default :data:`ENTRY_POINT_MAX_SAMPLES`, within
:data:`ENTRY_POINT_TIME_LIMIT_S`; whatever its code raises, ``sys.exit`` included, is exit 3 naming it). Every
sample is checked before a quantizer sees it (names, dtypes, shapes, finiteness, count); each failure is a one-line
``CalibrationError`` naming the file (or sample index) and the field. Arrays are read with ``allow_pickle=False``
only; the manifest with the strict, bounded loader of ``edgeopt.core.yaml_loader`` (no tags, anchors, aliases or
duplicate keys; depth and size capped). A manifest's ``files`` pattern is relative and stays inside the folder:
``..``, absolute patterns and files (or symlinks) that resolve outside are refused, and the files read are hashed
into provenance.
"""

from __future__ import annotations

import hashlib
import importlib
import re
import stat
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from types import MappingProxyType
from typing import IO, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator

from edgeopt.core.fileio import sha256_file, write_npz_atomic
from edgeopt.core.yaml_loader import load_yaml_file
from edgeopt.errors import USER_CODE_ERRORS, CalibrationError
from edgeopt.models.input_spec import InputSpec
from edgeopt.models.modelref import call_user, user_code_error

__all__ = [
    "SHIPPED_DATA_DIR", "CalibrationSet", "content_hash", "load_calibration",
    "load_eval_split", "validate_samples",
]

Feed = dict[str, np.ndarray]
#: Where a source checkout keeps the shipped sets (``digits``, ``images``).
SHIPPED_DATA_DIR = Path(__file__).resolve().parents[2] / "calibration_data"
_ENTRY_POINT = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_NUMERIC_KINDS = "biufc"
#: An entry point (``package.module:function``) is read up to this many samples when no ``max_samples``
#: (``--max-calibration-samples``) is given: a data loader's iterator may never end.  The first N are kept.
ENTRY_POINT_MAX_SAMPLES = 1000
#: An entry point still yielding after this many seconds is refused (exit 3), whatever the sample cap.
ENTRY_POINT_TIME_LIMIT_S = 600.0
_END = object()  # what ``next`` returns once an entry point's iterable is exhausted


def content_hash(samples: Iterable[Mapping[str, np.ndarray]]) -> str:
    """sha256 over each sample in order and each input name sorted: name, dtype, shape, raw bytes."""
    digest = hashlib.sha256()
    for sample in samples:
        for name in sorted(sample):
            array = np.ascontiguousarray(sample[name])
            digest.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode())
            digest.update(array.tobytes())
    return digest.hexdigest()


def _read_only(array: np.ndarray) -> np.ndarray:
    out = np.array(array, copy=True, order="C")
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class CalibrationSet:
    """Ordered read-only feed dicts plus provenance; ``content_hash`` is derived, never passed in."""

    name: str
    source: str
    samples: tuple[Feed, ...]  # plain dicts (runtimes want dicts); arrays are read-only
    provenance: str = ""
    licence: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    content_hash: str = field(init=False)

    def __post_init__(self) -> None:
        frozen = tuple({k: _read_only(v) for k, v in s.items()} for s in self.samples)
        object.__setattr__(self, "samples", frozen)
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))
        object.__setattr__(self, "content_hash", content_hash(frozen))

    @property
    def count(self) -> int:
        """Number of samples."""
        return len(self.samples)

    def feeds(self) -> Iterator[Feed]:
        """Yield each sample as a fresh ``{input name: read-only array}`` dict, in the fixed order."""
        for sample in self.samples:
            yield dict(sample)

    def take(self, n: int) -> CalibrationSet:
        """The first ``min(n, count)`` samples as a new set (its hash recomputed)."""
        if n < 1:
            raise ValueError(f"take(n) needs n >= 1, got {n}")
        meta = {**self.metadata, "taken_from": self.content_hash}
        return CalibrationSet(self.name, self.source, self.samples[:n], self.provenance, self.licence, meta)

    def to_npz(self, path: str | Path) -> Path:
        """Atomically write the samples stacked along a new leading axis (``arr[i]`` is sample i)."""
        target = Path(path)
        if not self.samples:
            raise CalibrationError(f"{self.source}: cannot write an empty calibration set to {target}")
        stacked: dict[str, np.ndarray] = {}
        for name in sorted(self.samples[0]):
            shapes = sorted({s[name].shape for s in self.samples})
            if len(shapes) != 1:
                raise CalibrationError(
                    f"{self.source}: input '{name}': samples differ in shape {shapes}; cannot stack them"
                )
            stacked[name] = np.stack([s[name] for s in self.samples])
        write_npz_atomic(target, stacked)
        return target

    def describe(self) -> dict[str, Any]:
        """Provenance record: name, source, count, content_hash, provenance, licence, and for a folder the
        number of files read and ``files_sha256`` (see :func:`files_digest`)."""
        keys = ("name", "source", "count", "content_hash", "provenance", "licence")
        record = {key: getattr(self, key) for key in keys}
        if "files_sha256" in self.metadata:
            record["file_count"] = len(self.metadata.get("files", ()))
            record["files_sha256"] = self.metadata["files_sha256"]
        return record


def files_digest(file_hashes: Mapping[str, str]) -> str:
    """sha256 over the files a folder set was read from: for each relative name in sorted order,
    ``name \0 sha256-of-its-bytes \n``.  Renaming, adding, removing or editing a file changes it."""
    digest = hashlib.sha256()
    for name in sorted(file_hashes):
        digest.update(f"{name}\0{file_hashes[name]}\n".encode())
    return digest.hexdigest()


# -------------------------------------------------------------------------------------------- manifest


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputDecl(_Strict):
    """One declared input; ``shape`` is the per-sample shape as fed (ints, or strings if symbolic)."""

    name: str = Field(min_length=1)
    dtype: str
    shape: list[int | str]

    @field_validator("shape", mode="before")
    @classmethod
    def _dims(cls, value: Any) -> Any:
        if not isinstance(value, list):
            raise ValueError("expected a list of dims")
        for dim in value:
            is_dim = isinstance(dim, int) and not isinstance(dim, bool) and dim >= 0
            if not (is_dim or (isinstance(dim, str) and dim)):
                raise ValueError(f"dim {dim!r} is neither a non-negative int nor a symbolic name")
        return value

    @field_validator("dtype")
    @classmethod
    def _numeric_dtype(cls, value: str) -> str:
        try:
            dtype = np.dtype(value)
        except TypeError as e:
            raise ValueError(f"{value!r} is not a numpy dtype name") from e
        if dtype.kind not in _NUMERIC_KINDS:
            raise ValueError(f"{value!r} is not a numeric dtype")
        return dtype.name


class SourceDecl(_Strict):
    """Where one shipped file came from and under which licence."""

    file: str
    origin: str
    licence: str


class Preprocess(_Strict):
    """Image recipe: resize shorter side, center crop, scale, normalise, layout, channel order, dtype."""

    resize_shorter: PositiveInt | None = None
    center_crop: PositiveInt | None = None
    scale: float = 1.0 / 255.0
    mean: list[float] = Field(default=[0.0, 0.0, 0.0], min_length=1, max_length=3)
    std: list[float] = Field(default=[1.0, 1.0, 1.0], min_length=1, max_length=3)
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    channel_order: Literal["RGB", "BGR"] = "RGB"
    dtype: Literal["float32", "float16"] = "float32"

    @field_validator("std")
    @classmethod
    def _nonzero(cls, value: list[float]) -> list[float]:
        if 0 in value:
            raise ValueError("std values must be non-zero")
        return value


class _Manifest(_Strict):
    name: str = Field(min_length=1)
    description: str
    provenance: str
    licence: str
    source_url: str | None = None
    inputs: list[InputDecl] = Field(min_length=1)
    files: str | None = None

    @field_validator("files")
    @classmethod
    def _inside_the_folder(cls, value: str | None) -> str | None:
        """A glob relative to the folder that cannot climb out of it (``..``) nor start elsewhere (``/``)."""
        if value is None:
            return value
        if not value.strip():
            raise ValueError("empty pattern; give a glob relative to the folder, e.g. '*.npz'")
        windows = PureWindowsPath(value)
        if value.startswith(("/", "\\", "~")) or windows.is_absolute() or windows.drive:
            raise ValueError(f"{value!r} is an absolute pattern; give a glob relative to the calibration "
                             "folder, e.g. '*.npz' or 'samples/*.npz'")
        if ".." in PurePosixPath(value).parts or ".." in windows.parts:
            raise ValueError(f"{value!r} climbs out of the calibration folder ('..' is refused); keep the data "
                             "inside the folder")
        return value


class ArraysManifest(_Manifest):
    """kind: arrays -- .npz/.npy files, one sample per file or ``stacked`` along a leading axis."""

    kind: Literal["arrays"]
    stacked: bool = False


class ImagesManifest(_Manifest):
    """kind: images -- JPEG/PNG files turned into one input by ``preprocess``."""

    kind: Literal["images"]
    inputs: list[InputDecl] = Field(min_length=1, max_length=1)
    preprocess: Preprocess
    sources: list[SourceDecl] | None = None


def load_manifest(path: Path) -> ArraysManifest | ImagesManifest:
    """Parse ``manifest.yaml`` with the strict bounded loader and validate it strictly."""
    try:
        document = load_yaml_file(path, source=str(path), error=CalibrationError, what="manifest").data
    except FileNotFoundError as e:
        raise CalibrationError(f"{path}: manifest missing; a calibration directory needs one") from e
    if not isinstance(document, dict):
        raise CalibrationError(f"{path}: expected a mapping of keys, got {type(document).__name__}")
    models: dict[Any, type[ArraysManifest] | type[ImagesManifest]] = {
        "arrays": ArraysManifest, "images": ImagesManifest,
    }
    kind = document.get("kind")
    if not isinstance(kind, str) or kind not in models:
        shown = repr(kind) if len(repr(kind)) <= 60 else repr(kind)[:60] + "..."
        raise CalibrationError(f"{path}: key 'kind': {shown} is not one of 'arrays', 'images'")
    try:
        return models[kind].model_validate(document)
    except ValidationError as e:
        first = e.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "<root>"
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        message = str(first["msg"]).removeprefix("Value error, ")
        raise CalibrationError(f"{path}: key '{key}': {message}{more}") from e


# ---------------------------------------------------------------------------------------------- checks


def _fmt_shape(shape: Sequence[int | str]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def validate_samples(
    samples: Sequence[Mapping[str, np.ndarray]],
    expected_inputs: Sequence[InputSpec] | None,
    *,
    min_samples: int,
    source_label: str,
    sample_labels: Sequence[str] | None = None,
) -> None:
    """Raise ``CalibrationError`` unless every sample can feed a model with ``expected_inputs``.

    Checks: at least one and at least ``min_samples`` samples; exactly the expected input names;
    numeric and equal dtypes; compatible shapes (symbolic dims match any size; equal rank across
    samples); finite float values.  Without ``expected_inputs`` the first sample defines what every
    sample must match exactly.  ``sample_labels[i]`` (default ``"<source_label> sample i"``) names
    sample i in messages.
    """
    if len(samples) == 0 or len(samples) < min_samples:
        raise CalibrationError(
            f"{source_label}: {len(samples)} calibration sample(s) found, at least {max(min_samples, 1)} "
            "required (add samples, or lower the minimum with min_samples=)"
        )
    labels = list(sample_labels or [f"{source_label} sample {i}" for i in range(len(samples))])
    if len(labels) != len(samples):
        raise ValueError(f"{len(labels)} sample labels for {len(samples)} samples")
    if expected_inputs is None:
        first = _checked_sample(samples[0], labels[0])
        expected_inputs = [InputSpec(n, tuple(v.shape), v.dtype.name) for n, v in first.items()]
    specs = {spec.name: spec for spec in expected_inputs}
    for sample, label in zip(samples, labels, strict=True):
        sample = _checked_sample(sample, label)
        missing, extra = sorted(set(specs) - set(sample)), sorted(set(sample) - set(specs))
        if missing or extra:
            parts = [f"{what} input(s) {', '.join(map(repr, names))}"
                     for what, names in (("missing", missing), ("unexpected", extra)) if names]
            raise CalibrationError(f"{label}: {'; '.join(parts)} (expected exactly {sorted(specs)})")
        for name, spec in specs.items():
            value = sample[name]
            if value.dtype.name != np.dtype(spec.dtype).name:
                raise CalibrationError(
                    f"{label}: input '{name}': dtype {value.dtype.name} != expected {spec.dtype}"
                )
            if not spec.accepts_shape(value.shape):
                raise CalibrationError(
                    f"{label}: input '{name}': shape {_fmt_shape(value.shape)} != expected "
                    f"{_fmt_shape(spec.shape)}"
                )
            if value.dtype.kind in "fc":
                nan, inf = int(np.isnan(value).sum()), int(np.isinf(value).sum())
                if nan or inf:
                    raise CalibrationError(
                        f"{label}: input '{name}': {nan} NaN and {inf} Inf of {value.size} values; "
                        "calibration values must be finite"
                    )


def _checked_sample(sample: object, label: str) -> Mapping[str, np.ndarray]:
    if not isinstance(sample, Mapping):
        raise CalibrationError(f"{label}: is a {type(sample).__name__}, expected a dict of name -> array")
    for name, value in sample.items():
        if not isinstance(value, np.ndarray):
            raise CalibrationError(f"{label}: input '{name}': is a {type(value).__name__}, not an ndarray")
        if value.dtype.kind not in _NUMERIC_KINDS:
            raise CalibrationError(f"{label}: input '{name}': dtype {value.dtype} is not numeric")
    return sample


# --------------------------------------------------------------------------------------------- loading


def _is_entry_point(source: str | Path) -> bool:
    return (
        isinstance(source, str)
        and "/" not in source
        and "\\" not in source
        and _ENTRY_POINT.match(source) is not None
        and not Path(source).exists()
    )


def load_calibration(
    source: str | Path,
    *,
    expected_inputs: Sequence[InputSpec] | None = None,
    min_samples: int = 16,
    max_samples: int | None = None,
) -> CalibrationSet:
    """Load, validate and hash a calibration set from a manifest directory or an entry point.

    Order is deterministic: sorted file names, stacked rows as stored, entry-point order as yielded;
    ``max_samples`` keeps the first N.  Samples are checked against the manifest's declared inputs
    and, when given, ``expected_inputs`` (the model's).
    """
    if max_samples is not None and max_samples < 1:
        raise CalibrationError(f"{source}: max_samples must be >= 1, got {max_samples}")
    if _is_entry_point(source):
        return _load_entry_point(str(source), expected_inputs, min_samples, max_samples)
    directory = Path(source)
    if not directory.is_dir():
        raise CalibrationError(f"{directory}: not a directory, nor a 'package.module:function' entry point")
    manifest = load_manifest(directory / "manifest.yaml")
    patterns = [manifest.files] if manifest.files else (
        ["*.jpg", "*.jpeg", "*.png"] if isinstance(manifest, ImagesManifest) else ["*.npz"]
    )
    files = _files_inside(directory, patterns)
    if not files:
        raise CalibrationError(f"{directory}: key 'files': no file matches {' or '.join(patterns)}")
    if isinstance(manifest, ImagesManifest):
        name = manifest.inputs[0].name
        if expected_inputs is not None and len(expected_inputs) == 1:
            # an image folder feeds a single-image-input model whatever that input is called
            name = expected_inputs[0].name
        samples: list[Feed] = [{name: _preprocess_image(p, manifest.preprocess)} for p in files]
        labels = [str(p) for p in files]
    else:
        samples, labels = _read_arrays(files, manifest)
    samples, labels = samples[:max_samples], labels[:max_samples]
    declared = [InputSpec(d.name, tuple(d.shape), d.dtype) for d in manifest.inputs]
    if isinstance(manifest, ImagesManifest):
        declared = [InputSpec(name, d.shape, d.dtype) for d in declared]
    for specs in (declared, expected_inputs):
        if specs is not None:
            validate_samples(samples, specs, min_samples=min_samples, source_label=str(directory),
                             sample_labels=labels)
    hashes = {f.relative_to(directory).as_posix(): sha256_file(f) for f in files}  # names as matched
    metadata = {"kind": manifest.kind, "description": manifest.description, "source_url": manifest.source_url,
                "files": list(hashes), "file_sha256": hashes, "files_sha256": files_digest(hashes)}
    return CalibrationSet(manifest.name, str(directory), tuple(samples), manifest.provenance,
                          manifest.licence, metadata)


def _files_inside(directory: Path, patterns: Sequence[str]) -> list[Path]:
    """The regular files the patterns match, sorted; each must resolve inside ``directory`` (a symlink, or a
    symlinked sub-folder, pointing out of it is refused).  ``manifest.yaml`` is never a data file."""
    root = directory.resolve()
    manifest = root / "manifest.yaml"
    found: set[Path] = set()
    for pattern in patterns:
        try:
            matches = sorted(directory.glob(pattern))
        except (ValueError, NotImplementedError, OSError) as e:
            raise CalibrationError(f"{directory}: key 'files': pattern {pattern!r} cannot be used ({e})") from e
        for path in matches:
            resolved = path.resolve()
            if not resolved.is_relative_to(root):
                raise CalibrationError(
                    f"{path}: resolves to {resolved}, outside the calibration folder {directory}; files "
                    "(and symlinks) must stay inside the folder")
            if resolved != manifest and not path.is_dir():  # a FIFO or device is refused, not dropped
                found.add(_regular(path))
    return sorted(found)


def _regular(path: Path) -> Path:
    """``path`` when it is a regular file (decided from ``os.stat``, before anything opens it: a FIFO would block
    the read, a device would never end); else CalibrationError naming it and what it is."""
    try:
        mode = path.stat().st_mode
    except OSError as e:
        raise CalibrationError(f"{path}: cannot read it ({e.strerror or type(e).__name__})") from e
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _NOT_REGULAR if test(mode)), "a special file")
        raise CalibrationError(f"{path}: not a regular file ({kind}); calibration and eval data must be regular "
                               "files")
    return path


_NOT_REGULAR = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def cap_note(calibration: CalibrationSet) -> str | None:
    """The sentence saying an entry point was cut at its sample cap (None when it ended by itself)."""
    if "capped_at" not in calibration.metadata:
        return None
    return (f"calibration: read the first {calibration.count} samples of {calibration.name}, which yields more: "
            f"the cap is {calibration.metadata['cap_source']}")


def _load_entry_point(
    spec: str, expected: Sequence[InputSpec] | None, min_samples: int, max_samples: int | None
) -> CalibrationSet:
    """Call the entry point and read what it yields: at most ``max_samples`` (else
    :data:`ENTRY_POINT_MAX_SAMPLES`) samples, within :data:`ENTRY_POINT_TIME_LIMIT_S`.  Whatever its code raises,
    ``sys.exit`` included, is a UserCodeError (exit 3) naming it; a stop signal between samples stops edgeopt."""
    module_name, _, attr_path = spec.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr_path.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as e:
        raise CalibrationError(f"{spec}: cannot import calibration entry point ({e})") from e
    except USER_CODE_ERRORS as e:
        raise user_code_error(spec, f"importing module '{module_name}'", e) from e
    if not callable(target):
        raise CalibrationError(f"{spec}: entry point is a {type(target).__name__}, not a callable")
    what = "your calibration entry point"
    produced = call_user(spec, what, target)
    if isinstance(produced, Mapping) or not isinstance(produced, Iterable):
        raise CalibrationError(f"{spec}: returned a {type(produced).__name__}; expected an iterable of feed dicts")
    cap = ENTRY_POINT_MAX_SAMPLES if max_samples is None else max_samples
    deadline = time.monotonic() + ENTRY_POINT_TIME_LIMIT_S
    samples: list[Any] = []
    items = call_user(spec, what, iter, produced)
    while len(samples) < cap:  # a stop signal raises in the user's code or here, between two samples
        if time.monotonic() > deadline:
            raise CalibrationError(
                f"{spec}: still yielding samples after {ENTRY_POINT_TIME_LIMIT_S:g} s ({len(samples)} read, "
                f"cap {cap}); make it end sooner or pass --max-calibration-samples N")
        item = call_user(spec, what, next, items, _END)
        if item is _END:
            break
        samples.append(item)
    capped = len(samples) >= cap  # stopped by the cap, not by the iterable's end
    close = getattr(items, "close", None)
    if callable(close):  # a generator stopped at the cap runs its ``finally`` now ("ignored GeneratorExit": exit 3)
        call_user(spec, what, close)
    validate_samples(samples, expected, min_samples=min_samples, source_label=spec)
    metadata: dict[str, Any] = {"kind": "entry-point"}
    if capped:
        metadata["capped_at"] = cap
        metadata["cap_source"] = ("--max-calibration-samples" if max_samples is not None
                                  else f"edgeopt's default cap for an entry point ({ENTRY_POINT_MAX_SAMPLES})")
    return CalibrationSet(spec, spec, tuple(samples), f"entry point {spec}", "", metadata)


_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip archive (.npz), an empty one


def _sniff(head: bytes) -> str:
    """What a file that is neither .npz nor .npy looks like, for the refusal message."""
    if not head:
        return "is empty (0 bytes)"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "is a Python pickle; refused, edgeopt never unpickles data files"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:  # a character cut at the end of the head is still text
        text = head[:e.start].decode("utf-8") if e.start >= len(head) - 3 else ""
    if text and all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        first = " ".join(text.split())[:40]
        return f"is a text file (starts {first!r}), not a .npz or .npy array file"
    kinds = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image",
             b"\x1f\x8b": "a gzip file", b"\x08": "a protobuf (an ONNX model?)"}
    what = next((name for magic, name in kinds.items() if head.startswith(magic)), "binary data")
    return f"holds {what}, not a .npz or .npy array file"


#: A .npz member that declares more than this many bytes ...
BOMB_MIN_BYTES = 64 * 2**20
#: ... in a compressed size this many times smaller is a compression bomb, refused from its npy header (random
#: or image data deflates 1-10x; only a constant array deflates ~1000x, which is no data to calibrate on).
BOMB_RATIO = 100


def _check_declared_sizes(path: Path, handle: IO[bytes]) -> None:
    """Refuse a .npz from its members' npy headers, before numpy allocates anything: a member whose declared
    array is a compression bomb (:data:`BOMB_MIN_BYTES`, :data:`BOMB_RATIO`), or members declaring more bytes
    than this machine has memory available."""
    import zipfile

    import psutil

    total = 0
    with zipfile.ZipFile(handle) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                        else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read(member)
            declared = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
            total += declared
            name = info.filename.removesuffix(".npy")
            if declared > BOMB_MIN_BYTES and declared > BOMB_RATIO * max(info.compress_size, 1):
                raise CalibrationError(
                    f"{path}: array '{name}' declares {_fmt_shape(shape)} {dtype} ({declared / 2**20:,.0f} MiB) in "
                    f"{info.compress_size / 2**20:,.1f} MiB compressed: refused as a compression bomb, before "
                    "reading it (store real data, e.g. with np.savez)")
    available = psutil.virtual_memory().available
    if total > available:
        raise CalibrationError(f"{path}: its arrays declare {total / 2**30:,.1f} GiB, more than the "
                               f"{available / 2**30:,.1f} GiB of memory available; refused before reading them")


def _load_array_file(path: Path) -> dict[str, np.ndarray]:
    """Every array of a .npz (by name) or .npy (under ``""``), fully read so truncation surfaces here.

    The first bytes decide what the file is (numpy's own sniffing would call a text file "pickled")."""
    try:  # we own the handle: np.load(path) leaks it when a truncated zip fails to open
        with _regular(path).open("rb") as handle:
            head = handle.read(512)
            handle.seek(0)
            if head.startswith(_NPY_MAGIC):
                return {"": np.load(handle, allow_pickle=False)}
            if not head.startswith(_ZIP_MAGIC):
                raise CalibrationError(f"{path}: {_sniff(head)}")
            _check_declared_sizes(path, handle)
            handle.seek(0)
            with np.load(handle, allow_pickle=False) as archive:
                return {key: archive[key] for key in archive.files}
    except CalibrationError:
        raise
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise CalibrationError(
                f"{path}: holds an object (pickled) array; refused, edgeopt never unpickles data files"
            ) from e
        raise CalibrationError(f"{path}: unreadable or corrupt array file (ValueError: {e})") from e
    except Exception as e:  # zipfile.BadZipFile, EOFError, OSError, zlib.error, ...
        raise CalibrationError(f"{path}: unreadable or corrupt array file ({type(e).__name__}: {e})") from e


def _read_arrays(files: list[Path], manifest: ArraysManifest) -> tuple[list[Feed], list[str]]:
    names = [d.name for d in manifest.inputs]
    samples: list[Feed] = []
    labels: list[str] = []
    for path in files:
        arrays = _load_array_file(path)
        if "" in arrays:
            if len(names) != 1:
                raise CalibrationError(
                    f"{path}: a .npy holds one array but the manifest declares inputs {names}; use .npz"
                )
            arrays = {names[0]: arrays[""]}
        if not manifest.stacked:
            samples.append(arrays)
            labels.append(str(path))
            continue
        missing = [n for n in names if n not in arrays]
        if missing:
            raise CalibrationError(f"{path}: input(s) {missing} missing from stacked file ({sorted(arrays)})")
        rows = {d.name: _unstack(path, d.name, arrays[d.name], len(d.shape)) for d in manifest.inputs}
        counts = {n: len(r) for n, r in rows.items()}
        if len(set(counts.values())) != 1:
            raise CalibrationError(f"{path}: stacked inputs hold different sample counts {counts}")
        for i in range(counts[names[0]]):
            samples.append({n: rows[n][i] for n in names})
            labels.append(f"{path}[{i}]")
    return samples, labels


def _unstack(path: Path, name: str, array: np.ndarray, rank: int) -> list[np.ndarray]:
    """Rows of a stacked array: a new leading axis (ndim == rank+1) or the batch axis (ndim == rank)."""
    if array.ndim == rank + 1:
        return list(array)
    if array.ndim == rank >= 1:
        return [array[i : i + 1] for i in range(array.shape[0])]
    raise CalibrationError(
        f"{path}: input '{name}': stacked shape {_fmt_shape(array.shape)} cannot hold samples of rank {rank}"
    )


def _preprocess_image(path: Path, recipe: Preprocess) -> np.ndarray:
    """Decode one image and apply the recipe; returns a batch of one, (1,C,H,W) or (1,H,W,C)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise CalibrationError(f"{path}: unreadable image ({type(e).__name__}: {e})") from e
    if recipe.resize_shorter is not None:
        w, h, short = image.width, image.height, recipe.resize_shorter
        size = (short, max(1, round(h * short / w))) if w <= h else (max(1, round(w * short / h)), short)
        image = image.resize(size, Image.Resampling.BILINEAR)
    if recipe.center_crop is not None:
        crop, w, h = recipe.center_crop, image.width, image.height
        if crop > min(w, h):
            raise CalibrationError(f"{path}: image {w}x{h} is smaller than preprocess.center_crop {crop}")
        left, top = round((w - crop) / 2), round((h - crop) / 2)
        image = image.crop((left, top, left + crop, top + crop))
    pixels: np.ndarray = np.asarray(image, dtype=np.float32) * np.float32(recipe.scale)
    pixels = (pixels - np.asarray(recipe.mean, np.float32)) / np.asarray(recipe.std, np.float32)
    if recipe.channel_order == "BGR":
        pixels = pixels[..., ::-1]
    if recipe.layout == "NCHW":
        pixels = pixels.transpose(2, 0, 1)
    return np.ascontiguousarray(pixels[np.newaxis], dtype=recipe.dtype)


def load_eval_split(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a stacked evaluation npz: ``images`` (finite floats, N first) and ``labels`` (N ints)."""
    file = Path(path)
    arrays = _load_array_file(file)
    for key in ("images", "labels"):
        if key not in arrays:
            raise CalibrationError(f"{file}: array '{key}' missing (the file holds {sorted(arrays)})")
    images, labels = arrays["images"], arrays["labels"]
    if images.dtype.kind != "f" or images.ndim < 2:
        raise CalibrationError(
            f"{file}: array 'images': dtype {images.dtype} shape {_fmt_shape(images.shape)}; "
            "expected floats stacked along a leading axis"
        )
    bad = int(np.count_nonzero(~np.isfinite(images)))
    if bad:
        raise CalibrationError(f"{file}: array 'images': {bad} NaN/Inf value(s); values must be finite")
    if labels.dtype.kind not in "iu" or labels.ndim != 1 or len(labels) != len(images) or not len(labels):
        raise CalibrationError(
            f"{file}: array 'labels': dtype {labels.dtype} shape {_fmt_shape(labels.shape)}; expected "
            f"{len(images)} integers, one per image"
        )
    return images, labels
