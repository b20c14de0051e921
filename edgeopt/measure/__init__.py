"""Measurement: one cell measured (parent side), the launcher, the isolated workers, and their ``Measurement``.

The worker modules (:mod:`edgeopt.measure.worker`, :mod:`edgeopt.measure.ab_worker`) run on boards and
import only ``edgeopt.core``, ``edgeopt.backends`` and ``edgeopt.errors``, so this package's
``__init__`` imports nothing; :func:`measure_cell` is loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"Cell": "edgeopt.measure.cell", "CellContext": "edgeopt.measure.cell", "measure_cell": "edgeopt.measure.cell",
         "Measurement": "edgeopt.measure.results"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edgeopt.measure' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
