"""The Ray custom resources of a lab node, and the check that Ray is installed.  Standard library only.

A node joined with profiles P and Q advertises ``edgeopt-profile:P: 1`` and ``edgeopt-profile:Q: 1`` (the
profile's slot), ``edgeopt-device: 1`` (the device's one slot: every cell asks for it too, so at most one
measurement runs on a device at a time even when it is several profiles) and ``edgeopt-host:<sha12>: 1``
(its host fingerprint, the first 12 hex digits of the sha256 of ``HostFingerprint.to_dict()``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from edgeopt.errors import ConfigError

PROFILE_PREFIX = "edgeopt-profile:"
DEVICE_RESOURCE = "edgeopt-device"
HOST_PREFIX = "edgeopt-host:"
INSTALL_HINT = "the device lab needs Ray: pip install edgeopt[lab]"


def require_ray() -> Any:
    """The ``ray`` module, or ConfigError (exit 2) naming the extra to install."""
    try:
        import ray
    except ImportError as error:
        raise ConfigError(f"{INSTALL_HINT} ({error})") from error
    return ray


def profile_resource(name: str) -> str:
    return PROFILE_PREFIX + name


def fingerprint_id(fingerprint: Mapping[str, Any]) -> str:
    """12 hex digits naming a host fingerprint (``HostFingerprint.to_dict()``)."""
    return hashlib.sha256(json.dumps(dict(fingerprint), sort_keys=True).encode()).hexdigest()[:12]


def node_resources(profiles: Iterable[str], fingerprint: Mapping[str, Any]) -> dict[str, float]:
    """What a node that is each of ``profiles`` advertises (one exclusive slot per profile, one per device)."""
    resources = {profile_resource(name): 1.0 for name in profiles}
    if not resources:
        raise ConfigError("this host matches none of the given profiles: nothing to join as")
    return {**resources, DEVICE_RESOURCE: 1.0, HOST_PREFIX + fingerprint_id(fingerprint): 1.0}


def node_profiles(resources: Mapping[str, float]) -> list[str]:
    """The profiles a node advertises (its total resources, as ``ray.nodes()`` gives them)."""
    return sorted(key.removeprefix(PROFILE_PREFIX) for key in resources if key.startswith(PROFILE_PREFIX))


def node_host_id(resources: Mapping[str, float]) -> str | None:
    return next((key.removeprefix(HOST_PREFIX) for key in resources if key.startswith(HOST_PREFIX)), None)
