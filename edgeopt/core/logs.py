"""Runtime chatter: :func:`warnings_to_file` keeps what the runtimes and their tools say during a run (and the
run's own ``edgeopt`` log lines) in the run folder's ``run.log``, and counts the runtimes' warnings.

edgeopt's modules log through ``logging.getLogger(__name__)`` (all under ``edgeopt``): one INFO line per step,
WARNING for a problem.  A library caller configures logging as it likes; the CLI does it in
:mod:`edgeopt.cli.output`."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["FILE_ONLY", "warnings_to_file"]

#: ``logger.info(..., extra=FILE_ONLY)``: a line for ``run.log`` only (a runtime's whole message), not the console
FILE_ONLY = {"file_only": True}


def console_line(record: logging.LogRecord) -> bool:
    """Whether a record is for the console too (not one logged with :data:`FILE_ONLY`)."""
    return not getattr(record, "file_only", False)


def _third_party(record: logging.LogRecord) -> bool:
    return record.name != "edgeopt" and not record.name.startswith("edgeopt.")


class _CountingFileHandler(logging.FileHandler):
    def __init__(self, path: Path) -> None:
        super().__init__(path, mode="a", encoding="utf-8")
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += record.levelno >= logging.WARNING and _third_party(record)
        super().emit(record)


@contextlib.contextmanager
def warnings_to_file(path: Path) -> Iterator[Callable[[], int]]:
    """Write what is logged while the block runs into ``path``: the root logger's records at INFO and above
    (ONNX Runtime's quantizer logs ``WARNING:root:...`` through it), Python warnings, and edgeopt's own lines
    (from INFO, or DEBUG where the ``edgeopt`` logger is set to it).

    The handlers already on the root logger stay (the CLI's ``-v`` shows third-party warnings on stderr through
    one); with none, the runtimes' chatter reaches only the file, not the terminal.  Yields a function that
    returns how many warnings (and worse) came from outside edgeopt (runtimes, quantizer, Python warnings)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = _CountingFileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    saved_level = root.level
    root.addHandler(handler)
    root.setLevel(min(saved_level, logging.INFO) if saved_level != logging.NOTSET else logging.INFO)
    logging.captureWarnings(True)
    try:
        yield lambda: handler.count
    finally:
        logging.captureWarnings(False)
        root.removeHandler(handler)
        root.setLevel(saved_level)
        handler.close()
