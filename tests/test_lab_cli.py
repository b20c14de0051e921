"""``edgeopt lab head``, ``join`` and ``status`` start and read a real Ray cluster (``ray start`` processes), then
``ray stop --force`` ends them.  Its own module: ``ray stop`` ends every Ray process of this user on the machine,
so it must not run beside the cluster of tests/test_lab.py.  Runs only with ``EDGEOPT_LAB_CLUSTER=1``
(``.ci/run`` sets it), like that cluster."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.profiles import write_profile

pytestmark = [pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed"),
              pytest.mark.skipif(not os.environ.get("EDGEOPT_LAB_CLUSTER"),
                                 reason="Ray clusters: set EDGEOPT_LAB_CLUSTER=1 (.ci/run does)"),
              pytest.mark.slow]
EDGEOPT = [sys.executable, "-m", "edgeopt"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _edgeopt(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(EDGEOPT + list(args), env=env, capture_output=True, text=True, timeout=180)


@contextlib.contextmanager
def _head(env: dict[str, str]) -> Iterator[tuple[str, subprocess.CompletedProcess[str]]]:
    """``edgeopt lab head`` on a free loopback port; its address and run; ``ray stop --force`` after."""
    address = f"127.0.0.1:{_free_port()}"
    try:
        yield address, _edgeopt("lab", "head", "--address", address, env=env)
    finally:
        subprocess.run([str(Path(sys.executable).parent / "ray"), "stop", "--force"], env=env, capture_output=True,
                       timeout=120)


def test_head_join_status_with_ray_start(tmp_path: Path) -> None:
    write_profile(tmp_path, "lab-cli")
    env = {**os.environ, "EDGEOPT_PROFILE_PATH": str(tmp_path)}
    with _head(env) as (address, head):
        assert head.returncode == 0, head.stdout + head.stderr
        assert f"edgeopt lab join --address {address}" in head.stdout
        join = _edgeopt("lab", "join", "--address", address, "--profile", "lab-cli", "--node-ip-address", "127.0.0.1",
                        env=env)
        assert join.returncode == 0, join.stdout + join.stderr
        assert "joining as: lab-cli" in join.stdout
        status = _edgeopt("lab", "status", "--address", address, "--json", env=env)
        assert status.returncode == 0, status.stderr
        nodes = json.loads(status.stdout)["nodes"]
        devices = [n for n in nodes if n["profiles"]]
        assert [n["profiles"] for n in devices] == [["lab-cli"]] and devices[0]["busy"] is False
        assert [n["head"] for n in nodes if not n["profiles"]] == [True]
        # Ray 2.60 advertises this host's own address for a loopback one (services.resolve_ip_for_localhost)
        assert len({n["address"] for n in nodes}) == 1, nodes
        table = _edgeopt("lab", "status", "--address", address, env=env)
        assert table.returncode == 0 and "lab-cli" in table.stdout and "idle" in table.stdout


def test_a_head_with_token_authentication_admits_only_its_token(tmp_path: Path) -> None:
    """Ray 2.60's token authentication (RAY_AUTH_MODE=token): edgeopt passes the environment through to
    ``ray start`` and ``ray.init``; a client with another token is refused by name, exit 4."""
    import secrets

    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    with _head(env) as (address, head):
        assert head.returncode == 0, head.stdout + head.stderr
        admitted = _edgeopt("lab", "status", "--address", address, "--json", env=env)
        assert admitted.returncode == 0, admitted.stderr
        assert [n["head"] for n in json.loads(admitted.stdout)["nodes"]] == [True]
        stranger = _edgeopt("lab", "status", "--address", address,
                            env={**env, "RAY_AUTH_TOKEN": secrets.token_hex(32)})
        assert stranger.returncode == 4, stranger.stdout + stranger.stderr
        assert "refused this client's token" in stranger.stderr

