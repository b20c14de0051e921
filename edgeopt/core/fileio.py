"""Atomic file writes, the one JSON encoder and bounded JSON reader, and content hashing.

Nothing edgeopt writes is ever half-written: every file goes to a temporary name beside its target and
is renamed over it.

**Where an output goes** (:func:`output_target`). The target is resolved first: a symlink is written through to its
real target (the temporary is made in *that* folder, never in the link's), and only a regular file is ever replaced.
A character device (``/dev/null``, a terminal, ``/dev/stdout``) or a FIFO is written in place, streamed, with no
temporary file: ``--json /dev/stdout`` prints. A path that names one of this process's own descriptors
(``/dev/stdout``, ``/proc/self/fd/1``, a link to one) is written through a duplicate of that descriptor, whatever it
is: stdout redirected to a file, or an unlinked file a CI runner captures. A FIFO nobody reads is refused at once
(no hang), and so is any other kind of file (socket, block device): :class:`NotRegularFileError`, which names the
file. A write that fails without naming a file (a full disk) is re-raised naming the target.

**JSON, and the rule for non-finite numbers.**  Every JSON document edgeopt writes goes through
:func:`dumps_json` (:func:`write_json_atomic` uses it).  A measured quantity can be NaN or infinite (an
fp16 variant whose outputs overflow has a NaN cosine and an infinite max abs error); such a float is
*data*, never a crash and never dropped: it is written as the JSON string ``"NaN"``, ``"Infinity"`` or
``"-Infinity"`` (the spellings Python's ``float()`` and JavaScript's ``Number()`` read back).  ``null``
keeps its one meaning, "not computed / not applicable", so a non-finite number is never written as
``null``.  Every typed reader turns the three strings back into floats: pydantic ``float`` fields do it
themselves, the dataclass readers through :func:`json_float` / :func:`restore_floats`; pandas reads them
as NaN/inf from ``results.csv``.  Where a figure is non-finite because of the outputs it was computed
from, the record beside it says why (``nan_values``/``inf_values`` of an output's fidelity,
``nonfinite_scores`` of a metric).  Anything else the encoder cannot represent (a set, an object) raises
``TypeError`` naming where it sits in the document; numpy scalars and arrays are written as numbers and
lists.  Readers also accept the bare tokens ``NaN``/``Infinity`` Python's ``json`` module writes by default.

**Bounded reading.**  :func:`read_json` checks ``os.stat`` before opening: anything but a regular file (a
FIFO, which would block ``open()``, or a device) is refused at once with :class:`NotRegularFileError`.
:func:`read_json` / :func:`parse_json` refuse, before parsing, a document larger
than :data:`MAX_JSON_BYTES` or nested deeper than :data:`MAX_JSON_DEPTH` with :class:`JsonLimitError` (a
``ValueError`` naming the file), so a hostile results file costs neither the memory nor the stack.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import math
import os
import re
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

MAX_JSON_BYTES = 256 * 2**20  # a results document larger than this is refused unread
MAX_JSON_DEPTH = 64  # nesting (objects and arrays) deeper than this is refused before parsing
NONFINITE_STRINGS: dict[str, float] = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}

_UMASK = os.umask(0o022)
os.umask(_UMASK)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_TEMPORARY_SUFFIX = ".tmp"
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[^.]+\.tmp$")  # what atomic_path names the temporary of NAME


def atomic_temporaries(target: Path | str) -> list[Path]:
    """The temporary files an interrupted :func:`atomic_path` write of ``target`` leaves beside it
    (``.{name}.*.tmp``)."""
    target = Path(target)
    return sorted(target.parent.glob(f".{glob.escape(target.name)}.*{_TEMPORARY_SUFFIX}"))


def target_of_temporary(path: Path) -> Path:
    """The file an :func:`atomic_path` temporary stands for (``path`` itself when it is none)."""
    match = _TEMPORARY.match(path.name)
    return path.with_name(match["name"]) if match else path


class NotRegularFileError(OSError):
    """A path that is not a regular file where edgeopt reads or replaces one; ``strerror`` says what it is (and
    is its ``str``: callers put the file name in front)."""

    def __str__(self) -> str:
        return str(self.strerror)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def not_regular(path: Path | str, mode: int) -> NotRegularFileError:
    return NotRegularFileError(errno.EINVAL, f"not a regular file ({_kind(mode)})", str(path))


def regular_file(path: Path | str) -> os.stat_result:
    """``os.stat`` of ``path`` (symlinks followed) when it is a regular file; :class:`NotRegularFileError`
    otherwise (decided from the inode, before anything opens it), ``FileNotFoundError`` when missing."""
    status = os.stat(path)
    if stat.S_ISDIR(status.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if not stat.S_ISREG(status.st_mode):
        raise not_regular(path, status.st_mode)
    return status


_DESCRIPTOR_LINK = re.compile(r"^/(?:proc/(?:self|(\d+))/fd|dev/fd)/(\d+)$")


def own_descriptor(target: Path | str) -> int | None:
    """The descriptor of this process that ``target`` names through ``/dev/stdout``, ``/dev/fd/N`` or
    ``/proc/self/fd/N`` (followed link by link, so a link to such a link counts); None for anything else.
    Opening such a path by name would open the file behind the descriptor afresh (at offset 0, or a deleted
    file's ``#inode (deleted)`` name): it is written through a duplicate of the descriptor instead."""
    path = os.path.abspath(target)
    for _ in range(40):  # the kernel's own limit on links followed
        found = _DESCRIPTOR_LINK.match(path)
        if found and (found.group(1) is None or int(found.group(1)) == os.getpid()):
            return int(found.group(2))
        if not os.path.islink(path):
            return None
        path = os.path.normpath(os.path.join(os.path.dirname(path), os.readlink(path)))
    return None


def output_target(target: Path | str) -> tuple[Path, bool]:
    """Where a write of ``target`` goes (module docstring): ``(path, True)`` to stream into a character device
    or FIFO in place, ``(the real path, False)`` to replace a regular file (or create one); a directory, socket or
    block device raises :class:`NotRegularFileError` (``IsADirectoryError`` for a directory)."""
    target = Path(target)
    try:
        status = os.stat(target)
    except FileNotFoundError:
        return Path(os.path.realpath(target)), False  # a dangling link: its target is created
    if stat.S_ISCHR(status.st_mode) or stat.S_ISFIFO(status.st_mode):
        return target, True
    if stat.S_ISDIR(status.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(target))
    if not stat.S_ISREG(status.st_mode):
        raise not_regular(target, status.st_mode)
    return Path(os.path.realpath(target)), False


def open_stream(path: Path | str, *, append: bool = False) -> IO[bytes]:
    """``path`` (a character device or FIFO, or a regular file when ``append``) opened for writing without
    creating, truncating or replacing anything; a FIFO nobody reads raises at once instead of blocking."""
    flags = os.O_WRONLY | os.O_NONBLOCK | (os.O_APPEND | os.O_CREAT if append else 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as error:
        if error.errno == errno.ENXIO:  # O_NONBLOCK on a FIFO without a reader
            raise NotRegularFileError(errno.ENXIO, "a FIFO nobody reads", str(path)) from error
        raise
    os.set_blocking(fd, True)
    return os.fdopen(fd, "ab" if append else "wb")


def naming(error: OSError, target: Path | str) -> OSError:
    """``error`` itself when it names a file, else the same error naming ``target`` (a full disk's ENOSPC)."""
    if error.filename is not None or error.errno is None:
        return error
    return OSError(error.errno, error.strerror, str(target))


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``'s real file; on success it replaces that file atomically.

    On any exception the temporary file is removed and ``target`` is left untouched.  A character device or
    FIFO target is yielded itself, to be written in place (module docstring); anything else that is not a
    regular file is refused before anything is written.
    """
    descriptor = own_descriptor(target)
    if descriptor is not None:  # ``--html /dev/stdout``: whatever fd 1 is (a pipe, a terminal, a file)
        with _through_descriptor(descriptor, target) as staged:
            yield staged
        return
    real, stream = output_target(target)
    if stream:
        with open_stream(real):  # refuses a FIFO nobody reads (the caller's open() would block); held open, a
            try:                 # reader does not see the end of the file between this open and the caller's
                yield real
            except OSError as error:
                raise naming(error, target) from error
        return
    real.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=real.parent, prefix=f".{real.name}.", suffix=_TEMPORARY_SUFFIX)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; results are meant to be shared
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, real)
        _fsync_dir(real.parent)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(error, OSError):
            raise naming(error, real) from error
        raise


@contextlib.contextmanager
def _through_descriptor(descriptor: int, target: Path | str) -> Iterator[Path]:
    """Yield a private temporary path; on success its bytes go to a duplicate of ``descriptor`` (sharing its
    offset, so they land where this process's other writes to it do), and it is removed either way."""
    fd, staged_name = tempfile.mkstemp(prefix="edgeopt-stream-", suffix=_TEMPORARY_SUFFIX)
    os.close(fd)
    staged = Path(staged_name)
    try:
        yield staged
        data = staged.read_bytes()
        for stream in (sys.stdout, sys.stderr):  # what this process printed before comes first
            with contextlib.suppress(Exception):
                stream.flush()
        with os.fdopen(os.dup(descriptor), "wb") as handle:
            handle.write(data)
    except OSError as error:
        raise naming(error, target) from error
    finally:
        with contextlib.suppress(FileNotFoundError):
            staged.unlink()


def write_bytes_atomic(target: Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(target: Path, text: str) -> None:
    write_bytes_atomic(target, text.encode("utf-8"))


def _float_text(value: float) -> str | float:
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _where(path: tuple[str | int, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".") or "(top level)"


def jsonable(document: Any, _path: tuple[str | int, ...] = ()) -> Any:
    """``document`` with every non-finite float as its string (see the module docstring), tuples as lists and
    numpy values as plain numbers and lists; TypeError, naming where, for anything JSON cannot hold."""
    if document is None or isinstance(document, (str, bool, int)):
        return document
    if isinstance(document, float):
        return _float_text(document)
    if isinstance(document, Mapping):
        result = {}
        for key, value in document.items():
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise TypeError(f"JSON document: key {key!r} at {_where(_path)} is a {type(key).__name__}, "
                                "not a string")
            result[key] = jsonable(value, (*_path, str(key)))
        return result
    if isinstance(document, (list, tuple)):
        if all(type(item) is int for item in document):  # raw samples: a long list of plain ints
            return list(document)
        return [jsonable(item, (*_path, index)) for index, item in enumerate(document)]
    if hasattr(document, "dtype") and hasattr(document, "tolist"):  # numpy scalar or array
        return jsonable(document.tolist(), _path)
    raise TypeError(f"JSON document: {type(document).__name__} at {_where(_path)} is not JSON serialisable")


def dumps_json(document: Any, *, indent: int | None = 2, sort_keys: bool = True,
               separators: tuple[str, str] | None = None) -> str:
    """The one JSON encoder: ``document`` as JSON text, non-finite floats as ``"NaN"``/``"Infinity"``/
    ``"-Infinity"`` (module docstring); never writes ``NaN`` tokens, never drops a value."""
    return json.dumps(jsonable(document), indent=indent, sort_keys=sort_keys, separators=separators,
                      allow_nan=False)


def write_json_atomic(target: Path, document: Any) -> None:
    write_text_atomic(target, dumps_json(document) + "\n")


def write_npz_atomic(target: Path, arrays: Mapping[str, Any]) -> Path:
    """Write ``arrays`` (name -> numpy array) as an uncompressed ``.npz`` at ``target``, atomically.

    numpy is imported here, not at module level: the worker imports this module and numpy anyway,
    the parent's light modules do not."""
    import numpy as np

    with atomic_path(target) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, allow_pickle=False, **arrays)
    return Path(target)


class JsonLimitError(ValueError):
    """A JSON document refused before parsing: too large or nested too deep (the message names the file)."""


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def too_deep(data: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON text ``data`` nests objects and arrays more than ``limit`` deep (strings skipped),
    decided without parsing and without recursion."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return False  # cannot nest deeper than it opens
    depth = 0
    for byte in _STRING.sub(b"", data).translate(None, _NOT_BRACKETS):
        if byte in b"[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def parse_json(data: bytes | str, source: str | Path, *, max_bytes: int = MAX_JSON_BYTES,
               max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``data`` parsed, after the size and depth checks (:class:`JsonLimitError` naming ``source``); a
    document that is not UTF-8 or not JSON raises ``ValueError`` (``json.JSONDecodeError``)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if len(raw) > max_bytes:
        raise JsonLimitError(f"{source}: {len(raw) / 2**20:.1f} MiB is larger than the {max_bytes / 2**20:g} MiB "
                             "a results file may hold; not read")
    if too_deep(raw, max_depth):
        raise JsonLimitError(f"{source}: JSON nested deeper than {max_depth} levels; not an edgeopt results file")
    try:
        return json.loads(raw.decode("utf-8"))
    except RecursionError as error:  # only if the caller's own stack was already deep
        raise JsonLimitError(f"{source}: JSON nested too deep to parse") from error


def read_json(path: Path, *, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The JSON document at ``path``, size- and depth-checked before parsing (:func:`parse_json`); a file over
    ``max_bytes`` is refused without being read.  OSError when unreadable, ValueError when not JSON."""
    regular_file(path)  # from the inode: a FIFO (open() would block) or a device is never opened
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > max_bytes:
            raise JsonLimitError(f"{path}: {size / 2**20:.1f} MiB is larger than the {max_bytes / 2**20:g} MiB "
                                 "a results file may hold; not read")
        data = handle.read(max_bytes + 1)  # a file that grows (or a device) still stops at the cap
    return parse_json(data, path, max_bytes=max_bytes, max_depth=max_depth)


def json_float(value: Any) -> float | None:
    """A float read back from JSON: a number, one of the strings of :data:`NONFINITE_STRINGS`, or None;
    ValueError for anything else."""
    if value is None:
        return None
    if isinstance(value, str):
        if value in NONFINITE_STRINGS:
            return NONFINITE_STRINGS[value]
        raise ValueError(f"expected a number, got the string {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number, got {type(value).__name__} {value!r}")
    return float(value)


def restore_floats(data: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """A copy of ``data`` with the fields ``names`` (those present) read by :func:`json_float`."""
    result = dict(data)
    for name in names:
        if name in result:
            result[name] = json_float(result[name])
    return result


def sha256_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    import hashlib  # here, not at the top: OpenSSL's libcrypto adds ~3.6 MiB to a CPU worker, which never hashes

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_json(document: Any) -> str:
    import hashlib  # see sha256_file

    return hashlib.sha256(dumps_json(document, indent=None, separators=(",", ":")).encode()).hexdigest()
