"""The ``edgeopt`` command: thin subcommands over the library, one exit code per outcome.

Exit codes: 0 pass (or not applicable), 1 a budget failed, 2 usage or configuration error (also an output
folder that cannot be written: read-only, full, not a folder, or busy with another command), 3 input rejected
(model file, calibration data), 4 a backend/quantizer/worker failed, 5 inconclusive (a confidence interval
straddles a budget); 130 after Ctrl-C (SIGINT), 128 + N after signal N (SIGTERM: 143, SIGHUP: 129), each an
orderly stop: the worker's process group is killed and the output folder is left without temporary files.
Output piped into a reader that stops early (``edgeopt profiles list | head -1``) ends the command quietly with
141 (128 + SIGPIPE, what a shell tool killed by SIGPIPE gives): nothing more is written and nothing is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import select
import signal
import sys
import textwrap
import threading
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from edgeopt.cli import ascii_fallback, options, output
from edgeopt.cli.json_output import add_json_option, print_json
from edgeopt.cli.parsing import WIDTH, add_command_parser, exit_code_lines, global_options_parent
from edgeopt.cli.run_options import add_run_arguments, run_config
from edgeopt.errors import EXIT_BACKEND_FAILURE, EXIT_USAGE, BackendUnavailableError, ConfigError, EdgeoptError


def add_command(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``export``, ``inspect``, ``quantize``, ``profiles``, ``profile``, ``gate`` and ``run``."""
    p = add_command_parser(
        subparsers, "export", summary="export a torch factory (package.module:function) to ONNX",
        description="Call FACTORY (a function returning a torch.nn.Module, or (module, example_inputs)), bind the "
        "declared inputs to forward's parameter names, export with torch.onnx (every tensor forward returns, dicts "
        "and ModelOutput included, becomes a named output; every dimension that is a name stays dynamic), check the "
        "file against PyTorch at two sizes of each dynamic dimension (max abs/rel error, cosine) and write it with "
        "its provenance JSON (versions, parity, the factory's source hash) beside it. Needs pip install "
        "'edgeopt[torch]'. docs/export.md.",
        example='edgeopt export pkg.models:make_bert --out bert.onnx --input "input_ids:batch x seq=128:int64" '
        '--input "attention_mask:batch x seq:int64"')
    p.add_argument("factory", metavar="FACTORY", help="package.module:function returning the torch module (or "
                   "(module, example_inputs)); its module may define input_spec() in --input's grammar")
    options.add_out_options(p.add_argument, required=True, what="the ONNX file to write (its provenance JSON "
                            "is written beside it)")
    options.add_export_options(p.add_argument)
    p.add_argument("--parity-inputs", metavar="PATH", help="samples the parity check runs first: a folder or "
                   ".npz in the calibration formats (docs/calibration.md) (default: the factory's example inputs, "
                   "then in-domain synthetic data)")
    p.add_argument("--max-abs", type=float, default=1e-3, metavar="E",
                   help="largest absolute output error vs PyTorch accepted unless the relative one is within "
                   "--max-rel (default: %(default)s)")
    p.add_argument("--max-rel", type=float, default=1e-3, metavar="E",
                   help="largest error relative to the output's largest magnitude accepted unless the absolute "
                   "one is within --max-abs (default: %(default)s)")
    p.add_argument("--min-cosine", type=float, default=0.9999, metavar="C",
                   help="smallest cosine similarity of each output vs PyTorch accepted (default: %(default)s)")
    p.set_defaults(handler=handle_export)

    p = add_command_parser(
        subparsers, "inspect", summary="inputs, outputs, opsets, parameters, size and MACs of an ONNX file",
        description="Read MODEL and print its inputs and outputs (name, type, shape), opsets, producer, size on "
        "disk, parameter and node counts, operator counts and the MACs of its Conv, Gemm and MatMul nodes; for "
        "symbolic input dimensions, how a run on --profile would resolve them.",
        example="""
            edgeopt inspect model.onnx
            edgeopt inspect ocr.onnx --shape x:1x3x48x192 --json""")
    p.add_argument("model", type=Path, metavar="MODEL", help="the ONNX file")
    p.add_argument("--shape", action="append", metavar="NAME:SHAPE", help="fix a dynamic input for MAC counting, "
                   "e.g. x:1x3x48x192; repeatable (default: the shapes in the file)")
    options.add_profile_options(p.add_argument, note="whose bench.input_shapes and batch_size resolve symbolic dims",
                                default_help="host-cpu")
    options.add_calibration_options(p.add_argument)
    add_json_option(p, "the inspection")
    p.set_defaults(handler=handle_inspect)

    p = add_command_parser(
        subparsers, "quantize", summary="make variants of an ONNX file",
        description="Make the variants of MODEL that --variant names (fp32, fp16, int8 dynamic, int8 static QDQ "
        "with calibration) in the --out folder, each opened and run once before it is written, each with its "
        "provenance JSON. A variant that fails is reported and the others are still made.",
        example="edgeopt quantize model.onnx --out variants --calibration calibration_data/images")
    p.add_argument("model", type=Path, metavar="MODEL", help="the fp32 ONNX file to make variants of")
    options.add_out_options(p.add_argument, required=True, what="folder for the variant files")
    options.add_variant_options(p.add_argument)
    options.add_calibration_options(p.add_argument, sample_limits=True)
    p.add_argument("--exclude-node", action="append", default=[], metavar="NODE",
                   help="keep this node in float (int8 variants); repeatable (default: quantize every node)")
    options.add_force_options(p.add_argument)
    p.set_defaults(handler=handle_quantize)

    p = add_command_parser(
        subparsers, "profiles", summary="list, show or check hardware profiles; print their JSON Schema",
        description="list: every profile found (./hardware_profiles, $EDGEOPT_PROFILE_PATH, the shipped ones) "
        "and whether this host is its hardware; show NAME: one profile as JSON and why this host matches it or "
        "not; check: validate every profile file (exit 2 when one is invalid); schema: the JSON Schema of a "
        "profile file, for editors and other tools.",
        example="""
            edgeopt profiles list
            edgeopt profiles show raspberry-pi-5
            edgeopt profiles check --json
            edgeopt profiles schema > hardware-profile.schema.json""")
    p.add_argument("action", choices=["list", "show", "check", "schema"], help="what to do: %(choices)s")
    p.add_argument("name", nargs="?", metavar="NAME", help="the profile for show: a name or a YAML path")
    add_json_option(p, "the list, the profile or the check")
    p.set_defaults(handler=handle_profiles)

    p = add_command_parser(
        subparsers, "profile", summary="measure ONNX file(s) as they are on hardware profile(s)",
        description="Measure each MODEL as it is (no variants made) on each --profile, each in an isolated "
        "worker process, store one measurement JSON per (model, profile) in --out, judge it against the "
        "profile's budgets and print the table.",
        example="edgeopt profile some.onnx --profile host-cpu --out results")
    p.add_argument("models", nargs="+", type=Path, metavar="MODEL", help="ONNX file(s) to measure")
    options.add_out_options(p.add_argument, default=Path("edgeopt-out/measurements"))
    options.add_profile_options(p.add_argument, repeatable=True, required=True)
    options.add_budget_options(p.add_argument)
    options.add_proxy_options(p.add_argument)
    options.add_history_options(p.add_argument)
    add_json_option(p, "the rows, gates and measurement files")
    p.set_defaults(handler=handle_profile)

    p = add_command_parser(
        subparsers, "gate", summary="judge stored measurement JSON files against their profile's budgets",
        description="Judge each stored measurement against the budgets of the profile stored in it (or of "
        "--profile, with --budget overrides) without measuring again, and exit with the verdict.",
        example="edgeopt gate results/some__host-cpu.json --budget p95_ms=20")
    p.add_argument("results", nargs="+", type=Path, metavar="RESULT", help="measurement JSON file(s)")
    options.add_profile_options(p.add_argument, note="whose budgets to judge against",
                                default_help="the profile stored in each result")
    options.add_budget_options(p.add_argument)
    options.add_proxy_options(p.add_argument)
    add_json_option(p, "the verdicts and checks")
    p.set_defaults(handler=handle_gate)

    p = add_command_parser(
        subparsers, "run", summary="the whole pipeline: export → variants → measure → gate → report",
        description="Export MODEL (a PyTorch factory) or take it (an ONNX file), make its variants, measure each "
        "on every runtime of each --profile, compare its outputs with fp32 (and its task metric on --eval), "
        "judge every budget, write summary.json, summary.md, the measurements and the reports into --out, print "
        "the table and exit with the verdict. A rerun reuses finished steps.",
        example="""
            edgeopt run some.onnx --profile host-cpu
            edgeopt run edgeopt.zoo.digits:digits_cnn --profile x86-avx512vnni-2core \\
                --calibration calibration_data/digits --eval calibration_data/digits/eval.npz --out out/""")
    add_run_arguments(p)
    p.set_defaults(handler=handle_run)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeopt", formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[global_options_parent(in_subcommand=False)],
        description=textwrap.fill("Export, quantize and measure neural networks on declared hardware profiles, "
                                  "and gate them on latency, memory and accuracy budgets with confidence "
                                  "intervals.", WIDTH),
        epilog=exit_code_lines() + "\n\n'edgeopt COMMAND --help' describes each command, with an example.")
    from edgeopt import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")
    add_command(sub)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_command(sub)
    return parser


def handle_export(args: argparse.Namespace) -> int:
    from edgeopt.models.calibration import load_calibration
    from edgeopt.models.export import ParityTolerance, export_onnx
    from edgeopt.models.factory import declared_inputs, factory_result
    from edgeopt.models.modelref import factory_source_sha256, load_entry_point, parse_inputs

    load_entry_point(args.factory)  # a bad reference is exit 2 before the factory runs
    made = factory_result(args.factory)
    declaration = declared_inputs(made, parse_inputs(args.input) if args.input else None)
    samples = list(made.example_feeds())
    if args.parity_inputs:
        samples += list(load_calibration(args.parity_inputs, expected_inputs=declaration.concrete(),
                                         min_samples=1).samples)
    result = export_onnx(made.module, declaration, args.out, opset=args.opset, exporter=args.exporter,
                         source=args.factory, source_sha256=factory_source_sha256(args.factory),
                         with_past=args.with_past,
                         parity_inputs=samples[:8],
                         tolerance=ParityTolerance(args.max_abs, args.max_rel, args.min_cosine))
    dims = ", ".join(f"{name} (example {sizes['example']})"
                     for name, sizes in result.provenance["dynamic_dims"].items())
    print(f"exported with {args.exporter}, opset {result.provenance['opset']}; "
          + (f"dynamic dims: {dims}" if dims else "every dimension fixed"))
    print(f"parity vs PyTorch at: {'; '.join(result.provenance['parity_checked_at'])}")
    for parity in result.parity:
        print(f"output {parity.output}: max abs {parity.max_abs_error:.3g}, max rel {parity.max_rel_error:.3g}, "
              f"cosine {parity.cosine:.7f}")
    print(f"wrote {result.path} and {result.provenance_path}")
    return 0


def handle_inspect(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from edgeopt.models.graph import inspect_model
    from edgeopt.models.modelref import parse_input_spec

    shapes = {s.name: tuple(int(d) for d in s.shape) for s in map(parse_input_spec, args.shape or [])}
    info = inspect_model(args.model, shapes or None)
    if args.json:
        print_json("inspect", info.to_dict())
        return 0
    print(f"{info.path}: {info.size_bytes / 2**20:.2f} MB on disk, IR {info.ir_version}, producer {info.producer}")
    print("opsets: " + ", ".join(f"{d} {v}" for d, v in info.opsets.items()))
    rows = [["input", t.name, t.dtype, "x".join(map(str, t.shape))] for t in info.inputs]
    rows += [["output", t.name, t.dtype, "x".join(map(str, t.shape))] for t in info.outputs]
    print(tabulate(rows, headers=["", "name", "dtype", "shape"], tablefmt="simple"))
    at = f" at {info.macs_assumed}" if info.macs_assumed else ""
    unknown = (f" (shapes unknown for {len(info.macs_unknown_nodes)} nodes: fix their inputs' dims with --shape "
               "NAME:SHAPE)") if info.macs_unknown_nodes else ""
    print(f"parameters: {info.parameter_count:,}; nodes: {info.node_count}; MACs (Conv/Gemm/MatMul){at}: "
          f"{info.macs:,}{unknown}")
    print("ops: " + ", ".join(f"{op} {n}" for op, n in info.op_counts.items()))
    for repair in info.graph_repairs:
        print(f"repaired in memory (the file is unchanged): {repair}")
    _print_shape_resolution(args, info)
    return 0


def _print_shape_resolution(args: argparse.Namespace, info: Any) -> None:
    """How each symbolic input dim of ``info`` (a ModelInfo) will be resolved in a run
    (edgeopt.models.inputs.resolve_shapes)."""
    from edgeopt.models.calibration import load_calibration
    from edgeopt.models.input_spec import InputSpec
    from edgeopt.models.inputs import resolve_shapes
    from edgeopt.models.modelref import parse_input_spec
    from edgeopt.profiles.schema import load_profile

    specs = [InputSpec(t.name, t.shape, t.dtype) for t in info.inputs]
    if all(isinstance(d, int) for spec in specs for d in spec.shape):
        return
    profile = load_profile(args.profile or "host-cpu")
    samples = load_calibration(args.calibration, expected_inputs=specs, min_samples=1).samples \
        if args.calibration else ()
    resolved = resolve_shapes(specs, given=[parse_input_spec(t) for t in args.shape or []],
                              profile_shapes=profile.bench.input_shapes, samples=samples,
                              batch_size=profile.bench.batch_size, strict=False)
    print(f"symbolic dims, as a run on profile {profile.name} would resolve them:")
    for item in resolved:
        print(f"  {item.describe()}")
    if not all(item.complete for item in resolved):
        print("  unresolved dims stop a run (exit 2): set them with --input NAME:SHAPE, the profile's "
              "bench.input_shapes, or --calibration samples of that shape")


def handle_quantize(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from edgeopt.models.calibration import cap_note, load_calibration
    from edgeopt.models.graph import input_specs, load_model
    from edgeopt.models.quantize import make_variants
    from edgeopt.models.recipes import DEFAULT_VARIANTS, Recipe
    from edgeopt.models.variants import VariantFailure

    specs = input_specs(load_model(args.model))
    recipes = [replace(Recipe.parse(v), exclude_nodes=tuple(args.exclude_node)) for v in
               (args.variant or DEFAULT_VARIANTS)]
    calibration = None
    if args.calibration:
        low, high = options.sample_limits(args)
        calibration = load_calibration(args.calibration, expected_inputs=specs, min_samples=low, max_samples=high)
        note = cap_note(calibration)
        if note:
            print(note, file=sys.stderr)
    results = make_variants(args.model, recipes, args.out, calibration=calibration, force=args.force)
    code = 0
    for item in results:
        if isinstance(item, VariantFailure):
            print(f"{item.name}: FAILED: {item.message}", file=sys.stderr)
            code = max(code, item.exit_code)
        else:
            print(f"{item.name}: {item.path} ({item.size_bytes / 2**20:.2f} MB, {item.provenance['preprocessing']})")
    return code


def handle_profiles(args: argparse.Namespace) -> int:
    from edgeopt.core.host import host_fingerprint
    from edgeopt.profiles.schema import check_profile_files, list_profiles, load_profile, match_identity

    if args.action == "schema":
        from edgeopt.cli.schemas import shipped_schema

        print(shipped_schema("hardware-profile"), end="")
        return 0
    host = host_fingerprint()
    if args.action == "show":
        if not args.name:
            raise ConfigError("profiles show: give a profile name")
        profile = load_profile(args.name)
        match = match_identity(profile, host)
        if args.json:
            print_json("profile", {"host": host.summary(), "host_matches": match.matches,
                                   "reasons": list(match.reasons), "profile": profile.model_dump(mode="json")})
            return 0
        print(json.dumps(profile.model_dump(mode="json"), indent=2))
        print(f"this host ({host.summary()}) {'IS' if match.matches else 'is NOT'} {profile.name}: "
              + "; ".join(match.reasons))
        return 0
    if args.action == "list":
        listed = [(profile, match_identity(profile, host)) for profile in list_profiles()]
        if args.json:
            print_json("profiles", {"host": host.summary(), "profiles": [
                {"name": profile.name, "description": profile.description, "host_matches": match.matches,
                 "reasons": list(match.reasons)} for profile, match in listed]})
            return 0
        for profile, match in listed:
            print(f"{profile.name:28s} {'matches this host' if match.matches else 'other hardware':18s} "
                  f"{profile.description}")
        return 0
    code, files = 0, []
    for path, outcome in check_profile_files():
        if isinstance(outcome, ConfigError):
            files.append({"path": str(path), "valid": False, "error": str(outcome)})
            if not args.json:
                print(f"INVALID {outcome}")
            code = EXIT_USAGE
        else:
            match = match_identity(outcome, host)
            files.append({"path": str(path), "valid": True, "name": outcome.name, "host_matches": match.matches,
                          "reasons": list(match.reasons)})
            where = "matches this host" if match.matches else "not this host: " + "; ".join(match.reasons)
            if not args.json:
                print(f"ok      {path}: {where}")
    if args.json:
        print_json("profiles-check", {"host": host.summary(), "files": files, "exit_code": code})
    return code


def handle_profile(args: argparse.Namespace) -> int:
    from edgeopt.cli.history import open_history, store_record
    from edgeopt.profiles.schema import load_profile
    from edgeopt.reports.table import render_table
    from edgeopt.workflows.profile import profile_models

    budgets = options.parse_budgets(args.budget)
    profiles = [load_profile(name) for name in args.profile]
    profiles = [p.with_budgets(budgets) if budgets else p for p in profiles]
    history = open_history(args.history)
    report = profile_models(args.models, profiles, args.out, proxy=args.proxy)
    if args.json:
        print_json("profile-measurements", report.to_dict())
    else:
        for sentence in report.sentences:
            print(sentence)
        print(render_table(list(report.rows)))
    store_record(history, lambda: _profile_record(report), str(args.out))
    return report.exit_code


def handle_gate(args: argparse.Namespace) -> int:
    from edgeopt.workflows.gate_files import gate_files

    report = gate_files(args.results, profile=args.profile, budgets=options.parse_budgets(args.budget),
                        proxy=args.proxy)
    judged: list[dict[str, Any]] = []
    for item in report.files:
        failure = None if item.gate is not None else (item.measurement.failure.message if item.measurement.failure
                                                      else "?")
        judged.append({"result": str(item.path), "failure": failure,
                       "gate": item.gate.to_dict() if item.gate is not None else None})
        if args.json:
            continue
        if item.gate is None:
            print(f"{item.path}: measurement failed: {failure}")
            continue
        print(f"{item.measurement.variant_name} on {item.profile.name}: {item.gate.verdict.value}")
        for check in item.gate.checks:
            print(f"  {check.sentence}")
    if args.json:
        print_json("gate", {"results": judged, "exit_code": report.exit_code})
    return report.exit_code


def _profile_record(report: Any) -> Any:
    from edgeopt.core.revision import project_revision
    from edgeopt.history.collect import record_from_measurements

    verdicts = {path: row.verdict for path, row in zip(report.written, report.rows, strict=True)}
    return record_from_measurements(list(report.written), project_revision(), verdicts)


def handle_run(args: argparse.Namespace) -> int:
    from edgeopt.cli.history import open_history, store_record
    from edgeopt.history.collect import record_from_run_folder
    from edgeopt.workflows.pipeline import run_pipeline

    config = run_config(args)
    history = open_history(args.history)
    result = run_pipeline(config)
    _print_run(args, result)
    store_record(history, lambda: record_from_run_folder(result.out_dir), str(result.out_dir))
    return result.exit_code


def _print_run(args: argparse.Namespace, result: Any) -> None:
    if args.json:  # summary.json as written: it has its own schema_version and kind
        print_json("run", json.loads(result.summary_path.read_text()))
        return
    if not args.quiet:
        for table in result.tables:
            print(table)
            print()
    summary = json.loads(result.summary_path.read_text())
    if not args.quiet:
        for recommendation in summary.get("recommendations", []):
            print(recommendation["line"])
    print(summary["verdict"])
    if not args.quiet:
        print(f"reports: {result.summary_path}, {result.markdown_path}")


# The modules that add the other subcommands.  Each, like this one, defines ``add_command(subparsers)``, which
# adds its parsers and sets ``handler=handle_<command>`` (a function ``(args) -> exit code``) as each one's
# default; ``main`` calls it, the one dispatch path.  They must be light to import: a handler imports what it
# needs when it runs.
COMMAND_MODULES: tuple[str, ...] = (
    "edgeopt.cli.report", "edgeopt.cli.compare", "edgeopt.cli.tracking", "edgeopt.cli.research",
    "edgeopt.cli.tensorrt", "edgeopt.cli.lab", "edgeopt.cli.history",
)


class Stopped(BaseException):
    """A stop signal other than Ctrl-C (SIGTERM, SIGHUP), raised in the main thread: like KeyboardInterrupt it
    is no ``Exception``, so it unwinds every ``finally`` (the worker's process group, the run-folder lock,
    atomic writes) and nothing swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
STOP_GRACE_S = 5.0  # a stop signal unwinds the command; past this, it exits without waiting for the unwinding
#: The stop signals this process received: an error raised while the stop unwinds (a pybind11 module, matplotlib's,
#: turns the stop raised during its import into ``ImportError: initialization failed``) is the stop, not a failure.
STOPS_RECEIVED: list[int] = []


@contextlib.contextmanager
def orderly_stop() -> Iterator[None]:
    """While the block runs, SIGINT raises KeyboardInterrupt and SIGTERM or SIGHUP raise :class:`Stopped`, once:
    further stop signals are ignored so that the unwinding finishes.  A signal this process was started with
    ignored (``nohup``) stays ignored.  The handlers before are restored afterwards.

    Python runs a handler only when the main thread runs Python: stuck in a native call (a model that never
    ends, run in this process), it would never stop.  So a thread woken by the signal (``set_wakeup_fd``)
    gives the unwinding :data:`STOP_GRACE_S`, then removes this process's run-folder lock files and exits."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    saved = {number: signal.getsignal(number) for number in STOP_SIGNALS}
    caught = [number for number, handler in saved.items() if handler is not signal.SIG_IGN]

    def stop(signum: int, frame: FrameType | None) -> None:
        for number in caught:
            signal.signal(number, signal.SIG_IGN)
        STOPS_RECEIVED.append(signum)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Stopped(signum)

    for number in caught:
        signal.signal(number, stop)
    wake, write_end = os.pipe()
    os.set_blocking(write_end, False)
    previous = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    finished = threading.Event()
    threading.Thread(target=_backstop, args=(wake, finished), name="edgeopt-stop", daemon=True).start()
    try:
        yield
    finally:
        finished.set()
        signal.set_wakeup_fd(previous)
        for number, handler in saved.items():
            signal.signal(number, handler)
        os.close(write_end)  # wakes the thread, which closes ``wake``


def _backstop(wake: int, finished: threading.Event) -> None:
    """Exit 128 + N (130 for SIGINT) when stop signal N came and the command has not finished unwinding
    :data:`STOP_GRACE_S` later."""
    from edgeopt.core.run_lock import abandon_held_locks

    try:
        while not finished.is_set():
            select.select([wake], [], [])
            received = [n for n in os.read(wake, 64) if n in STOP_SIGNALS]
            if received and not finished.wait(STOP_GRACE_S):
                print(f"edgeopt: still not stopped {STOP_GRACE_S:g} s after {signal.Signals(received[0]).name} (a "
                      "native call that does not return): exiting now", file=sys.stderr, flush=True)
                abandon_held_locks()
                os._exit(128 + received[0])
    finally:
        os.close(wake)


def file_problem(error: OSError, args: argparse.Namespace) -> str | None:
    """One line for an OSError about a file: the file meant (not an atomic write's temporary) and the reason; for
    a write into a full file system that names no file, the command's ``--out``.  None for any other OSError."""
    from edgeopt.core.fileio import target_of_temporary
    from edgeopt.core.lifeline import NO_ROOM

    reason = error.strerror or type(error).__name__
    if error.filename is None:
        out = getattr(args, "out", None)
        return f"{out}: cannot write the output: {reason}" if error.errno in NO_ROOM and out is not None else None
    path = target_of_temporary(Path(str(error.filename)))
    return f"{path}: {reason}" + (f" (and {error.filename2})" if error.filename2 else "")


EXIT_BROKEN_PIPE = 128 + 13  # 128 + SIGPIPE: the reader of our output went away


def _reader_gone() -> bool:
    """Whether stdout or stderr is a pipe whose reader has closed it (poll reports POLLERR on its write end)."""
    poller = select.poll()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError, OSError):
            poller.register(stream.fileno(), select.POLLOUT)
    return any(events & select.POLLERR for _, events in poller.poll(0))


def _quiet_after_broken_pipe() -> int:
    """Point stdout and stderr at /dev/null (the interpreter's last flush must not fail too) and give 141."""
    null = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError, OSError):
            os.dup2(null, stream.fileno())
    os.close(null)
    return EXIT_BROKEN_PIPE


def _dash_model_hint(argv: Sequence[str]) -> str | None:
    """After a usage error, a hint for a model path argparse took for an option (``-x.onnx``)."""
    dashed = next((arg for arg in argv if arg.startswith("-") and not arg.startswith("--")
                   and (arg.endswith(".onnx") or os.path.isfile(arg))), None)
    if dashed is None:
        return None
    return f"edgeopt: hint: {dashed} (a model path starting with '-': write ./{dashed} or put it after --)"


def _check_onnxruntime() -> None:
    """Exit 4 naming the fix when several ONNX Runtime builds are installed side by side."""
    from edgeopt.cli.onnxruntime_flavour import flavour_problem, installed_flavours

    problem = flavour_problem(installed_flavours())
    if problem is not None:
        raise BackendUnavailableError(problem)


def main(argv: Sequence[str] | None = None) -> int:
    ascii_fallback.install()  # before argparse writes help or a usage error
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser().parse_args(words)
    except SystemExit as usage:
        hint = _dash_model_hint(words) if usage.code == EXIT_USAGE else None
        if hint is not None:
            print(hint, file=sys.stderr)
        raise
    try:
        _check_onnxruntime()
        with orderly_stop(), output.configured(**output.options_of(args)):
            code = int(args.handler(args))
        sys.stdout.flush()  # a reader that went away shows here, not in the interpreter's last flush
        return code
    except BrokenPipeError:
        if _reader_gone():
            return _quiet_after_broken_pipe()
        if args.debug:
            traceback.print_exc()
        print("edgeopt: internal error: BrokenPipeError (rerun with --debug)", file=sys.stderr)
        return EXIT_BACKEND_FAILURE
    except EdgeoptError as error:
        if args.debug:
            traceback.print_exc()
        print(output.terminal_safe(f"edgeopt: error: {error}"), file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("edgeopt: interrupted", file=sys.stderr)
        return 130
    except Stopped as stop:
        print(f"edgeopt: stopped by {stop}", file=sys.stderr)
        return 128 + stop.signum
    except Exception as error:  # noqa: BLE001 - one line for the user; --debug shows the traceback
        if args.debug:
            traceback.print_exc()
        if STOPS_RECEIVED:  # the stop, turned into another error on its way out of native code
            signum = STOPS_RECEIVED[0]
            if signum == signal.SIGINT:
                print("edgeopt: interrupted", file=sys.stderr)
                return 130
            print(f"edgeopt: stopped by {signal.Signals(signum).name}", file=sys.stderr)
            return 128 + signum
        if isinstance(error, ModuleNotFoundError) and error.name == "onnxruntime":  # no ONNX Runtime build
            from edgeopt.cli.onnxruntime_flavour import installed_flavours, missing_runtime_message

            print(f"edgeopt: error: {missing_runtime_message(installed_flavours(), str(error))}", file=sys.stderr)
            return BackendUnavailableError.exit_code
        problem = file_problem(error, args) if isinstance(error, OSError) else None
        if problem is not None:  # a file that cannot be written or read: the folder or file given is unusable
            print(output.terminal_safe(f"edgeopt: error: {problem}"), file=sys.stderr)
            return EXIT_USAGE
        print(output.terminal_safe(f"edgeopt: internal error: {type(error).__name__}: {error} (rerun with --debug)"),
              file=sys.stderr)
        return EXIT_BACKEND_FAILURE


if __name__ == "__main__":
    sys.exit(main())
