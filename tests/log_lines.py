"""What edgeopt logged while a block ran, for a test where pytest's ``caplog`` cannot go (a module-scoped fixture)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextlib.contextmanager
def edgeopt_lines() -> Iterator[list[str]]:
    """The messages of the ``edgeopt`` loggers (INFO and above) while the block runs."""
    logger = logging.getLogger("edgeopt")
    handler, level = _Lines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
