"""Progress and runtime chatter: the one type of a progress sink (``Log``: a callable that takes one line,
e.g. ``print``) and :func:`warnings_to_file`, which keeps the runtimes' warnings in a run's ``run.log``."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["Log", "warnings_to_file"]

Log = Callable[[str], None]


class _CountingFileHandler(logging.FileHandler):
    def __init__(self, path: Path) -> None:
        super().__init__(path, mode="a", encoding="utf-8")
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += record.levelno >= logging.WARNING
        super().emit(record)


@contextlib.contextmanager
def warnings_to_file(path: Path) -> Iterator[Callable[[], int]]:
    """Route what the runtimes and their tools say while the block runs into ``path``, not the terminal.

    The root logger (ONNX Runtime's quantizer logs ``WARNING:root:...`` through it) and Python warnings
    go to the file.  Yields a function that returns how many warnings (and worse) were written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = _CountingFileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    root.handlers, root.level = [handler], logging.INFO
    logging.captureWarnings(True)
    try:
        yield lambda: handler.count
    finally:
        logging.captureWarnings(False)
        root.handlers, root.level = saved_handlers, saved_level
        handler.close()

