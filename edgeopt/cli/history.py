"""``edgeopt history``: the stored series, their change points, ``--check`` (exit 1 on a slowdown that is still
going on), the dashboard page (``--html``) and ``history import`` (run folders, result files, MLflow); and the
``--history`` option of ``run``, ``lab run``, ``profile`` and ``ab`` (the store is opened, and so checked, before
anything is measured; the rows are appended after).

Light to import: SQLAlchemy, ruptures and matplotlib load when a handler runs.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeopt.cli.json_output import add_json_option, print_json
from edgeopt.cli.parsing import add_command_parser
from edgeopt.errors import EXIT_BUDGET_FAILED, EXIT_INPUT_REJECTED, EXIT_OK, EXIT_USAGE, ConfigError

STATISTICS = ("p50", "p95")


def add_command(subparsers: Any) -> None:
    """Add ``history`` to the ``edgeopt`` subcommands."""
    import os

    p = add_command_parser(
        subparsers, "history", summary="stored results over time: series, change points, --check, dashboard",
        description="show (the default): for every stored (model, profile, variant, runtime) the filters keep, the "
        "series of one statistic as a table, its change points (sustained shifts, each with the first run and "
        "commit, the size with its 95%% interval and its p-value) and whether the newest run starts or continues "
        "a significant slowdown; --check exits 1 when one does; --html writes the dashboard page, --plot one "
        "key's chart. import SOURCE...: store run folders, measurement or ab files (or folders holding them) and, "
        "with --mlflow-uri, the runs log-mlflow logged. docs/history.md.",
        example="""
            edgeopt history --store results.sqlite --model model.onnx --check
            edgeopt run model.onnx --profile host-cpu --history results.sqlite
            edgeopt history --store postgresql://ci@db.internal/edgeopt --html dashboard.html
            edgeopt history import ci-artifacts/ --store results.sqlite""",
        notes=f"Exit codes: {EXIT_OK} no alarm (or nothing checked), {EXIT_BUDGET_FAILED} --check: a slowdown "
        f"alarm, {EXIT_USAGE} a bad option, {EXIT_INPUT_REJECTED} a store that is not a database, another "
        "application's, newer or unreachable; nothing stored for the filters; an unreadable source.")
    p.add_argument("action", nargs="?", choices=("show", "import"), default="show",
                   help="show the series (default) or import SOURCE...")
    p.add_argument("sources", nargs="*", metavar="SOURCE", help="import: run folders, measurement/ab JSON files or "
                   "folders searched for them")
    p.add_argument("--store", metavar="PATH_OR_URL", default=os.environ.get("EDGEOPT_HISTORY") or None,
                   help="the results store: a SQLite file or an SQLAlchemy URL (default: $EDGEOPT_HISTORY)")
    for name in ("model", "profile", "variant", "runtime"):
        p.add_argument(f"--{name}", metavar=name.upper(), help=f"only this {name} (exact; default: every one)")
    p.add_argument("--statistic", choices=STATISTICS, default="p50", help="the latency statistic followed "
                   "(default: %(default)s)")
    p.add_argument("--branch", metavar="BRANCH", help="show: only runs of this branch; import: the branch of "
                   "sources that recorded none (default: every branch / none)")
    p.add_argument("--host-fingerprint", metavar="HEX", help="only runs on this host fingerprint (the runner "
                   "image: shown in the table) (default: every host)")
    p.add_argument("--since", metavar="COMMIT|DATE", help="read each series from the first run of this commit "
                   "(a prefix) or from this ISO date on: accepts a slowdown as the new normal, the level --check "
                   "compares with (default: the whole series)")
    p.add_argument("--last", type=int, metavar="N", help="show only the newest N runs of each series in the table "
                   "(change points and --check always read the whole series) (default: all)")
    p.add_argument("--check", action="store_true", help="exit 1 when the newest run of a series starts or "
                   "continues a significant slowdown")
    p.add_argument("--html", type=Path, metavar="OUT", help="write the dashboard page (one chart per series, "
                   "change points marked, each point linked to its run's report) (default: none)")
    p.add_argument("--plot", type=Path, metavar="OUT.png", help="write the chart of the one series the filters "
                   "keep as a PNG (default: none)")
    p.add_argument("--commit", metavar="SHA", help="import: the commit of sources that recorded none "
                   "(default: none)")
    p.add_argument("--mlflow-uri", metavar="URI", help="import: also the runs 'edgeopt log-mlflow' logged to this "
                   "MLflow tracking URI (needs --experiment) (default: no MLflow)")
    p.add_argument("--experiment", metavar="NAME", help="import: the MLflow experiment (default: none)")
    add_json_option(p, "the series, change points and checks (show) or what was imported")
    p.set_defaults(handler=handle_history)


def handle_history(args: argparse.Namespace) -> int:
    if not args.store:
        raise ConfigError("history: give --store PATH_OR_URL (or set EDGEOPT_HISTORY)")
    if args.last is not None and args.last < 1:
        raise ConfigError(f"--last {args.last}: must be a whole number >= 1")
    if args.action == "import":
        return _import(args)
    if args.sources:
        raise ConfigError(f"history show takes no SOURCE ({args.sources[0]}); did you mean 'history import'?")
    return _show(args)


def _show(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from edgeopt.history.changepoints import analyse
    from edgeopt.history.dashboard import DashboardEntry
    from edgeopt.history.store import HistoryStore, HistoryStoreError

    with HistoryStore(args.store, create=False) as store:
        keys = store.keys(model=args.model, profile=args.profile, variant=args.variant, runtime=args.runtime)
        if not keys:
            raise HistoryStoreError(f"history store {store.label}: no stored results{_filters(args)} "
                                    f"({store.run_count()} run(s) stored)")
        entries = []
        for key in keys:
            series = _since(store.series(key, branch=args.branch, host_fingerprint=args.host_fingerprint),
                            args.since)
            if series.points:
                changes, check = analyse(series, args.statistic)
                entries.append(DashboardEntry(series, tuple(changes), check))
        label = store.label
        if not entries:
            raise HistoryStoreError(f"history store {label}: no stored results{_filters(args)} "
                                    f"({store.run_count()} run(s) stored)")
    if args.plot is not None:
        _plot(args, entries)
    if args.html is not None:
        from edgeopt.history.dashboard import write_dashboard
        from edgeopt.measure.results import now_iso

        write_dashboard(args.html, entries, title="edgeopt history", store=label, statistic=args.statistic,
                        generated_at=now_iso())
    alarms = [entry.check for entry in entries if entry.check is not None and entry.check.alarm]
    code = EXIT_BUDGET_FAILED if args.check and alarms else EXIT_OK
    if args.json:
        print_json("history", {"store": label, "statistic": args.statistic, "series": [_entry_json(e)
                                                                                      for e in entries],
                               "alarms": len(alarms), "exit_code": code})
        return code
    for entry in entries:
        print(_entry_text(entry, args.statistic, tabulate, args.last))
        print()
    if args.html is not None:
        print(f"wrote {args.html}", file=sys.stderr)
    print(f"{len(entries)} series, {len(alarms)} slowdown alarm(s)" + (" (--check: exit 1)" if code else ""))
    return code


def _since(series: Any, since: str | None) -> Any:
    """The runs from the first one whose commit starts with ``since`` (or measured at or after the ISO 8601 time
    ``since``, UTC when it names no zone) on: a slowdown accepted as the new normal is checked from there."""
    if since is None:
        return series
    from dataclasses import replace
    from datetime import datetime, timezone

    if re.match(r"\d{4}-\d{2}-\d{2}", since):
        try:
            moment = datetime.fromisoformat(since)
        except ValueError as error:
            raise ConfigError(f"--since {since!r}: not a commit nor an ISO 8601 date ({error})") from error
        moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
        starts = (i for i, p in enumerate(series.points) if datetime.fromisoformat(p.recorded_at) >= moment)
    else:
        starts = (i for i, p in enumerate(series.points) if (p.commit or "").startswith(since))
    return replace(series, points=series.points[next(starts, len(series.points)):])


def _plot(args: argparse.Namespace, entries: list[Any]) -> None:
    from edgeopt.history.dashboard import plot_series

    if len(entries) != 1:
        names = "; ".join(e.series.key.label() for e in entries[:5])
        raise ConfigError(f"--plot draws one series and the filters keep {len(entries)} ({names}): narrow them with "
                          "--model, --profile, --variant and --runtime")
    plot_series(entries[0], args.plot, statistic=args.statistic)
    print(f"wrote {args.plot}", file=sys.stderr)


def _entry_text(entry: Any, statistic: str, tabulate: Callable[..., str], last: int | None) -> str:
    series = entry.series
    rows = []
    shown = len(series.points) if last is None else min(last, len(series.points))
    for number, point in enumerate(series.points, 1):
        if number <= len(series.points) - shown:
            continue
        value = point.value(statistic)
        lower, upper = point.interval(statistic)
        interval = f"[{lower:.3f}, {upper:.3f}]" if lower is not None and upper is not None else "-"
        rows.append([number, point.recorded_at, point.short_commit(), point.branch or "-",
                     point.host_fingerprint or "-", f"{value:.3f}" if value is not None else "-", interval,
                     point.samples if point.samples is not None else "-", point.verdict])
    headers = ["run", "measured at", "commit", "branch", "host", f"{statistic} ms", "95% interval", "samples",
               "verdict"]
    more = f", the newest {shown} shown" if shown < len(series.points) else ""
    lines = [f"{series.key.label()}: {len(series.points)} run(s){more}", tabulate(rows, headers, disable_numparse=True)]
    lines += [f"change: {change.sentence()}" for change in entry.changes]
    if entry.check is not None:
        lines.append(("ALARM: " if entry.check.alarm else "check: ") + entry.check.sentence)
    return "\n".join(lines)


def _entry_json(entry: Any) -> dict[str, Any]:
    from dataclasses import asdict

    check = entry.check
    return {"key": entry.series.key.to_dict(), "points": [p.to_dict() for p in entry.series.points],
            "changes": [asdict(c) for c in entry.changes],
            "check": None if check is None else {"alarm": check.alarm, "sentence": check.sentence,
                                                 "runs": check.runs,
                                                 "change": None if check.change is None else asdict(check.change)}}


def _filters(args: argparse.Namespace) -> str:
    given = [f"{name} {getattr(args, name)!r}" for name in ("model", "profile", "variant", "runtime", "branch",
                                                            "host_fingerprint", "since") if getattr(args, name)]
    return f" for {', '.join(given)}" if given else ""


def _import(args: argparse.Namespace) -> int:
    from edgeopt.history.collect import collect
    from edgeopt.history.store import HistoryStore

    if not args.sources and not args.mlflow_uri:
        raise ConfigError("history import: give SOURCE... (run folders, result files) or --mlflow-uri URI")
    if args.mlflow_uri and not args.experiment:
        raise ConfigError("history import --mlflow-uri: give --experiment NAME")
    records = [record for source in args.sources for record in collect(Path(source))]
    if args.mlflow_uri:
        from edgeopt.history.mlflow_import import records_from_mlflow

        records += records_from_mlflow(args.mlflow_uri, args.experiment)
    records = [_with_revision(record, args.commit, args.branch) for record in records]
    added = 0
    imported = []
    with HistoryStore(args.store) as store:
        for record in records:
            appended = store.append(record)
            added += appended.added
            imported.append({"source": record.source, "run_id": appended.run_id, "added": appended.added,
                             "results": len(record.results)})
            if not args.json:
                state = "stored" if appended.added else "already stored"
                print(f"{state}: {record.source} (run {appended.run_id}, {len(record.results)} row(s))")
        label = store.label
    if args.json:
        print_json("history-import", {"store": label, "runs": imported, "added": added, "exit_code": EXIT_OK})
    else:
        print(f"{added} new run(s) of {len(records)} in {label}")
    return EXIT_OK


def _with_revision(record: Any, commit: str | None, branch: str | None) -> Any:
    from dataclasses import replace

    if commit and record.commit is None:
        record = replace(record, commit=commit)
    if branch and record.branch is None:
        record = replace(record, branch=branch)
    return record


# ------------------------------------------------------------------------------------------ --history of run...


def open_history(location: str | None) -> Any:
    """The store ``--history`` names, opened (and so checked) now; None without one."""
    if not location:
        return None
    from edgeopt.history.store import HistoryStore

    return HistoryStore(location)


def store_record(store: Any, build: Callable[[], Any], results_at: str) -> None:
    """Append the record ``build`` makes to ``store`` (when there is one) and say so on stderr; a failure names
    where the results are, to import them later."""
    if store is None:
        return
    from edgeopt.history.store import HistoryStoreError

    try:
        with store:
            record = build()
            appended = store.append(record)
    except HistoryStoreError as error:
        raise HistoryStoreError(f"{error}; the results are in {results_at}: store them later with 'edgeopt history "
                                f"import {results_at} --store ...'") from error
    state = "stored as run" if appended.added else "already stored as run"
    print(f"history: {state} {appended.run_id} in {store.label} ({len(record.results)} row(s))", file=sys.stderr)
