"""A host's fingerprint: a short hash of what makes two runners measure alike (CPU model, cores, memory, OS,
architecture, board model).  Two CI jobs on one runner image share it; a jump in a series that coincides with a
new fingerprint is the runner's, not the commit's (the change point says so)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

FINGERPRINT_KEYS = ("cpu_model", "logical_cores", "physical_cores", "memory_total_gb", "os", "arch", "device_model")


def fingerprint_of(host: Mapping[str, Any]) -> str | None:
    """12 hex digits of the sha256 of the host's ``FINGERPRINT_KEYS`` (memory rounded to whole GB, since the
    total a kernel reports moves by a few MB between boots); None when none of them is known."""
    picked: dict[str, Any] = {key: host.get(key) for key in FINGERPRINT_KEYS}
    if all(value in (None, "") for value in picked.values()):
        return None
    memory = picked.get("memory_total_gb")
    if isinstance(memory, (int, float)) or (isinstance(memory, str) and memory.replace(".", "", 1).isdigit()):
        picked["memory_total_gb"] = round(float(memory))
    for key in ("logical_cores", "physical_cores"):
        if isinstance(picked.get(key), str) and str(picked[key]).isdigit():
            picked[key] = int(picked[key])
    text = json.dumps(picked, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
