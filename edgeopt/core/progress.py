"""Progress of long steps, for a display the application chooses: the library reports, it never draws.

A step that can take seconds runs inside :func:`task`::

    with progress.task("measure fp32__host-cpu", unit="samples") as step:
        step.update(done=120, detail="p95 CI ±3.1%")   # from any thread

With no display set (the default, and a board's install without a terminal) a task does nothing; the step's
INFO log line is the plain output.  The CLI sets one with :func:`set_display` (``edgeopt.cli.output``: tqdm
bars on a terminal).  Standard library only: the timed worker and ``import edgeopt`` stay light.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Protocol

__all__ = ["Display", "DisplayFactory", "Task", "set_display", "task"]


class Display(Protocol):
    """What a display draws for one task."""

    def update(self, done: int | None, detail: str | None) -> None:
        """Show ``done`` units so far (None: unchanged) and ``detail`` (None: unchanged)."""

    def close(self) -> None:
        """The task ended: remove or finish its line."""


#: ``(description, total, unit) -> Display``: called when a task starts.
DisplayFactory = Callable[[str, "int | None", str], Display]

_display: DisplayFactory | None = None


def set_display(factory: DisplayFactory | None) -> DisplayFactory | None:
    """Draw every task started from now on with ``factory`` (None: draw nothing); returns the previous one."""
    global _display
    previous, _display = _display, factory
    return previous


class Task:
    """One running step; :meth:`update` and :meth:`advance` are no-ops without a display."""

    def __init__(self, display: Display | None) -> None:
        self._display = display
        self._done = 0

    def update(self, *, done: int | None = None, detail: str | None = None) -> None:
        """Set the count done so far and/or the detail text (e.g. a CI width)."""
        if done is not None:
            self._done = done
        if self._display is not None:
            self._display.update(done, detail)

    def advance(self, step: int = 1, detail: str | None = None) -> None:
        """Count ``step`` more units done."""
        self.update(done=self._done + step, detail=detail)


@contextlib.contextmanager
def task(description: str, *, total: int | None = None, unit: str = "") -> Iterator[Task]:
    """A :class:`Task` drawn by the display set with :func:`set_display` while the block runs."""
    display = _display(description, total, unit) if _display is not None else None
    try:
        yield Task(display)
    finally:
        if display is not None:
            display.close()
