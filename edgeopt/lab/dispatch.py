"""``edgeopt lab run``'s measurement hook: every cell of the run becomes one Ray task that asks for its profile's
slot and the device's slot (:mod:`edgeopt.lab.resources`), so it runs on a node whose hardware is that profile,
at most one per device at a time.  The task measures with edgeopt's own isolated worker (:mod:`edgeopt.lab.node`);
the measurement comes back here and is saved into the run's ``measurements/`` folder as ``edgeopt run`` saves it,
with ``lab`` (node id, host name, start and end, attempts) added.

Reuse is the local rule (:func:`edgeopt.measure.cell.stored_measurement`): a stored measurement that succeeded
with this cell's key and its extra outputs is not dispatched again.  A profile no node offers within
``wait_for_devices`` seconds is a ``not-applicable: no device of profile P in the lab`` row; a node lost mid-cell
sends the cell to another node of its profile, else the cell is recorded ``node lost (<node>)`` and the run goes
on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeopt.lab.node import cell_payload, measure_payload
from edgeopt.lab.resources import DEVICE_RESOURCE, profile_resource, require_ray
from edgeopt.measure.cell import Cell, CellContext, cell_key, failed_measurement, stored_measurement
from edgeopt.measure.results import Failure, Measurement

logger = logging.getLogger(__name__)

POLL_S = 1.0  # how often the dispatcher looks at the cluster while cells run
LOSS_NOTICE_S = 10.0  # how long to wait for the head to mark a lost node dead
MAX_ATTEMPTS = 3  # a cell whose node is lost is sent again while another node of its profile is alive


def _run_cell(payload: dict[str, Any]) -> dict[str, Any]:
    """The Ray task (on the node)."""
    import ray

    return measure_payload(payload, ray.get_runtime_context().get_node_id())


def alive_nodes(ray: Any, profile: str) -> set[str]:
    """Ids of the live nodes that offer ``profile``'s slot."""
    return {n["NodeID"] for n in ray.nodes() if n.get("Alive") and profile_resource(profile) in n.get("Resources", {})}


def _unique(names: list[str]) -> list[str]:
    return list(dict.fromkeys(names))


@dataclass
class _Pending:
    index: int
    attempt: int
    nodes_at_dispatch: set[str]
    lost: list[str] = field(default_factory=list)
    orphaned_since: float | None = None  # when the last node of its profile was seen gone


class LabMeasure:
    """The ``RunConfig.measure`` hook of ``edgeopt lab run`` (the driver must be connected: ``ray.init``)."""

    def __init__(self, wait_for_devices: float = 10.0, max_attempts: int = MAX_ATTEMPTS) -> None:
        self.wait_for_devices = wait_for_devices
        self.max_attempts = max_attempts

    def __call__(self, cells: Sequence[Cell], context: CellContext) -> list[Measurement]:
        ray = require_ray()
        directory = Path(context.directory)
        directory.mkdir(parents=True, exist_ok=True)
        results: list[Measurement | None] = [None] * len(cells)
        keys: dict[int, tuple[str, str]] = {}
        todo: list[int] = []
        for index, cell in enumerate(cells):
            stem, key = cell.stem, cell_key(cell, context)
            keys[index] = (stem, key)
            previous = stored_measurement(cell, context)
            if previous is not None:
                logger.info(f"measure {stem}: done earlier, skipped (--force to redo)")
                results[index] = previous
            else:
                todo.append(index)
        present = {name: self._wait_for_device(ray, name) for name in {cells[i].profile.name for i in todo}}
        for index in [i for i in todo if not present[cells[i].profile.name]]:
            message = f"not-applicable: no device of profile {cells[index].profile.name} in the lab"
            results[index] = self._failed(cells[index], keys[index], directory, context, "unavailable", message)
            logger.info(f"measure {keys[index][0]}: {message}")
        remote = ray.remote(_run_cell)
        pending: dict[Any, _Pending] = {}

        def submit(index: int, attempt: int, lost: list[str]) -> None:
            cell = cells[index]
            stem = keys[index][0]
            payload = cell_payload(cell, context)
            ref = remote.options(num_cpus=0, max_retries=0, resources={
                profile_resource(cell.profile.name): 1, DEVICE_RESOURCE: 1}).remote(payload)
            pending[ref] = _Pending(index, attempt, alive_nodes(ray, cell.profile.name), lost)
            logger.info(f"measure {stem}: sent to the lab (profile {cell.profile.name}"
                        + (f", attempt {attempt}" if attempt > 1 else "") + ")")

        try:
            for index in todo:
                if results[index] is None:
                    submit(index, 1, [])
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
                for ref in ready:
                    state = pending.pop(ref)
                    results[state.index] = self._collect(ray, ref, state, cells, keys, directory, context, submit)
                self._check_orphans(ray, pending, cells, keys, directory, context, results)
        except BaseException:  # Ctrl-C, SIGTERM: what finished is saved; stop what did not
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        assert all(m is not None for m in results)
        return [m for m in results if m is not None]

    def _collect(self, ray: Any, ref: Any, state: _Pending, cells: Sequence[Cell], keys: dict[int, tuple[str, str]],
                 directory: Path, context: CellContext, submit: Any) -> Measurement | None:
        cell = cells[state.index]
        stem, key = keys[state.index]
        try:
            answer = ray.get(ref)
        except (ray.exceptions.NodeDiedError, ray.exceptions.WorkerCrashedError,
                ray.exceptions.LocalRayletDiedError, ray.exceptions.ObjectLostError) as error:
            gone = self._lost_nodes(ray, str(error), state.nodes_at_dispatch, cell.profile.name)
            lost = _unique(state.lost + ([n[:12] for n in gone] or [type(error).__name__]))
            if state.attempt < self.max_attempts and alive_nodes(ray, cell.profile.name):
                logger.info(f"measure {stem}: node lost ({', '.join(lost)}); sending it to another node")
                submit(state.index, state.attempt + 1, lost)
                return None
            message = f"node lost ({', '.join(lost)})"
            logger.warning(f"measure {stem}: FAILED: {message}")
            return self._failed(cell, (stem, key), directory, context, "crash", message)
        except ray.exceptions.RayTaskError as error:  # edgeopt on the node raised (e.g. a hash mismatch)
            message = f"{stem} on the lab: {str(error).strip().splitlines()[-1]}"
            logger.warning(f"measure {stem}: FAILED: {message}")
            return self._failed(cell, (stem, key), directory, context, "crash", message)
        document = dict(answer["measurement"])
        document["variant"] = {**document["variant"], "path": str(cell.variant.path)}
        document["lab"] = {**answer["lab"], "attempts": state.attempt, "lost_nodes": state.lost}
        measurement = Measurement.model_validate(document)
        for name, data in answer["files"].items():
            (directory / Path(name).name).write_bytes(data)
        measurement.save(directory / f"{stem}.json")
        where = f"node {answer['lab']['node_id'][:12]} ({answer['lab']['hostname']})"
        if measurement.ok and measurement.latency is not None:
            s = measurement.latency.summary()
            logger.info(f"measure {stem}: p50 {s.percentiles['p50'].value:.3f} ms, n={s.n} on {where}")
        else:
            logger.warning(f"measure {stem}: FAILED on {where}: "
                        f"{measurement.failure.message if measurement.failure else '?'}")
        return measurement

    @staticmethod
    def _lost_nodes(ray: Any, message: str, candidates: set[str], profile: str) -> list[str]:
        """Which of the nodes that could have run the cell is gone: named in the error, else the ones the head
        marks dead within :data:`LOSS_NOTICE_S` (it notices a lost node a few seconds after its tasks fail)."""
        named = sorted(n for n in candidates if n in message)
        deadline = time.monotonic() + LOSS_NOTICE_S
        while not named and time.monotonic() < deadline:
            named = sorted(candidates - alive_nodes(ray, profile))
            if not named:
                time.sleep(0.2)
        return named

    def _check_orphans(self, ray: Any, pending: dict[Any, _Pending], cells: Sequence[Cell],
                       keys: dict[int, tuple[str, str]], directory: Path, context: CellContext,
                       results: list[Measurement | None]) -> None:
        """A cell waiting for a profile whose last node is gone would wait forever: after ``wait_for_devices``
        seconds without one it is cancelled and recorded as lost."""
        now = time.monotonic()
        for ref, state in list(pending.items()):
            cell = cells[state.index]
            if alive_nodes(ray, cell.profile.name):
                state.orphaned_since = None
                continue
            state.orphaned_since = state.orphaned_since or now
            if now - state.orphaned_since < self.wait_for_devices:
                continue
            ray.cancel(ref, force=True)
            del pending[ref]
            gone = _unique(state.lost + [n[:12] for n in sorted(state.nodes_at_dispatch)])
            message = f"node lost ({', '.join(gone) or 'no node left'})"
            logger.warning(f"measure {keys[state.index][0]}: FAILED: {message}")
            results[state.index] = self._failed(cell, keys[state.index], directory, context, "crash", message)

    def _wait_for_device(self, ray: Any, profile: str) -> bool:
        deadline = time.monotonic() + self.wait_for_devices
        while not alive_nodes(ray, profile):
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))
        return True

    @staticmethod
    def _failed(cell: Cell, stem_key: tuple[str, str], directory: Path, context: CellContext, kind: Any,
                message: str) -> Measurement:
        """The saved record of a cell no node measured (head's fingerprint; ``host_matches`` false)."""
        measurement = failed_measurement(cell, context, Failure(kind=kind, message=message), key=stem_key[1],
                                         host_matches=False, mismatch_reasons=[message], expected_fast=False,
                                         lab={"node_id": None, "lost": message})
        measurement.save(directory / f"{stem_key[0]}.json")
        return measurement
