"""One writing command per output folder: an OS file lock on ``FOLDER/.edgeopt.lock`` that names its holder.

``run``, ``profile``, ``tune``, ``sweep``, ``ab``, ``rerun --out`` and ``report`` (when it writes into the run
folder) hold it while they work.  A second command on the same folder stops at once with
:class:`FolderBusyError` (exit 2) naming the folder and the holder: pid, command and start time, which the
lock file records.  The lock is ``flock`` on Linux and macOS and ``msvcrt.locking`` on Windows: the
operating system drops it when its holder dies, however it dies, so a lock file whose lock is free was
left by a killed command (*stale*) and is taken over with a notice on stderr.  Where the file system has
no file locks, the recorded pid alone decides (a live pid holds the folder).

The file is removed on release (and a folder the lock created is removed again when nothing else was
written into it), and a measurement worker whose parent was killed removes it too
(:func:`remove_if_abandoned`), so no lock file outlives its command.  Within one process the lock is
re-entrant (``sweep`` runs ``run_pipeline`` in the folder it holds).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from edgeopt.errors import ConfigError

__all__ = ["LOCK_NAME", "FolderBusyError", "Holder", "abandon_held_locks", "held_locks", "remove_if_abandoned",
           "run_lock"]

LOCK_NAME = ".edgeopt.lock"
_WINDOWS_LOCK_OFFSET = 1 << 20  # msvcrt locks a byte range that readers cannot read: one far past the record


class FolderBusyError(ConfigError):
    """Another edgeopt command is writing the output folder (exit 2)."""


@dataclass(frozen=True)
class Holder:
    """What a lock file records about the command that holds (or held) it."""

    pid: int | None
    command: str
    started: str
    host: str

    def describe(self) -> str:
        where = "" if self.host in ("", socket.gethostname()) else f" on {self.host}"
        pid = "an unknown pid" if self.pid is None else f"pid {self.pid}"
        return f"{pid}{where}, edgeopt {self.command or '?'}, started {self.started or '?'}"


@dataclass
class _Held:
    path: Path
    fd: int
    created: list[Path] = field(default_factory=list)
    depth: int = 1


_HELD: dict[Path, _Held] = {}
_GUARD = threading.Lock()


def _notice(line: str) -> None:
    print(line, file=sys.stderr)


@contextlib.contextmanager
def run_lock(folder: Path | str, command: str, notice: Callable[[str], None] = _notice) -> Iterator[Path]:
    """Hold the lock of ``folder`` (created if missing) while the block runs; yields the lock file's path.

    Raises :class:`FolderBusyError` when another live command holds it, ``ConfigError`` when the folder
    cannot be written (both exit 2, naming the folder)."""
    key = Path(os.path.realpath(folder))
    with _GUARD:
        held = _HELD.get(key)
        if held is not None:
            held.depth += 1
        else:
            held = _HELD[key] = _acquire(key, command, notice)
    try:
        yield held.path
    finally:
        with _GUARD:
            held.depth -= 1
            if held.depth == 0:
                del _HELD[key]
                _release(held)


def held_locks() -> list[Path]:
    """The lock files this process holds (a measurement worker removes them if this process is killed)."""
    with _GUARD:
        return [held.path for held in _HELD.values()]


def abandon_held_locks() -> None:
    """Remove every lock file this process holds, for an exit that skips its ``finally`` blocks (``os._exit``);
    the locks themselves go with the process."""
    for path in held_locks():
        with contextlib.suppress(OSError):
            path.unlink()


def remove_if_abandoned(path: Path | str, pid: int) -> bool:
    """Remove the lock file ``path`` when its lock is free and it names ``pid`` (a command that was killed);
    True when it was removed.  A lock another command has taken since is left alone."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        if _try_lock(fd) is False:
            return False
        holder = _read(fd)
        if holder is None or holder.pid != pid or not _same_file(fd, path):
            return False
        _unlock_and_remove(fd, path)
        return True
    finally:
        os.close(fd)


#: The temporary an atomic write makes beside its target (``edgeopt.core.fileio.atomic_path``: mkstemp's prefix
#: ``.NAME.``, eight random characters, ``.tmp``).
_WRITE_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


def _remove_killed_writes(folder: Path) -> None:
    """Remove the temporaries of atomic writes a killed command left in ``folder`` (a SIGKILL lands between
    writing ``.summary.md.xxxxxxxx.tmp`` and renaming it).  Only the lock's holder writes there, and it has
    just taken the lock: every such file is a leftover."""
    for directory, _, files in os.walk(folder):
        for name in files:
            if _WRITE_TEMPORARY.match(name):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(directory, name))


def _acquire(folder: Path, command: str, notice: Callable[[str], None]) -> _Held:
    created = _make_folder(folder)
    path = folder / LOCK_NAME
    try:
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                locked = _try_lock(fd)
                previous = _read(fd)
                if locked is None:  # no file locks here: the recorded pid decides
                    locked = previous is None or not _alive(previous.pid)
                if not locked:
                    other = "" if command in ("report",) or command.startswith("pytest") else " or choose another --out"
                    raise FolderBusyError(f"{folder}: another edgeopt command is writing this folder ("
                                          f"{previous.describe() if previous else 'its holder is starting'}); "
                                          f"wait for it to finish{other}")
                if not _same_file(fd, path):  # its last holder removed it meanwhile: lock the new one
                    os.close(fd)
                    continue
                if previous is not None:
                    notice(f"edgeopt: note: {folder}: taking over a stale lock left by {previous.describe()}, "
                           "which no longer holds it")
                _write(fd, Holder(os.getpid(), command, datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                  socket.gethostname()))
                _remove_killed_writes(folder)
                return _Held(path, fd, created)
            except BaseException:
                os.close(fd)
                raise
    except OSError as error:
        _remove_created(created)
        raise ConfigError(f"{folder}: cannot write this output folder ({error.strerror or error}); choose "
                          "another --out") from error
    except BaseException:
        _remove_created(created)
        raise


def _release(held: _Held) -> None:
    try:
        _unlock_and_remove(held.fd, held.path)
    finally:
        os.close(held.fd)
        _remove_created(held.created)


def _make_folder(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; returns the ones created, outermost first."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()][::-1]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        _remove_created(missing)
        raise ConfigError(f"{folder}: cannot create this output folder ({error.strerror or error}); choose "
                          "another --out") from error
    return missing


def _remove_created(created: list[Path]) -> None:
    """Remove the folders the lock created, innermost first, while they are empty."""
    for directory in reversed(created):
        try:
            directory.rmdir()
        except OSError:
            return


def _unlock_and_remove(fd: int, path: Path) -> None:
    if sys.platform == "win32":  # an open file cannot be removed there: unlock, then remove (a tiny race, documented)
        _unlock(fd)
        with contextlib.suppress(OSError):
            path.unlink()
        return
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # still locked: whoever opened it meanwhile finds it gone (_same_file) and starts over


def _try_lock(fd: int) -> bool | None:
    """Lock ``fd`` without waiting: True locked, False held by another, None no file locks on this file system."""
    try:
        if sys.platform == "win32":
            import msvcrt

            os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (BlockingIOError, PermissionError):
        return False
    except OSError as error:
        if sys.platform == "win32" and error.errno in (13, 36):  # EACCES, EDEADLOCK: locked by another process
            return False
        return None
    return True


def _unlock(fd: int) -> None:
    with contextlib.suppress(OSError):
        if sys.platform == "win32":
            import msvcrt

            os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (on_disk.st_dev, on_disk.st_ino)


def _read(fd: int) -> Holder | None:
    """The holder a lock file records; None when it is empty, one with an unknown pid when unreadable."""
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 4096)
    if not text.strip():
        return None
    try:
        record = json.loads(text)
        pid = record.get("pid")
        return Holder(pid if isinstance(pid, int) else None, str(record.get("command", "")),
                      str(record.get("started", "")), str(record.get("host", "")))
    except (ValueError, AttributeError):
        return Holder(None, "", "", "")


def _write(fd: int, holder: Holder) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    record = {"pid": holder.pid, "command": holder.command, "started": holder.started, "host": holder.host}
    os.write(fd, (json.dumps(record) + "\n").encode("utf-8"))


def _alive(pid: int | None) -> bool:
    import psutil  # not os.kill(pid, 0): on Windows that terminates the process

    return pid is not None and psutil.pid_exists(pid)
