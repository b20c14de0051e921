"""The lab's Ray cluster: ``ray start`` for the head and for a joining device, the connection of the driver, and
the nodes' status.  Ray is imported only inside functions (:func:`edgeopt.lab.resources.require_ray`)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgeopt.core.host import HostFingerprint, host_fingerprint
from edgeopt.errors import BackendUnavailableError, ConfigError
from edgeopt.lab.resources import (
    DEVICE_RESOURCE,
    node_host_id,
    node_profiles,
    node_resources,
    require_ray,
)
from edgeopt.profiles.schema import list_profiles, load_profile, match_identity

DEFAULT_PORT = 6379


def split_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (ConfigError on anything else; ``0.0.0.0`` is refused: bind to an address you mean)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--address {address!r}: expected HOST:PORT, e.g. 192.168.1.10:{DEFAULT_PORT}")
    if host in ("0.0.0.0", "::", "[::]"):
        raise ConfigError(f"--address {address!r}: give the one address the lab should use, not every interface")
    return host, int(port)


def ray_executable() -> str:
    """The ``ray`` command of this Python's environment."""
    beside = Path(sys.executable).parent / "ray"
    found = str(beside) if beside.is_file() else shutil.which("ray")
    if not found:
        raise ConfigError("the 'ray' command is missing: pip install edgeopt[lab]")
    return found


RAY_WORKER_PORTS = (10002, 19999)  # Ray 2.60's default worker port range (docs/lab.md, "Firewall and ports")


def head_address(address: str) -> tuple[str, int]:
    """:func:`split_address`, and a port outside Ray's worker port range (Ray refuses one inside it only after
    starting, with a long traceback); ConfigError naming the port and the range otherwise."""
    host, port = split_address(address)
    low, high = RAY_WORKER_PORTS
    if low <= port <= high:
        raise ConfigError(f"--address {address!r}: port {port} is in Ray's worker port range {low}-{high}, which "
                          f"Ray keeps for its workers; choose a port outside it, e.g. {DEFAULT_PORT}")
    return host, port


def head_command(address: str, *, dashboard: bool = False) -> list[str]:
    """``ray start --head`` on ``HOST:PORT``: no CPUs to schedule on (nothing of edgeopt's runs on the head's
    Ray node), no dashboard unless asked, no usage statistics."""
    host, port = head_address(address)
    return [ray_executable(), "start", "--head", f"--node-ip-address={host}", f"--port={port}", "--num-cpus=0",
            "--num-gpus=0", f"--include-dashboard={'true' if dashboard else 'false'}", "--disable-usage-stats"]


@dataclass(frozen=True)
class JoinPlan:
    """What ``edgeopt lab join`` advertises: the profiles this host is and the Ray resources that say so."""

    fingerprint: HostFingerprint
    profiles: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]  # (profile, why this host is not it)
    resources: dict[str, float]


def plan_join(names: list[str] | None = None, host: HostFingerprint | None = None) -> JoinPlan:
    """The profiles among ``names`` (default: every shipped and user profile) whose identity this host matches."""
    host = host or host_fingerprint()
    candidates = [load_profile(n) for n in names] if names else list_profiles()
    matched, skipped = [], []
    for profile in candidates:
        found = match_identity(profile, host)
        if found:
            matched.append(profile.name)
        else:
            skipped.append((profile.name, "; ".join(found.reasons)))
    return JoinPlan(host, tuple(matched), tuple(skipped), node_resources(matched, host.to_dict()))


def join_command(address: str, plan: JoinPlan, node_ip: str | None = None) -> list[str]:
    """``ray start --address`` with the plan's resources; no CPUs (only edgeopt's cells, which ask for none)."""
    split_address(address)
    command = [ray_executable(), "start", f"--address={address}", f"--resources={json.dumps(plan.resources)}",
               "--num-cpus=0", "--num-gpus=0", "--disable-usage-stats"]
    return command + ([f"--node-ip-address={node_ip}"] if node_ip else [])


def run_ray(command: list[str]) -> int:
    """Run a ``ray start`` command, its output passed through; its exit status."""
    exposed = exposed_token_file()
    if exposed:
        print(f"edgeopt: warning: {exposed}", file=sys.stderr)
    return subprocess.run(command, check=False).returncode


def exposed_token_file(home: Path | None = None) -> str | None:
    """A sentence when Ray's token file (``~/.ray/auth_token``, which ``ray get-auth-token --generate`` writes with
    mode 0644) can be read by other users of this machine; None when it is absent or private."""
    token = (home or Path.home()) / ".ray" / "auth_token"
    try:
        mode = token.stat().st_mode & 0o777
    except OSError:
        return None
    if not mode & 0o077:
        return None
    return (f"{token} is readable by other users (mode {mode:04o}): anyone on this machine can join or drive the "
            f"lab with it; run 'chmod 600 {token}'")


PROBE_TIMEOUT_S = 5.0  # a head that does not accept a TCP connection (or answer Ray's GCS) in this long is not there
TOKEN_REFUSED = ("the lab refused this client's token (Ray token authentication): set RAY_AUTH_MODE=token and the "
                 "lab's token in RAY_AUTH_TOKEN or ~/.ray/auth_token (docs/lab.md)")


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    """File descriptor 2 to /dev/null for a while: Ray's C++ client logs each refused call there itself."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _token_refused(address: str) -> bool:
    """Whether the head's GCS refuses this client's token, asked with one call (Ray's ``ray.init`` retries a
    refused token for about 20 s, logging a line per try).  The call runs in a thread given
    :data:`PROBE_TIMEOUT_S`: a port that answers TCP but is no GCS makes Ray's client wait 40 s; that case
    and every other failure are left to ``ray.init``, which names them."""
    from ray._raylet import GcsClient  # type: ignore[attr-defined]  # what ``ray status`` uses; no public probe
    from ray.exceptions import AuthenticationError

    found: dict[str, bool] = {}

    def probe() -> None:
        try:
            GcsClient(address=address).internal_kv_get(b"edgeopt-probe", None, timeout=PROBE_TIMEOUT_S)
        except AuthenticationError:
            found["refused"] = True
        except Exception:  # noqa: BLE001 - any other answer: ray.init reports it
            found["refused"] = False

    thread = threading.Thread(target=probe, name="edgeopt-lab-probe", daemon=True)
    with _stderr_silenced():
        thread.start()
        thread.join(PROBE_TIMEOUT_S)
    return found.get("refused", False)


def connect(address: str) -> Any:
    """Connect this process to the lab at ``HOST:PORT`` as its driver; the ``ray`` module.

    The head's port is probed first: Ray itself retries an address nobody answers for minutes.  A head
    that refuses this client's token (Ray token authentication) is named as such, within a second.  A token
    file others can read is warned about, as ``lab head`` and ``lab join`` do."""
    ray = require_ray()
    host, port = split_address(address)
    exposed = exposed_token_file()
    if exposed:
        print(f"edgeopt: warning: {exposed}", file=sys.stderr)
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError as error:
        raise BackendUnavailableError(
            f"--address {address}: no lab head answers there ({error.strerror or error}); start one with "
            f"'edgeopt lab head --address {address}', or check the address and the firewall") from error
    if not ray.is_initialized():
        from ray.exceptions import AuthenticationError

        if _token_refused(address):
            raise BackendUnavailableError(f"--address {address}: {TOKEN_REFUSED}")
        try:
            ray.init(address=address, log_to_driver=False, logging_level="warning")
        except AuthenticationError as error:
            raise BackendUnavailableError(f"--address {address}: {TOKEN_REFUSED}") from error
        except ConnectionError as error:  # Ray 2.60 reports a wrong token so, after logging 'Unauthenticated'
            raise BackendUnavailableError(
                f"--address {address}: a head answers there but refused this client ({error}); with token "
                f"authentication, {TOKEN_REFUSED}") from error
    return ray


@dataclass(frozen=True)
class NodeStatus:
    node_id: str
    address: str
    alive: bool
    head: bool
    profiles: list[str]
    host_id: str | None
    busy: bool | None  # a cell holds the device's slot; None for a node that is no device

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def lab_status(ray: Any) -> list[NodeStatus]:
    """Every node the lab's head knows, with the profiles it advertises and whether a cell runs on it."""
    from ray._private.state import available_resources_per_node  # no public per-node view in Ray 2.60

    available = available_resources_per_node()
    found = []
    for node in ray.nodes():
        resources = node.get("Resources", {})
        device = DEVICE_RESOURCE in resources
        free = available.get(node["NodeID"], {}).get(DEVICE_RESOURCE, 0.0)
        found.append(NodeStatus(node["NodeID"], str(node.get("NodeManagerAddress")), bool(node.get("Alive")),
                                "node:__internal_head__" in resources, node_profiles(resources),
                                node_host_id(resources), (free < 1.0) if device and node.get("Alive") else None))
    return found
