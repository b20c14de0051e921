"""The research subcommands ``edgeopt sensitivity``, ``edgeopt tune`` and ``edgeopt sweep``.

``add_command(subparsers)`` adds their parsers; each handler builds the library's typed config and
returns the exit code.  Importing this module imports nothing heavy (argparse, pathlib and :mod:`edgeopt.cli.options`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgeopt.cli import options
from edgeopt.cli.json_output import add_json_option, print_json
from edgeopt.cli.parsing import add_command_parser


def add_command(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``sensitivity``, ``tune`` and ``sweep`` to the ``edgeopt`` subparsers."""
    p = add_command_parser(
        subparsers, "sensitivity", summary="per-node quantization error of a QDQ variant (SQNR), ranked",
        description="Run MODEL (fp32) and QDQ (its quantized variant) on the same inputs, stream the "
        "signal-to-quantization-noise ratio of every quantized activation, map each to its node, and print the "
        "nodes ranked from the most damaging; write sensitivity.json and a plot into --out. With --isolated N, "
        "also quantize N variants each keeping one top node in float and report the output SQNR each wins back.",
        example="edgeopt sensitivity model.onnx variants/int8-static-minmax.onnx --calibration calibration_data/images")
    p.add_argument("model", type=Path, metavar="MODEL", help="the fp32 ONNX model the QDQ variant was made from")
    p.add_argument("qdq", type=Path, metavar="QDQ", help="the QDQ variant (e.g. variants/int8-static-minmax.onnx)")
    options.add_calibration_options(p.add_argument, required=True)
    options.add_eval_options(p.add_argument, note="its images are the inputs run", default_help="the calibration set")
    p.add_argument("--samples", type=int, default=64, metavar="N", help="inputs to run (default: %(default)s)")
    p.add_argument("--top", type=int, default=20, metavar="N", help="rows in the table and plot (default: "
                   "%(default)s)")
    p.add_argument("--isolated", type=int, default=0, metavar="N", help="also build one variant per top-N node "
                   "with only that node in float and report the output SQNR it wins back (N quantizer runs) "
                   "(default: %(default)s, none)")
    options.add_recipe_options(p.add_argument, note="of the QDQ variant, for --isolated")
    options.add_out_options(p.add_argument, default=Path("edgeopt-out/sensitivity"))
    add_json_option(p, "the ranked nodes (sensitivity.json)")
    p.set_defaults(handler=handle_sensitivity)

    p = add_command_parser(
        subparsers, "tune", summary="fastest row within an accuracy budget: int8 with the most sensitive nodes "
        "in float, or fp32, on any runtime of the profile",
        description="Quantize MODEL with --recipe, rank its nodes by sensitivity, and search (bisecting over how "
        "many of the most damaging nodes stay in float) for the int8 candidates whose drop in --metric on --eval, "
        "judged by a paired bootstrap interval, is within --max-drop; fp32 and the passing candidates are also "
        "measured on the profile's other runtimes (OpenVINO), and the fastest passing row is chosen: fp32 when no "
        "int8 row is faster (--select fewest: the passing int8 candidate with the fewest nodes in float). The eval "
        "file is any --eval file of 'run': 'images' or one array per model input; --metric cosine needs no labels.",
        example="edgeopt tune model.onnx --calibration DIR --eval eval.npz --profile host-cpu --max-drop 0.5")
    p.add_argument("model", type=Path, metavar="MODEL", help="the fp32 ONNX model")
    options.add_calibration_options(p.add_argument, required=True)
    options.add_eval_options(p.add_argument, required=True, note="--metric top1 needs its labels")
    options.add_input_options(p.add_argument)
    options.add_profile_options(p.add_argument, required=True)
    p.add_argument("--max-drop", type=float, required=True, metavar="D", help="largest accepted drop: top1 in "
                   "points, cosine as 1 - mean cosine; with --relative: %% of the fp32 value (required)")
    p.add_argument("--metric", choices=["top1", "cosine"], default="top1", help="task metric the drop is "
                   "measured in: %(choices)s (default: %(default)s)")
    p.add_argument("--relative", action="store_true", help="--max-drop is a percentage of the fp32 value "
                   "(default: absolute)")
    p.add_argument("--rule", choices=["upper", "point"], default="upper", help="pass when the upper end of the "
                   "95%% paired interval or the point estimate of the drop is within budget (default: %(default)s)")
    options.add_recipe_options(p.add_argument, note="the candidates are made from")
    p.add_argument("--max-exclude", type=int, metavar="N", help="most nodes to keep in float (default: every "
                   "ranked node)")
    p.add_argument("--select", choices=["fastest", "fewest"], default="fastest", help="among passing candidates: "
                   "the lowest p50 or the fewest nodes kept in float (default: %(default)s)")
    options.add_proxy_options(p.add_argument)
    options.add_force_options(p.add_argument)
    options.add_out_options(p.add_argument, default=Path("edgeopt-out/tune"))
    add_json_option(p, "the candidates and the choice (tune.json)")
    p.set_defaults(handler=handle_tune)

    p = add_command_parser(
        subparsers, "sweep", summary="recipe grid → variants, measurements, the Pareto front",
        description="Make one int8 variant per point of the recipe grid (calibration methods × per-channel × "
        "activation symmetry × calibration sample counts × reduce-range), measure each on every --profile, "
        "score its quality (accuracy on --eval, else fidelity vs fp32) and print the latency/quality Pareto front.",
        example="edgeopt sweep model.onnx --calibration DIR --eval eval.npz --profile host-cpu --per-channel both")
    p.add_argument("model", metavar="MODEL", help="package.module:factory or path/to/model.onnx")
    options.add_calibration_options(p.add_argument, required=True)
    options.add_eval_options(p.add_argument, default_help="none: quality is fidelity vs fp32")
    options.add_input_options(p.add_argument)
    options.add_profile_options(p.add_argument, repeatable=True, required=True)
    p.add_argument("--methods", default="minmax,entropy,percentile", metavar="LIST",
                   help="calibration methods, comma-separated (default: %(default)s)")
    p.add_argument("--per-channel", choices=["yes", "no", "both"], default="yes",
                   help="per-channel weight scales: %(choices)s (default: %(default)s)")
    p.add_argument("--activations", default="sym", metavar="LIST", help="activation quantization: sym, asym or "
                   "sym,asym (default: %(default)s)")
    p.add_argument("--samples", default="", metavar="LIST", help="calibration sample counts, e.g. 16,64,128 "
                   "(default: all samples)")
    p.add_argument("--reduce-range", choices=["yes", "no", "both"], default="no",
                   help="7-bit weights (reduce_range): %(choices)s (default: %(default)s)")
    options.add_proxy_options(p.add_argument)
    options.add_force_options(p.add_argument)
    options.add_out_options(p.add_argument, default=Path("edgeopt-out/sweep"))
    add_json_option(p, "the points and the front (sweep.json)")
    p.set_defaults(handler=handle_sweep)


def handle_sensitivity(args: argparse.Namespace) -> int:
    from edgeopt.evaluate.sensitivity import render_sensitivity_table
    from edgeopt.workflows.sensitivity_run import SensitivityConfig, run_sensitivity

    run = run_sensitivity(SensitivityConfig(
        model=args.model, qdq=args.qdq, calibration=args.calibration, out_dir=args.out, eval_set=args.eval_set,
        samples=args.samples, top=args.top, isolated=args.isolated, recipe=args.recipe))
    if args.json:
        print_json("sensitivity", run.to_dict())
        return 0
    report = run.report
    print(f"sensitivity of {args.qdq} vs {run.float_model}, on {run.inputs}")
    print(report.method)
    print(render_sensitivity_table(report, args.top))
    for row in report.isolated:
        gain = row["gain_db"]
        print(f"isolated: {row['node']} in float → output SQNR {row['output_sqnr_db']} dB "
              f"({'exact' if gain is None else f'{gain:+.1f} dB'} vs plain)")
    print(f"reports: {run.json_path}, {run.plot_path}")
    return 0


def handle_tune(args: argparse.Namespace) -> int:
    from edgeopt.models.modelref import parse_input_spec
    from edgeopt.workflows.tune import TuneConfig, render_tune_table, summary_lines, tune

    config = TuneConfig(model=args.model, calibration=args.calibration, eval_set=args.eval_set, profile=args.profile,
                        out_dir=args.out, max_drop=args.max_drop, metric=args.metric, relative=args.relative,
                        recipe=args.recipe, rule=args.rule, max_exclude=args.max_exclude, select=args.select,
                        proxy=args.proxy, force=args.force,
                        inputs=tuple(parse_input_spec(text) for text in args.input or []))
    result = tune(config)
    if args.json:
        print_json("tune", result.to_dict())
        return result.exit_code
    print(render_tune_table(result))
    for line in summary_lines(result):
        print(line)
    print(f"reports: {result.files['json']}, {result.files['markdown']}, {result.files['plot']}")
    return result.exit_code


def handle_sweep(args: argparse.Namespace) -> int:
    from edgeopt.models.modelref import parse_input_spec
    from edgeopt.workflows.sweep import SweepConfig, run_sweep, sweep_recipes

    def choice(value: str) -> tuple[bool, ...]:
        return {"yes": (True,), "no": (False,), "both": (True, False)}[value]

    names = sweep_recipes(methods=[m for m in args.methods.split(",") if m],
                          per_channel=choice(args.per_channel),
                          symmetric=tuple(a == "sym" for a in args.activations.split(",") if a),
                          samples=tuple(int(s) for s in args.samples.split(",") if s) or (None,),
                          reduce_range=choice(args.reduce_range))
    config = SweepConfig(model=args.model, profiles=tuple(args.profile), out_dir=args.out,
                         calibration=args.calibration, eval_set=args.eval_set, recipes=tuple(names),
                         proxy=args.proxy, force=args.force,
                         inputs=tuple(parse_input_spec(text) for text in args.input or []))
    result = run_sweep(config)
    if args.json:  # sweep.json as written: it has its own schema_version and kind
        from edgeopt.core.fileio import read_json

        print_json("sweep", read_json(result.json_path))
        return result.exit_code
    for table in result.tables:
        print(table)
        print()
    print(f"reports: {result.json_path}, " + ", ".join(str(p) for p in result.plot_paths))
    return result.exit_code
