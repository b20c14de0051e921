"""The device lab on a real local Ray cluster (``ray.cluster_utils.Cluster``): nodes joined as test profiles with
the resources ``edgeopt lab join`` computes, ``edgeopt lab run`` through the CLI, node loss mid-cell.

Skipped without Ray (the extra ``edgeopt[lab]``), except the check that ``edgeopt lab`` then exits 2; the
cluster tests run only with ``EDGEOPT_LAB_CLUSTER=1`` (``.ci/run`` sets it)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests import zoo
from tests.profiles import write_profile

HAVE_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="Ray is not installed (pip install edgeopt[lab])")
EDGEOPT = [sys.executable, "-m", "edgeopt"]
# a four-node cluster and its runs take about 3 minutes: a suite of its own in .ci/run, beside README's command
CLUSTER_SKIP = "local Ray cluster: set EDGEOPT_LAB_CLUSTER=1 (.ci/run does)"


def test_lab_without_ray_exits_2_naming_the_extra(tmp_path: Path) -> None:
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\nclass _NoRay:\n    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'ray' or name.startswith('ray.'):\n            raise ImportError('No module named ray')\n"
        "        return None\nsys.meta_path.insert(0, _NoRay())\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")])}
    for args in (["lab", "status", "--address", "127.0.0.1:6379"], ["lab", "join", "--address", "127.0.0.1:6379"],
                 ["lab", "run", "m.onnx", "--profile", "host-cpu", "--address", "127.0.0.1:6379"]):
        done = subprocess.run(EDGEOPT + args, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        assert "pip install edgeopt[lab]" in done.stderr


def test_head_refuses_every_interface() -> None:
    done = subprocess.run(EDGEOPT + ["lab", "head", "--address", "0.0.0.0:6379", "--print-command"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "not every interface" in done.stderr


@needs_ray
def test_an_address_where_no_head_answers_fails_fast_with_exit_4() -> None:
    """Ray retries an address nobody answers for minutes; edgeopt probes the port first."""
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    for command in (["lab", "status"], ["lab", "run", "m.onnx", "--profile", "host-cpu"]):
        done = subprocess.run(EDGEOPT + [*command, "--address", f"127.0.0.1:{port}"], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 4, done.stderr
        assert f"--address 127.0.0.1:{port}: no lab head answers there" in done.stderr
    assert time.monotonic() - started < 60


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if not HAVE_RAY:
        pytest.skip("Ray is not installed")
    if not os.environ.get("EDGEOPT_LAB_CLUSTER"):
        pytest.skip(CLUSTER_SKIP)
    from ray.cluster_utils import Cluster

    from edgeopt.lab.cluster import plan_join

    root = tmp_path_factory.mktemp("lab")
    profiles = root / "profiles"
    profiles.mkdir()
    for name in ("lab-a", "lab-b", "lab-c"):
        write_profile(profiles, name)
    slow = write_profile(profiles, "lab-slow")  # a cell of 4 s at least: time to lose its node
    slow.write_text(slow.read_text().replace("bench:\n", "bench:\n  warmup_seconds: 4\n"))
    workdir = root / "cells"
    saved = {k: os.environ.get(k) for k in ("EDGEOPT_PROFILE_PATH", "EDGEOPT_LAB_WORKDIR")}
    os.environ["EDGEOPT_PROFILE_PATH"] = str(profiles)
    os.environ["EDGEOPT_LAB_WORKDIR"] = str(workdir)  # inherited by the nodes' workers
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes: dict[str, Any] = {}
    try:
        for label, profile in (("a", "lab-a"), ("b", "lab-b")):
            plan = plan_join([profile])
            assert plan.profiles == (profile,)
            nodes[label] = cluster.add_node(num_cpus=0, resources=plan.resources)
        cluster.wait_for_nodes()
        yield {"cluster": cluster, "nodes": nodes, "address": cluster.address, "profiles": profiles,
               "workdir": workdir, "root": root, "plan_join": plan_join}
    finally:
        cluster.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _lab_run(lab: dict[str, Any], model: Path, out: Path, *profiles: str, extra: tuple[str, ...] = (),
             timeout: float = 300) -> subprocess.CompletedProcess[str]:
    args = ["lab", "run", str(model), "--address", lab["address"], "--out", str(out), "--variant", "fp32",
            "--variant", "int8-dynamic", *[x for p in profiles for x in ("--profile", p)], *extra]
    return subprocess.run(EDGEOPT + args, capture_output=True, text=True, timeout=timeout, env=dict(os.environ))


def _measurements(out: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((out / "measurements").glob("*.json"))]


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _slow_node(lab: dict[str, Any]) -> Any:
    """A node joined as 'lab-slow' (cells of 4 s at least), up when this returns."""
    node = lab["cluster"].add_node(num_cpus=0, resources=lab["plan_join"](["lab-slow"]).resources)
    lab["cluster"].wait_for_nodes()
    return node


def _kill_first_busy_node(cluster: Any, workdir: Path, by_id: dict[str, Any], killed: list[str]) -> threading.Thread:
    """A thread that kills (no grace) the first of ``by_id``'s nodes seen running a cell, 1 s into it."""
    def kill() -> None:
        deadline = time.monotonic() + 200
        while time.monotonic() < deadline:
            for folder in workdir.glob("edgeopt-cell-*"):
                prefix = folder.name.split("-")[2]
                node = next((n for i, n in by_id.items() if i.startswith(prefix)), None)
                if node is not None:
                    time.sleep(1.0)  # its worker is in its 4 s warm-up
                    cluster.remove_node(node, allow_graceful=False)
                    killed.append(node.node_id)
                    return
            time.sleep(0.1)

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


@needs_ray
@pytest.mark.slow
def test_matrix_runs_each_cell_on_a_node_of_its_profile(lab: dict[str, Any], tmp_path: Path) -> None:
    node_of = {"lab-a": lab["nodes"]["a"].node_id, "lab-b": lab["nodes"]["b"].node_id}
    models = {"conv": zoo.tiny_conv_model(tmp_path / "conv.onnx"), "mlp": zoo.tiny_mlp(tmp_path / "mlp.onnx")}
    runs: dict[str, Path] = {}
    cells: list[dict[str, Any]] = []
    for name, model in models.items():
        out = tmp_path / f"out-{name}"
        done = _lab_run(lab, model, out, "lab-a", "lab-b")
        assert done.returncode == 0, done.stdout + done.stderr
        header = next(line for line in done.stdout.splitlines() if line.startswith("variant "))
        assert header.split()[-1] == "node", header  # the table's node column names each row's board
        assert all(node_id[:12] in done.stdout for node_id in node_of.values()), done.stdout
        runs[name] = out
        found = _measurements(out)
        assert len(found) == 4  # fp32, int8-dynamic on lab-a and lab-b
        for document in found:
            assert document["status"] == "ok" and document["host_matches"]
            profile = document["profile"]["name"]
            assert document["lab"]["node_id"] == node_of[profile], (profile, document["lab"])
            assert document["host"]["cpu_model"]
            assert (out / "measurements" / document["outputs_file"]).is_file()
        cells += found
    for node in node_of.values():  # one measurement at a time per device
        spans = sorted((_when(c["lab"]["started_at"]), _when(c["lab"]["ended_at"])) for c in cells
                       if c["lab"]["node_id"] == node)
        assert len(spans) == 4
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            assert end <= start, spans
    out = runs["conv"]
    report = subprocess.run(EDGEOPT + ["report", str(out)], capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    gate = subprocess.run(EDGEOPT + ["gate", *map(str, sorted((out / "measurements").glob("*.json")))],
                          capture_output=True, text=True, timeout=120)
    assert gate.returncode == 0, gate.stdout + gate.stderr
    # a rerun reuses every cell; a profile without a node is a not-applicable row, not a hang
    again = _lab_run(lab, models["conv"], out, "lab-a", "lab-b", "lab-c", extra=("--wait-for-devices", "1"))
    assert "sent to the lab" not in again.stderr.replace("lab-c)", ""), again.stderr
    assert again.stderr.count("done earlier, skipped") == 4, again.stderr
    assert "not-applicable: no device of profile lab-c in the lab" in again.stdout + again.stderr
    assert again.returncode == 4, again.stdout  # lab-c's reference runtime could not be measured
    status = subprocess.run(EDGEOPT + ["lab", "status", "--address", lab["address"], "--json"],
                            capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    listed = {n["node_id"]: n for n in json.loads(status.stdout)["nodes"]}
    assert listed[node_of["lab-a"]]["profiles"] == ["lab-a"] and listed[node_of["lab-a"]]["busy"] is False
    assert listed[node_of["lab-b"]]["profiles"] == ["lab-b"]


@needs_ray
@pytest.mark.slow
def test_a_model_with_external_data_is_measured_on_a_node(lab: dict[str, Any], tmp_path: Path) -> None:
    """Its variants are made self-contained on the head (weights inside the file), so one file travels whole."""
    model = zoo.external_data_model(tmp_path / "model", "weights/w.bin")  # a nested location, as exporters write
    out = tmp_path / "out"
    done = _lab_run(lab, model, out, "lab-a", extra=("--history", str(tmp_path / "h.sqlite")))
    assert done.returncode == 0, done.stdout + done.stderr
    found = {d["variant"]["name"]: d for d in _measurements(out)}
    assert found["fp32"]["status"] == "ok", found["fp32"].get("failure")
    assert found["fp32"]["lab"]["node_id"] == lab["nodes"]["a"].node_id
    assert "history: stored as run 1 in" in done.stderr and "(2 row(s))" in done.stderr  # lab run --history


@needs_ray
@pytest.mark.slow
def test_a_node_lost_mid_cell_is_retried_on_another_node_of_its_profile(lab: dict[str, Any], tmp_path: Path) -> None:
    cluster = lab["cluster"]
    plan = lab["plan_join"](["lab-slow"])
    slow = [cluster.add_node(num_cpus=0, resources=plan.resources) for _ in range(2)]
    cluster.wait_for_nodes()
    by_id = {n.node_id: n for n in slow}
    killed: list[str] = []
    killer = _kill_first_busy_node(cluster, lab["workdir"], by_id, killed)
    out = tmp_path / "out"
    try:
        done = _lab_run(lab, zoo.tiny_conv_model(tmp_path / "conv.onnx"), out, "lab-slow")
    finally:
        killer.join(timeout=5)
        for node in slow:
            if node.node_id not in killed:
                cluster.remove_node(node)
    assert killed, "no cell started"
    assert done.returncode == 0, done.stdout + done.stderr
    found = _measurements(out)
    assert len(found) == 2 and all(d["status"] == "ok" for d in found), done.stderr
    survivor = next(i for i in by_id if i != killed[0])
    retried = [d for d in found if d["lab"]["attempts"] == 2]
    assert len(retried) == 1, [d["lab"] for d in found]
    assert retried[0]["lab"]["lost_nodes"] == [killed[0][:12]]
    assert all(d["lab"]["node_id"] == survivor for d in retried)
    assert "node lost" in done.stderr


@needs_ray
@pytest.mark.slow
def test_a_node_lost_with_no_other_of_its_profile_is_recorded_and_the_run_goes_on(lab: dict[str, Any],
                                                                                   tmp_path: Path) -> None:
    cluster, node = lab["cluster"], _slow_node(lab)
    killed: list[str] = []
    killer = _kill_first_busy_node(cluster, lab["workdir"], {node.node_id: node}, killed)
    out = tmp_path / "out"
    try:  # lab-a's cells run on their own node meanwhile
        done = _lab_run(lab, zoo.tiny_conv_model(tmp_path / "conv.onnx"), out, "lab-slow", "lab-a",
                        extra=("--wait-for-devices", "2"))
    finally:
        killer.join(timeout=5)
    assert killed == [node.node_id]
    assert done.returncode == 4, done.stdout + done.stderr
    found = {(d["profile"]["name"], d["variant"]["name"]): d for d in _measurements(out)}
    assert len(found) == 4
    for variant in ("fp32", "int8-dynamic"):
        assert found[("lab-a", variant)]["status"] == "ok"
        lost = found[("lab-slow", variant)]
        assert lost["status"] == "failed" and lost["failure"]["message"] == f"node lost ({node.node_id[:12]})"
    assert (out / "summary.json").is_file() and "node lost" in done.stdout


@needs_ray
@pytest.mark.slow
def test_ctrl_c_stops_a_lab_run_keeping_finished_cells_and_frees_the_board(lab: dict[str, Any],
                                                                          tmp_path: Path) -> None:
    cluster, node = lab["cluster"], _slow_node(lab)
    model = zoo.tiny_conv_model(tmp_path / "conv.onnx")
    out = tmp_path / "out"
    args = ["lab", "run", str(model), "--address", lab["address"], "--out", str(out), "--variant", "fp32",
            "--variant", "int8-dynamic", "--profile", "lab-slow"]
    try:
        # SIGINT at its default, as in a terminal (a suite started as a background job inherits it ignored)
        run = subprocess.Popen(EDGEOPT + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ), preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 200
        while time.monotonic() < deadline and not list((out / "measurements").glob("*.json")):
            time.sleep(0.1)
        finished = list((out / "measurements").glob("*.json"))
        assert len(finished) == 1, "no cell finished"
        time.sleep(1.0)  # the second cell is in its 4 s warm-up on the board
        run.send_signal(signal.SIGINT)
        stdout, stderr = run.communicate(timeout=60)
        assert run.returncode == 130, stdout + stderr
        assert "edgeopt: interrupted" in stderr
        kept = _measurements(out)
        assert len(kept) == 1 and kept[0]["status"] == "ok", kept
        assert not [p for p in out.rglob("*") if ".tmp" in p.name], "a half-written file was left"
        busy = None
        for _ in range(60):  # the board's slot is free again: nothing of the stopped run still runs on it
            status = subprocess.run(EDGEOPT + ["lab", "status", "--address", lab["address"], "--json"],
                                    capture_output=True, text=True, timeout=120)
            busy = {n["node_id"]: n["busy"] for n in json.loads(status.stdout)["nodes"]}.get(node.node_id)
            if busy is False:
                break
            time.sleep(0.5)
        assert busy is False
        again = _lab_run(lab, model, out, "lab-slow")  # the lock was released; the finished cell is reused
        assert again.returncode == 0, again.stdout + again.stderr
        assert again.stderr.count("done earlier, skipped") == 1, again.stderr
    finally:
        cluster.remove_node(node)
