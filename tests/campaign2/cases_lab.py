"""Rows of the second campaign: the device lab (``edgeopt lab head/join/status/run``) on a real Ray head with token
authentication, started once per session on a loopback port by ``tests/test_campaign2.py`` (only with
``EDGEOPT_LAB_CLUSTER=1``).  The rows run in table order: the join row adds the one device node (this host, as
profiles ``fast`` and ``slowlab``) that the run rows measure on, and the last row kills that node's raylet while
its cell runs.  A row that needs the node joins it itself when run alone (``-k``)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from tests.campaign2.table import Workspace2, case
from tests.hostile_runner import Outcome

EDGEOPT = [sys.executable, "-m", "edgeopt"]
JOINED: dict[str, bool] = {}  # address -> a device node is joined


def _lab(ws: Workspace2) -> str:
    """The lab's variables set for the row's command; the head's address."""
    lab = ws.shared.lab()
    ws.env.update({k: v for k, v in lab.items() if k != "ADDRESS"})
    return lab["ADDRESS"]


def _join(ws: Workspace2, address: str) -> None:
    if JOINED.get(address):
        return
    done = subprocess.run([*EDGEOPT, "lab", "join", "--address", address, "--profile", "fast", "--profile",
                           "slowlab", "--node-ip-address", "127.0.0.1"], capture_output=True, text=True, timeout=180,
                          env={**os.environ, **{k: v for k, v in ws.env.items() if v is not None}})
    assert done.returncode == 0, done.stdout + done.stderr
    JOINED[address] = True
    time.sleep(3)  # the head sees the node's resources a moment after ray start returns


def _no_cells(ws: Workspace2, outcome: Outcome) -> list[tuple[str, str]]:
    """No cell folder left on the node, no measurement worker of edgeopt alive anywhere."""
    problems = []
    cells = Path(str(ws.env["EDGEOPT_LAB_WORKDIR"]))
    deadline = time.monotonic() + 10  # the worker's lifeline polls its parent: give it a few rounds
    while True:
        left = sorted(p.name for p in cells.glob("edgeopt-cell-*")) if cells.is_dir() else []
        workers = [p.pid for p in psutil.process_iter(["cmdline"])
                   if "edgeopt.measure.worker" in " ".join(p.info.get("cmdline") or [])]
        if not (left or workers) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    problems += [("bad", f"cell folder left on the node: {name}") for name in left]
    problems += [("bad", f"a measurement worker outlived the run: pid {pid}") for pid in workers]
    return problems


@case("lab-head-port-in-worker-range", "lab", 2, r"16379", r"worker", r"10002", timeout=120)
def build_lab_head_port_in_worker_range(ws: Workspace2) -> list[str]:
    _lab(ws)
    return ["lab", "head", "--address", "127.0.0.1:16379"]


def _token_not_in_argv(ws: Workspace2, outcome: Outcome) -> list[tuple[str, str]]:
    token = str(ws.env["RAY_AUTH_TOKEN"])
    shown = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        if token in " ".join(process.info.get("cmdline") or []):
            shown.append(process.info["pid"])
    return [("bad", f"the lab's token is in the command line of pid {pid}") for pid in shown]


@case("lab-head-token", "lab", 0, r'"head": true', stream="stdout", out_untouched=False, timeout=120,
      check=_token_not_in_argv)
def build_lab_head_token(ws: Workspace2) -> list[str]:
    """The session's head runs with token authentication; its token is in no process's argv."""
    return ["lab", "status", "--address", _lab(ws), "--json"]


@case("lab-token-file-perms", "lab", 0, r"auth_token is readable by other users \(mode 0644\)", r"chmod 600",
      stream="stderr", out_untouched=False, timeout=120)
def build_lab_token_file_perms(ws: Workspace2) -> list[str]:
    """The token in ``~/.ray/auth_token`` as ``ray get-auth-token --generate`` leaves it (0644): warned."""
    address = _lab(ws)
    home = ws.path("home/.ray/auth_token").parent.parent
    token_file = home / ".ray" / "auth_token"
    token_file.write_text(str(ws.env.pop("RAY_AUTH_TOKEN")))
    token_file.chmod(0o644)
    ws.env.update({"HOME": str(home), "RAY_AUTH_TOKEN": None})
    return ["lab", "status", "--address", address]


@case("lab-status-good-token", "lab", 0, r"head\s+alive", stream="stdout", out_untouched=False, timeout=120)
def build_lab_status_good_token(ws: Workspace2) -> list[str]:
    return ["lab", "status", "--address", _lab(ws)]


def _within(seconds: float) -> object:
    def check(ws: Workspace2, outcome: Outcome) -> list[tuple[str, str]]:
        problems = [("weak", f"took {outcome.seconds:.1f} s to refuse (at most {seconds:g} s)")] \
            if outcome.seconds > seconds else []
        noise = [line for line in outcome.stderr.splitlines() if line.strip() and not line.startswith("edgeopt:")]
        problems += [("weak", f"{len(noise)} lines besides edgeopt's own: {noise[0][:120]}")] if noise else []
        return problems
    return check


@case("lab-status-wrong-token", "lab", 4, r"refused this client's token", r"RAY_AUTH_TOKEN", timeout=120,
      check=_within(5))
def build_lab_status_wrong_token(ws: Workspace2) -> list[str]:
    address = _lab(ws)
    ws.env["RAY_AUTH_TOKEN"] = "wrongwrongwrongwrongwrongwrong00"
    return ["lab", "status", "--address", address]


@case("lab-status-no-auth-mode", "lab", 4, r"refused this client's token", r"RAY_AUTH_MODE=token", timeout=120,
      check=_within(5))
def build_lab_status_no_auth_mode(ws: Workspace2) -> list[str]:
    """A client without token authentication (no mode, no token anywhere) against a head that requires it."""
    address = _lab(ws)
    ws.env.update({"RAY_AUTH_MODE": None, "RAY_AUTH_TOKEN": None, "HOME": str(ws.path("nohome/x").parent)})
    return ["lab", "status", "--address", address]


@case("lab-join-fast", "lab", 0, r"joining as: fast, slowlab", stream="stdout", out_untouched=False, timeout=180,
      daemons="the device node's Ray processes (ray start), until the session's ray stop")
def build_lab_join_fast(ws: Workspace2) -> list[str]:
    address = _lab(ws)
    JOINED[address] = True
    return ["lab", "join", "--address", address, "--profile", "fast", "--profile", "slowlab",
            "--node-ip-address", "127.0.0.1"]


@case("lab-status-after-join", "lab", 0, r"device\s+alive\s+fast, slowlab", stream="stdout", out_untouched=False,
      timeout=120)
def build_lab_status_after_join(ws: Workspace2) -> list[str]:
    address = _lab(ws)
    _join(ws, address)
    time.sleep(3)
    return ["lab", "status", "--address", address]


@case("lab-run-no-matching-node", "lab", 4, r"not-applicable|no node", stream="stdout", out_untouched=False,
      timeout=300)
def build_lab_run_no_matching_node(ws: Workspace2) -> list[str]:
    """A profile no node is: its rows are not-applicable after --wait-for-devices, exit 4 (docs/lab.md)."""
    address = _lab(ws)
    return ["lab", "run", str(ws.model), "--profile", "raspberry-pi-5", "--variant", "fp32", "--address", address,
            "--out", "out", "--wait-for-devices", "5"]


@case("lab-run-wrong-token", "lab", 4, r"refused this client's token", timeout=120, check=_within(5))
def build_lab_run_wrong_token(ws: Workspace2) -> list[str]:
    address = _lab(ws)
    ws.env["RAY_AUTH_TOKEN"] = "wrongwrongwrongwrongwrongwrong00"
    return ["lab", "run", str(ws.model), "--profile", "fast", "--variant", "fp32", "--address", address,
            "--out", "out"]


@case("lab-run-ok", "lab", 0, r"fp32", stream="stdout", out_untouched=False, timeout=300, check=_no_cells)
def build_lab_run_ok(ws: Workspace2) -> list[str]:
    address = _lab(ws)
    _join(ws, address)
    return ["lab", "run", str(ws.model), "--profile", "fast", "--variant", "fp32", "--address", address,
            "--out", "out"]


def _board_raylets(workdir: str) -> list[psutil.Process]:
    """The raylets of joined device nodes: those started with the lab's node workdir in their environment (the
    head is started without it)."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        if "raylet" not in " ".join(process.info.get("cmdline") or [])[:200]:
            continue
        with contextlib.suppress(psutil.Error):
            if process.environ().get("EDGEOPT_LAB_WORKDIR") == workdir and process.cmdline()[0].endswith("/raylet"):
                found.append(process)
    return found


def _kill_board_mid_cell(workdir: str, stop: threading.Event) -> None:
    """Once a measurement worker runs, wait 3 s, then SIGKILL the device node's raylet (as a board losing power
    or its network would)."""
    while not stop.is_set():
        if any("edgeopt.measure.worker" in " ".join(p.info.get("cmdline") or [])
               for p in psutil.process_iter(["cmdline"])):
            time.sleep(3)
            for raylet in _board_raylets(workdir):
                with contextlib.suppress(psutil.Error):
                    raylet.kill()
            return
        time.sleep(0.1)


def _node_lost(ws: Workspace2, outcome: Outcome) -> list[tuple[str, str]]:
    """'node lost' said; no worker alive; the dead node's cell folder (Ray kills the cell's worker with the node,
    so nothing can clean up then) is removed when the board joins again, as ``lab join`` says."""
    problems = [] if "node lost" in outcome.stdout + outcome.stderr else [("weak", "no 'node lost' said")]
    cells = Path(str(ws.env["EDGEOPT_LAB_WORKDIR"]))
    left = sorted(p.name for p in cells.glob("edgeopt-cell-*"))
    rejoin = subprocess.run([*EDGEOPT, "lab", "join", "--address", ws.shared.lab()["ADDRESS"], "--print-command"],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, **{k: v for k, v in ws.env.items() if v is not None}})
    if rejoin.returncode != 0:
        problems.append(("bad", f"lab join after the node died: exit {rejoin.returncode}: {rejoin.stderr[-300:]}"))
    problems += [("bad", f"cell folder of the dead node not removed by lab join: {name}")
                 for name in left if name not in rejoin.stdout or (cells / name).exists()]
    return problems + _no_cells(ws, outcome)


@case("lab-run-node-dies-mid-cell", "lab", 4, r"node lost", stream="stdout", out_untouched=False, timeout=400,
      check=_node_lost)
def build_lab_run_node_dies_mid_cell(ws: Workspace2) -> list[str]:
    """The device node's raylet is killed while its cell measures: the run says the node was lost, exit 4; no
    worker outlives it, and the cell's folder on the node goes at the board's next ``lab join``."""
    address = _lab(ws)
    _join(ws, address)
    stop = threading.Event()
    threading.Thread(target=_kill_board_mid_cell, args=(str(ws.env["EDGEOPT_LAB_WORKDIR"]), stop),
                     daemon=True).start()
    JOINED[address] = False  # the node is gone after this row
    return ["lab", "run", str(ws.model), "--profile", "slowlab", "--variant", "fp32", "--variant", "fp16",
            "--address", address, "--out", "out", "--wait-for-devices", "5"]
