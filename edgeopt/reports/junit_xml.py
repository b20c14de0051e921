"""JUnit XML of a run: one ``<testcase>`` per (variant, profile, budget), so any CI shows budget gates natively.

Layout (valid against the Jenkins xUnit plugin's ``junit-10.xsd``, the schema pytest's own JUnit output
follows): ``<testsuites>`` holds one ``<testsuite name="edgeopt.<profile>">`` per profile, whose
``<properties>`` carry the host fingerprint, library versions, commit and settings; each test case has
``classname="edgeopt.<profile>.<variant>"``, ``name`` = the budget metric (``p95_ms``, ``peak_rss_mb``,
...), and the gate's sentence in ``<system-out>``.

Verdict → element: ``pass`` → none (passed); ``fail`` → ``<failure>``; ``inconclusive``,
``not-applicable`` and any other undecided verdict (e.g. ``invalid``) → ``<skipped>`` (the budget
was neither met nor broken, and the message says why); a failed measurement → ``<error>`` on each of
the profile's budgets; a variant that could not be made → one ``<error>`` test case named ``make``.

Every attribute and text is well-formed XML 1.0 whatever a model or file name holds: characters XML forbids
(control characters such as ``\x01``, ``\x1b``, ``\x0b``) are written as their escapes (the text ``\x1b``),
by :func:`edgeopt.reports.run_data.shown_controls`.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgeopt.measure.results import Measurement
    from edgeopt.reports.run_data import RunData

_SKIP_TYPES = {"inconclusive": "inconclusive", "not-applicable": "not-applicable"}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else "nan"
    return str(value)


def _properties(parent: ET.Element, items: list[tuple[str, Any]]) -> None:
    props = ET.SubElement(parent, "properties")
    for name, value in items:
        if value is not None and value != "":
            ET.SubElement(props, "property", name=name, value=_fmt(value))


def _suite_properties(run: RunData, profile: str) -> list[tuple[str, Any]]:
    from edgeopt.reports.run_data import host_summary

    first = run.first_measurement(profile)
    items: list[tuple[str, Any]] = [("edgeopt.model", run.summary.model),
                                    ("edgeopt.verdict", run.summary.verdict),
                                    ("edgeopt.exit_code", run.summary.exit_code),
                                    ("edgeopt.profile", profile)]
    if first is None:
        return items
    host = first.host
    items += [("edgeopt.profile.digest", first.profile.digest),
              ("edgeopt.core.host", host_summary(first)), ("edgeopt.core.host.hostname", host.get("hostname")),
              ("edgeopt.core.host.cpu_model", host.get("cpu_model")), ("edgeopt.core.host.arch", host.get("arch")),
              ("edgeopt.core.host.logical_cores", host.get("logical_cores")),
              ("edgeopt.core.host.memory_total_gb", host.get("memory_total_gb")),
              ("edgeopt.core.host.os", f"{host.get('os')} {host.get('os_release') or ''}".strip()),
              ("edgeopt.host_matches", str(first.host_matches).lower()),
              ("edgeopt.proxy", str(first.proxy and not first.host_matches).lower()),
              ("edgeopt.commit", first.commit), ("edgeopt.created_at", first.created_at)]
    items += [(f"edgeopt.version.{k}", v) for k, v in sorted(first.versions.items())]
    items += [(f"edgeopt.session.{k}", v) for k, v in sorted(first.session.items())
              if isinstance(v, (str, int, float))]
    if first.latency is not None:
        summary = first.latency.summary()
        items += [("edgeopt.estimator", summary.estimator), ("edgeopt.ci_method", summary.ci_method),
                  ("edgeopt.confidence", summary.confidence)]
    return items


def _case(suite: ET.Element, profile: str, variant: str, name: str, seconds: float | None) -> ET.Element:
    case = ET.SubElement(suite, "testcase", classname=f"edgeopt.{profile}.{variant}", name=name)
    if seconds is not None:
        case.set("time", f"{seconds:.3f}")
    return case


def _out(case: ET.Element, text: str) -> None:
    ET.SubElement(case, "system-out").text = text


def _budgets_of(measurement: Measurement | None) -> list[str]:
    if measurement is None:
        return []
    budgets = measurement.profile.budgets
    return [str(k) for k, v in budgets.items() if v is not None]


def build_junit(run: RunData) -> ET.Element:
    """The ``<testsuites>`` element of ``run`` (see the module docstring for the mapping)."""
    root = ET.Element("testsuites", name=f"edgeopt {run.summary.model}".strip())
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    suites: list[tuple[ET.Element, dict[str, int]]] = []
    for profile in run.profiles:
        suite = ET.Element("testsuite", name=f"edgeopt.{profile}")
        counts = dict.fromkeys(totals, 0)
        seconds = 0.0
        first = run.first_measurement(profile)
        if first is not None:
            suite.set("hostname", str(first.host.get("hostname") or "localhost"))
            suite.set("timestamp", first.created_at.replace("+00:00", ""))
        _properties(suite, _suite_properties(run, profile))
        for row in run.rows_for(profile):
            variant = row.variant
            measurement = run.measurements.get((variant, profile))
            wall = None
            if measurement is not None and measurement.latency is not None:
                wall = measurement.latency.loop_wall_ms / 1000
                seconds += wall
            gate = run.gate(variant, profile)
            if row.status not in ("ok", "emulated") or gate is None:  # emulated: accuracy only, gated
                if row.status == "ok":  # measured, but nothing judged it
                    case = _case(suite, profile, variant, "measurement", wall)
                    _out(case, f"{variant} on {profile}: measured, not gated")
                    counts["tests"] += 1
                    continue
                message = str(row.failure or "measurement failed")
                kind = measurement.failure.kind if measurement is not None and measurement.failure else "failed"
                detail = measurement.failure.stderr_tail if measurement is not None and measurement.failure else ""
                if kind in ("unsupported", "unavailable"):  # the runtime refused the model: a reason, not an error
                    case = _case(suite, profile, variant, "runtime", None)
                    ET.SubElement(case, "skipped", message=message)
                    counts["tests"] += 1
                    counts["skipped"] += 1
                    continue
                for metric in _budgets_of(measurement) or ["measurement"]:
                    case = _case(suite, profile, variant, metric, None)
                    ET.SubElement(case, "error", message=message, type=f"edgeopt.{kind}").text = detail or message
                    counts["tests"] += 1
                    counts["errors"] += 1
                continue
            checks = gate.checks
            if not checks:
                case = _case(suite, profile, variant, "measurement", wall)
                _out(case, f"{variant} on {profile}: no budgets declared, nothing to judge")
                counts["tests"] += 1
            share = None if wall is None or not checks else wall / len(checks)
            for check in checks:
                case = _case(suite, profile, variant, check.metric, share)
                verdict, sentence = check.verdict.value, check.sentence
                counts["tests"] += 1
                if verdict == "fail":
                    ET.SubElement(case, "failure", message=sentence, type="edgeopt.budget-exceeded").text = sentence
                    counts["failures"] += 1
                elif verdict != "pass":
                    skip = ET.SubElement(case, "skipped", message=sentence,
                                         type=f"edgeopt.{_SKIP_TYPES.get(verdict, verdict)}")
                    skip.text = sentence
                    counts["skipped"] += 1
                _out(case, sentence)
        suite.set("time", f"{seconds:.3f}")
        suites.append((suite, counts))
    if run.unmade:
        from edgeopt.measure.stored import NOT_APPLICABLE_STATUS

        suite = ET.Element("testsuite", name="edgeopt.variants")
        counts = dict.fromkeys(totals, 0)
        for row in run.unmade:
            case = _case(suite, "variants", row.variant, "make", None)
            message = str(row.failure or "could not be made")
            counts["tests"] += 1
            if row.status == NOT_APPLICABLE_STATUS:  # the recipe does not apply to the model: skipped, with why
                ET.SubElement(case, "skipped", message=message, type="edgeopt.not-applicable").text = message
                counts["skipped"] += 1
                continue
            ET.SubElement(case, "error", message=message, type="edgeopt.variant-failed").text = message
            counts["errors"] += 1
        suites.append((suite, counts))
    total_time = 0.0
    for suite, counts in suites:
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
        total_time += float(suite.get("time", "0"))
        root.append(suite)
    for key in ("tests", "failures", "errors"):
        root.set(key, str(totals[key]))
    root.set("time", f"{total_time:.3f}")
    return root


def _well_formed(root: ET.Element) -> None:
    """Replace, in place, every character XML 1.0 forbids in ``root``'s attributes and texts by its escape."""
    from edgeopt.reports.run_data import shown_controls

    for element in root.iter():
        for key, value in element.attrib.items():
            element.set(key, shown_controls(value))
        if element.text:
            element.text = shown_controls(element.text)
        if element.tail:
            element.tail = shown_controls(element.tail)


def render_junit(run: RunData) -> str:
    root = build_junit(run)
    _well_formed(root)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(run: RunData, path: Path) -> Path:
    """Write the JUnit XML of ``run`` to ``path`` atomically; returns ``path``."""
    from edgeopt.core.fileio import write_text_atomic

    path = Path(path)
    write_text_atomic(path, render_junit(run))
    return path
