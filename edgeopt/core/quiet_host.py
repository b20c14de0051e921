"""Waiting for a quiet host: the 1-minute load average per core at or under a profile's limit before a timed loop
(``edgeopt run --wait-for-quiet SECONDS``), so that a busy shared machine gets a valid measurement, not just an
``invalid`` row."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

__all__ = ["load_per_core", "wait_for_quiet"]

POLL_S = 5.0  # the 1-minute load average moves slowly: polling more often shows nothing new


def load_per_core() -> float | None:
    """The 1-minute load average divided by the logical cores (None where the OS does not expose it)."""
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1)
    except (OSError, AttributeError):
        return None


def wait_for_quiet(limit: float, timeout_s: float, report: Callable[[float, float], None],
                   poll_s: float = POLL_S) -> float | None:
    """Sleep until :func:`load_per_core` is at most ``limit`` or ``timeout_s`` have passed, calling
    ``report(load, seconds_left)`` before each wait; return the last load per core (None: not exposed, no wait)."""
    deadline = time.monotonic() + timeout_s
    while True:
        load = load_per_core()
        left = deadline - time.monotonic()
        if load is None or load <= limit or left <= 0:
            return load
        report(load, left)
        time.sleep(min(poll_s, left))
