"""Every option that more than one command takes, declared once, with one help text that shows its default.

Each ``add_*_options(addoption, prefix="")`` takes the function that adds an option, pytest-benchmark's
idiom: ``parser.add_argument`` of an argparse (sub)parser for the ``edgeopt`` subcommands, or
``parser.getgroup("edgeopt").addoption`` with ``prefix="edgeopt-"`` for the pytest plugin (pytest's
``addoption`` takes argparse's arguments), so ``--profile`` and ``--edgeopt-profile`` share their text.
The keyword arguments say how one command uses the option (required, repeatable, its default); the help
text follows from them.  Help strings pass through argparse's %-formatting: a literal percent is ``%%``.

Imported by the pytest plugin in every pytest session: the standard library and ``edgeopt.errors`` only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgeopt.errors import ConfigError

AddOption = Callable[..., Any]  # argparse's ``add_argument`` or pytest's ``OptionGroup.addoption``

# The threshold defaults of ``edgeopt compare`` (edgeopt.core.ratio_stats.DEFAULT_THRESHOLDS) and of
# ``edgeopt ab`` (edgeopt.workflows.ab.DEFAULT_AB_THRESHOLDS), as help text: those modules are not light
# to import; tests/test_cli.py checks that these match them.
COMPARE_THRESHOLDS = ("p50:5%", "p95:5%", "peak_rss_mb:10%", "model_size_mb:1%")
AB_THRESHOLDS = ("p50:5%", "p95:5%")


def sample_limits(args: Any) -> tuple[int, int | None]:
    """``--min-calibration-samples`` and ``--max-calibration-samples``, each a whole number >= 1 (else exit 2
    naming the option)."""
    low, high = args.min_calibration_samples, args.max_calibration_samples
    for option, value in (("--min-calibration-samples", low), ("--max-calibration-samples", high)):
        if value is not None and value < 1:
            raise ConfigError(f"{option} {value}: must be a whole number >= 1")
    return low, high


def _help(text: str, *, repeatable: bool = False, default: object = None) -> str:
    """``text``, then ``; repeatable`` and ``(default: ...)`` when they apply."""
    if repeatable:
        text += "; repeatable"
    if default is not None and default is not False:
        text += f" (default: {default})"
    return text


def _add(addoption: AddOption, name: str, prefix: str, *, required: bool = False, **attrs: Any) -> None:
    if required:  # only when set: pytest's addoption has no use for required=False
        attrs["required"] = True
    addoption(f"--{prefix}{name}", **attrs)


# ------------------------------------------------------------------------------------- hardware and budgets


def add_profile_options(addoption: AddOption, prefix: str = "", *, repeatable: bool = False,
                        required: bool = False, default_help: str | None = None, note: str | None = None) -> None:
    """``--profile``: the hardware profile to measure on or judge against.

    ``default_help`` says what applies when it is not given (the option's value is then None).
    """
    text = f"hardware profile{' ' + note if note else ''}: a shipped name or a YAML path"
    _add(addoption, "profile", prefix, required=required, action="append" if repeatable else "store",
         metavar="NAME_OR_YAML", default=None, help=_help(text, repeatable=repeatable, default=default_help))


def add_budget_options(addoption: AddOption, prefix: str = "") -> None:
    """``--budget KEY=VALUE``: replace one of the profile's budgets (parsed by :func:`parse_budgets`)."""
    _add(addoption, "budget", prefix, action="append", metavar="KEY=VALUE", default=None,
         help=_help("replace a budget of the profile, the unit in the key, e.g. p95_ms=12 or peak_rss_mb=500; the "
                    "profile's other budgets still apply", repeatable=True, default="the profile's budgets"))


def add_proxy_options(addoption: AddOption, prefix: str = "") -> None:
    """``--proxy``: judge budgets on a host that is not the profile's hardware."""
    _add(addoption, "proxy", prefix, action="store_true", default=False,
         help="judge budgets on a host that is not the profile's hardware; every number and sentence is "
              "labelled PROXY (default: such budgets are not applicable)")


def add_threshold_options(addoption: AddOption, prefix: str = "", *,
                          default: Sequence[str] | str = COMPARE_THRESHOLDS) -> None:
    """``--threshold STAT:PCT%``: the regression thresholds of a comparison (value None: the default)."""
    shown = default if isinstance(default, str) else " ".join(default)
    _add(addoption, "threshold", prefix, action="append", metavar="STAT:PCT%", default=None,
         help=_help("regression threshold of a statistic, e.g. p95:5%% or peak_rss_mb:10%%", repeatable=True,
                    default=shown.replace("%", "%%")))


def parse_budgets(items: Sequence[str] | None) -> dict[str, float]:
    """The values of ``--budget`` as ``{key: number}``; raises ConfigError (exit 2) on a malformed one."""
    budgets: dict[str, float] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        try:
            budgets[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise ConfigError(f"--budget {item!r}: expected KEY=NUMBER with the unit in the key, e.g. p95_ms=12")
    return budgets


def add_history_options(addoption: AddOption, prefix: str = "") -> None:
    """``--history PATH_OR_URL``: the results store a command appends its rows to (docs/history.md)."""
    _add(addoption, "history", prefix, metavar="PATH_OR_URL", default=os.environ.get("EDGEOPT_HISTORY") or None,
         help=_help("also store the rows in this results store: a SQLite file path or an SQLAlchemy URL "
                    "(postgresql://user@host/db); checked before anything is measured (docs/history.md)",
                    default="$EDGEOPT_HISTORY, else none"))


# ----------------------------------------------------------------------------------------- inputs and outputs


def add_out_options(addoption: AddOption, prefix: str = "", *, default: Path | None = None, required: bool = False,
                    what: str = "folder for the results", default_help: str | None = None) -> None:
    """``--out``: where a command writes (a folder, or for ``export`` a file)."""
    _add(addoption, "out", prefix, required=required, type=Path, default=default,
         help=_help(what, default=default_help or default))


def add_force_options(addoption: AddOption, prefix: str = "") -> None:
    """``--force``: redo finished work instead of reusing it."""
    _add(addoption, "force", prefix, action="store_true", default=False,
         help="redo exports, variants and measurements already finished in the output folder (default: reuse "
              "those whose inputs and settings match)")


def add_calibration_options(addoption: AddOption, prefix: str = "", *, required: bool = False,
                            sample_limits: bool = False) -> None:
    """``--calibration`` and, with ``sample_limits``, ``--min-calibration-samples``/``--max-calibration-samples``."""
    _add(addoption, "calibration", prefix, required=required, metavar="DIR_OR_FACTORY", default=None,
         help=_help("calibration set: a folder with manifest.yaml or package.module:function",
                    default=None if required else "none; int8-static variants are skipped"))
    if sample_limits:
        _add(addoption, "min-calibration-samples", prefix, type=int, default=16, metavar="N",
             help=_help("fewest calibration samples accepted", default=16))
        _add(addoption, "max-calibration-samples", prefix, type=int, default=None, metavar="N",
             help=_help("use at most this many calibration samples", default="all"))


def add_eval_options(addoption: AddOption, prefix: str = "", *, required: bool = False,
                     note: str | None = None, default_help: str = "none") -> None:
    """``--eval`` (attribute ``eval_set``): a held-out evaluation set; ``default_help`` says what applies
    without it."""
    _add(addoption, "eval", prefix, required=required, dest=f"{prefix.replace('-', '_')}eval_set",
         metavar="NPZ", default=None,
         help=_help("eval set: .npz with images and labels (int classes) or targets (floats), or images alone for "
                    "embedding metrics" + (f"; {note}" if note else ""), default=None if required else default_help))


# ------------------------------------------------------------------------------------- models and variants


def add_input_options(addoption: AddOption, prefix: str = "") -> None:
    """``--input``: the concrete shape of a model input (its symbolic dims), or of an exported factory's input."""
    _add(addoption, "input", prefix, action="append", metavar="NAME:SHAPE[:DTYPE]", default=None,
         help=_help("shape of a model input, e.g. x:1x3x48x320[:float32]: fixes its symbolic dims for timing, "
                    "fidelity and every backend; for an exported factory NAME is forward's parameter and a dim "
                    "that is a name is dynamic, with name=SIZE its example size ('input_ids:batch x seq=128:int64', "
                    "'x:batch x 3 x h=224 x w=224'; docs/export.md)",
                    repeatable=True, default="the profile's bench.input_shapes, else the samples' shape, else "
                    "bench.batch_size for the batch dim; a factory's input_spec()"))


def add_export_options(addoption: AddOption, prefix: str = "") -> None:
    """``--input``, ``--opset`` and ``--exporter``: the inputs, and how a PyTorch factory is exported to ONNX."""
    add_input_options(addoption, prefix)
    _add(addoption, "opset", prefix, type=int, default=None,
         help=_help("ONNX opset to export (dynamo: 18 or newer)", default="the exporter's: dynamo its own, "
                    "torchscript 17"))
    _add(addoption, "exporter", prefix, choices=["dynamo", "torchscript"], default="dynamo",
         help=_help("torch.onnx exporter: dynamo (torch.export, torch's default) or torchscript (deprecated by "
                    "torch; for models torch.export cannot capture)", default="dynamo"))
    _add(addoption, "with-past", prefix, action="store_true", default=False,
         help=_help("a transformers causal LM also takes and returns its key/value cache: inputs "
                    "cache.<layer>.key/value with a dynamic past length, the attention mask over past+seq",
                    default="no cache"))


def add_variant_options(addoption: AddOption, prefix: str = "") -> None:
    """``--variant``: which variants to make."""
    _add(addoption, "variant", prefix, action="append", metavar="RECIPE", default=None,
         help=_help("variant to make: fp32, fp16, int8-dynamic[-pc][-rr][-matmul], "
                    "int8-static[-minmax|-entropy|-percentile] with options -pt, -asym, -rr, -n<count>, -matmul, "
                    "int8-nncf[-ac][-mixed][-n<count>] (NNCF's OpenVINO IR), int8-trt-qdq, int8-trt-modelopt",
                    repeatable=True, default="fp32, fp16, int8-dynamic, each int8-static method, the INT8 recipes "
                    "each profile's CPU runs well, and int8-nncf for a profile that measures on OpenVINO"))


def add_keep_float_options(addoption: AddOption, prefix: str = "") -> None:
    """``--keep-float``: nodes every int8 variant of a run leaves in float."""
    _add(addoption, "keep-float", prefix, action="append", metavar="NODE_OR_OP", default=None,
         help=_help("a node name, or an op type (each of its nodes), every int8 variant leaves in float; the "
                    "variant's name gains -x<count>-<hash>", repeatable=True, default="none"))


def add_recipe_options(addoption: AddOption, prefix: str = "", *, note: str | None = None) -> None:
    """``--recipe``: the int8 recipe a research command starts from."""
    _add(addoption, "recipe", prefix, default="int8-static-minmax", metavar="RECIPE",
         help=_help(f"int8-static recipe{' ' + note if note else ''}", default="int8-static-minmax"))
