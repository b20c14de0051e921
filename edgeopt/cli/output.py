"""Where the CLI's log lines and progress go: :func:`configured` sets up ``logging`` and the progress display
for one command from the global options ``-v/--verbose``, ``-q/--quiet``, ``--log-file`` and ``--json``.

- default: edgeopt's INFO lines on stderr, one plain line per step; the runtimes' chatter stays in the run
  folder's ``run.log`` (``edgeopt.core.logs.warnings_to_file``) and is counted;
- ``-q``: only errors on stderr (the command's verdict or table stays on stdout);
- ``-v``: edgeopt's DEBUG lines too, and the runtimes' warnings (ONNX Runtime, OpenVINO, the quantizer, Python
  warnings) on stderr;
- ``--log-file PATH``: everything at DEBUG appended to PATH, with timestamps (whatever the console shows).
  PATH is checked before it is opened (a regular file, a character device or a FIFO someone reads; anything
  else, or a FIFO nobody reads, is exit 2 naming it).  A write that fails (a full disk) stops the log file, prints
  no logging traceback, and ends the command with exit 2 naming PATH (:class:`LogFileError`);
- progress bars (tqdm, on stderr) only when stderr is a terminal and neither ``-q`` nor ``--json`` is given;
  log lines are written above the bars (``tqdm.write``), so bars are not broken.

tqdm is chosen over rich: one small pure-Python package with no dependencies (rich pulls pygments and
markdown-it), it draws on the stream it is given and does nothing when disabled.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from edgeopt.core import progress
from edgeopt.core.logs import console_line

__all__ = ["LogFileError", "configured", "options_of"]

TICK_S = 1.0  # bars without news redraw their elapsed time this often: a long step never looks hung
FALLBACK_SIZE = (80, 24)  # columns, rows where the terminal reports none
LOG_FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _third_party(record: logging.LogRecord) -> bool:
    return record.name != "edgeopt" and not record.name.startswith("edgeopt.")


class _Brief(logging.Formatter):
    """Console lines without tracebacks: those stay in ``run.log`` and ``--log-file``, and ``-v`` shows them
    (a quantizer that fails on a real model is one line on the terminal, not a stack)."""

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def terminal_safe(text: str) -> str:
    """``text`` with every control character but newline and tab written as ``\\xNN``: a file name holding an
    escape sequence (``ctl\\x1b[31m.onnx``) cannot recolour, move or clear the user's terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class _ConsoleHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes above the progress bars while some are drawn (control characters
    escaped: :func:`terminal_safe`)."""

    def __init__(self, stream: IO[str], bars: _Bars | None) -> None:
        super().__init__(stream)
        self.bars = bars
        self.addFilter(console_line)  # a FILE_ONLY line goes to run.log alone

    def format(self, record: logging.LogRecord) -> str:
        return terminal_safe(super().format(record))

    def emit(self, record: logging.LogRecord) -> None:
        if self.bars is None or not self.bars.active():
            super().emit(record)
            return
        try:
            self.bars.write(self.format(record), self.stream)
        except Exception:  # noqa: BLE001 - logging's own contract: report, never raise
            self.handleError(record)


class LogFileError(OSError):
    """``--log-file`` could not be written; ``filename`` is the log file, ``strerror`` the reason."""


class _LogFile(logging.StreamHandler):  # type: ignore[type-arg]
    """``--log-file``: appends, opened without blocking on a FIFO; the first write that fails is kept (no
    logging traceback on stderr) and ends the log, :func:`configured` raises it as :class:`LogFileError`."""

    def __init__(self, path: Path) -> None:
        import io

        from edgeopt.core.fileio import open_stream, output_target, own_descriptor

        self.path = path
        descriptor = own_descriptor(path)  # --log-file /dev/stderr: this process's own stderr, where it points
        if descriptor is not None:
            handle: IO[bytes] = os.fdopen(os.dup(descriptor), "ab")
        else:
            target, streamed = output_target(path)
            if not streamed:
                target.parent.mkdir(parents=True, exist_ok=True)
            handle = open_stream(target, append=not streamed)
        super().__init__(io.TextIOWrapper(handle, encoding="utf-8", errors="backslashreplace"))
        self.failure: OSError | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.failure is None:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        error = sys.exc_info()[1]
        if isinstance(error, OSError) and self.failure is None:
            self.failure = LogFileError(error.errno, error.strerror, str(self.path))
        elif not isinstance(error, OSError):
            super().handleError(record)

    def close(self) -> None:
        self.acquire()
        try:
            self.stream.close()
        except OSError as error:  # the last buffered lines did not fit
            if self.failure is None:
                self.failure = LogFileError(error.errno, error.strerror, str(self.path))
        finally:
            self.release()
        super().close()


class _Bar:
    """One tqdm bar (a :class:`edgeopt.core.progress.Display`)."""

    def __init__(self, bars: _Bars, description: str, total: int | None, unit: str) -> None:
        from tqdm import tqdm

        self.bars = bars
        counted = "{desc}: {n_fmt}{unit} [{elapsed}{postfix}]" if unit else "{desc} [{elapsed}{postfix}]"
        shape = None if total else counted
        sized = bars.columns() > 0  # a serial console reports a 0x0 terminal: tqdm would draw nothing there
        self.bar = tqdm(total=total, desc=description, unit=f" {unit}" if unit else "it", file=bars.stream,
                        leave=False, dynamic_ncols=sized, ncols=None if sized else FALLBACK_SIZE[0],
                        nrows=None if sized else FALLBACK_SIZE[1], mininterval=0.2, bar_format=shape)
        bars.opened(self)

    def update(self, done: int | None, detail: str | None) -> None:
        if detail is not None:
            self.bar.set_postfix_str(detail, refresh=False)
        if done is not None and done != self.bar.n:
            self.bar.update(done - self.bar.n)
        else:
            self.bar.refresh()

    def close(self) -> None:
        self.bars.closed(self)
        self.bar.close()


class _Bars:
    """The open bars, and a ticker thread that redraws them (elapsed time) while any is open."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.lock = threading.Lock()
        self.open: list[_Bar] = []
        self.stop = threading.Event()
        self.ticker = threading.Thread(target=self._tick, name="edgeopt-progress", daemon=True)
        self.ticker.start()

    def __call__(self, description: str, total: int | None, unit: str) -> progress.Display:
        return _Bar(self, description, total, unit)

    def columns(self) -> int:
        try:
            return os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError, AttributeError):
            return 0

    def active(self) -> bool:
        return bool(self.open)

    def opened(self, bar: _Bar) -> None:
        with self.lock:
            self.open.append(bar)

    def closed(self, bar: _Bar) -> None:
        with self.lock:
            self.open.remove(bar)

    def write(self, line: str, stream: IO[str]) -> None:
        from tqdm import tqdm

        tqdm.write(line, file=stream)

    def _tick(self) -> None:
        while not self.stop.wait(TICK_S):
            with self.lock:
                for bar in self.open:
                    with contextlib.suppress(Exception):
                        bar.bar.refresh()

    def close(self) -> None:
        self.stop.set()
        self.ticker.join(timeout=2 * TICK_S)


def _bars_wanted(quiet: bool, json_output: bool, stream: IO[str]) -> bool:
    return not quiet and not json_output and stream.isatty()


@contextlib.contextmanager
def configured(*, verbose: int = 0, quiet: bool = False, log_file: Path | None = None, json_output: bool = False,
               stream: IO[str] | None = None, fmt: str = "%(message)s") -> Iterator[None]:
    """Set up the ``edgeopt`` logger, the root logger's console handlers and the progress display for one
    command; undo all of it on exit.  ``stream`` (default: stderr) gets the console lines, formatted with
    ``fmt``."""
    stream = stream if stream is not None else sys.stderr
    edgeopt_logger, root = logging.getLogger("edgeopt"), logging.getLogger()
    saved = (edgeopt_logger.level, root.level)
    bars = _Bars(sys.stderr) if _bars_wanted(quiet, json_output, sys.stderr) else None
    handlers: list[tuple[logging.Logger, logging.Handler]] = []
    console = _ConsoleHandler(stream, bars)
    console.setFormatter(logging.Formatter(fmt) if verbose else _Brief(fmt))
    console.setLevel(logging.ERROR if quiet else logging.DEBUG if verbose else logging.INFO)
    handlers.append((edgeopt_logger, console))
    if verbose and not quiet:  # the runtimes' warnings on the console too (they also stay in run.log)
        chatter: logging.Handler = _ConsoleHandler(stream, bars)
        chatter.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        chatter.setLevel(logging.WARNING)
        chatter.addFilter(_third_party)
    else:  # a root handler keeps logging.warning() of a runtime from installing its own console handler
        chatter = logging.NullHandler()
    handlers.append((root, chatter))
    to_file = None
    if log_file is not None:
        try:
            to_file = _LogFile(log_file)
        except OSError as error:
            raise LogFileError(error.errno, f"cannot open the --log-file: {error.strerror or error}",
                               str(log_file)) from error
        to_file.setFormatter(logging.Formatter(LOG_FILE_FORMAT))
        to_file.setLevel(logging.DEBUG)
        handlers.append((root, to_file))
    edgeopt_logger.setLevel(logging.DEBUG if verbose or log_file is not None else logging.INFO)
    for logger, handler in handlers:
        logger.addHandler(handler)
    previous_display = progress.set_display(bars)
    try:
        yield
    finally:
        progress.set_display(previous_display)
        if bars is not None:
            bars.close()
        for logger, handler in handlers:
            logger.removeHandler(handler)
            handler.close()
        edgeopt_logger.setLevel(saved[0])
        root.setLevel(saved[1])
    if to_file is not None and to_file.failure is not None:  # the command ran; its log is incomplete
        raise to_file.failure


def options_of(args: Any) -> dict[str, Any]:
    """The keyword arguments of :func:`configured` from a parsed ``edgeopt`` command line."""
    return {"verbose": getattr(args, "verbose", 0), "quiet": getattr(args, "quiet", False),
            "log_file": getattr(args, "log_file", None), "json_output": bool(getattr(args, "json", False))}
