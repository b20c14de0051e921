"""Measurement: the launcher (parent side), the isolated workers, and the ``Measurement`` they produce.

The worker modules (:mod:`edgeopt.measure.worker`, :mod:`edgeopt.measure.ab_worker`) run on boards and
import only ``edgeopt.core``, ``edgeopt.backends`` and ``edgeopt.errors``, so this package's
``__init__`` imports nothing; :func:`measure_variant` is loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"measure_variant": "edgeopt.measure.launcher", "Measurement": "edgeopt.measure.results"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edgeopt.measure' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
