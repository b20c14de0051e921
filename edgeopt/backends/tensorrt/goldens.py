"""Golden inputs and outputs for the first TensorRT run on a GPU, in Polygraphy's own JSON format.

For a TensorRT-bound variant, the reference inputs and the outputs ONNX Runtime computes from them on a CPU
are written so that, on a machine with a GPU,

    polygraphy run model.onnx --trt --strongly-typed --load-inputs inputs.json --load-outputs outputs.json \\
        --check-error-stat quantile --error-quantile 0.99 --atol 0.05 --rtol 0.05

builds the engine, feeds it exactly these inputs and compares its outputs with the goldens
(``benchmarks/gpu_smoke.py`` does the same in-process).  Files in the golden folder:

- ``inputs.json``: what ``polygraphy run --save-inputs FILE`` writes: a JSON list with one feed dict per
  iteration, ``{input name: <ndarray>}``;
- ``outputs.json``: what ``--save-outputs FILE`` writes: a ``RunResults`` with one runner whose
  ``IterationResult`` per iteration maps output names to ``LazyArray``-wrapped arrays;
- ``goldens.json`` (metadata: model SHA-256, how the outputs were produced, the command, the tolerances)
  and ``README.md`` (the same for a person).

**The format, as Polygraphy's source defines it** (NVIDIA/TensorRT, commit
``a892d22267d9cd2dedc1a0893e6892ac901f6d3d``, the newest stored snapshot; these files last changed there
in ``9255eb39e6642787828a4c1f7fc1d09fe004e7a2``, Polygraphy 0.49.x; checked unchanged for single files
against the PyPI release ``polygraphy==0.53.6``, which also produced ``tests/data/polygraphy/``):

- ``tools/Polygraphy/polygraphy/json/serde.py``: ``to_json`` is ``json.dumps(obj, cls=Encoder,
  indent=constants.TAB)`` with ``TAB = " " * 4`` and Python's default separators and ``ensure_ascii``;
  ``save_json`` writes that text unchanged (no trailing newline).  ``Encoder.register`` appends
  ``"polygraphy_class": type.__name__`` after the type's own keys.  An ``np.ndarray`` is
  ``{"array": base64.b64encode(<np.save(..., allow_pickle=False) bytes>).decode(), "polygraphy_class":
  "ndarray"}``; the decoder reads it back with ``np.load(..., allow_pickle=False)`` (older files: the
  legacy marker ``"__polygraphy_encoded_<type>": "polygraphy_serialized_json_type"``, not written here).
- ``tools/Polygraphy/polygraphy/constants.py``: ``TYPE_MARKER = "polygraphy_class"``; there is no version or
  metadata field in either file.
- ``tools/Polygraphy/polygraphy/comparator/struct.py``: ``LazyArray`` → ``{"values": <ndarray>}`` (decoder
  alias ``LazyNumpyArray``); ``IterationResult`` → ``{"outputs": {name: LazyArray}, "runtime": float | null,
  "runner_name": str}``; ``RunResults`` → ``{"lst": [[runner name, [IterationResult, ...]], ...]}`` (a
  tuple is a JSON list); ``RunResults.load`` is ``load_json`` plus a type check.
- ``tools/Polygraphy/polygraphy/comparator/data_loader.py`` (``DataLoaderCache``): ``--save-inputs`` is
  ``save_json(list of feed dicts)``; ``tools/args/comparator/data_loader.py``: ``--load-inputs`` is
  ``load_json`` of a ``List[Dict[str, numpy.ndarray]]``; ``tools/args/comparator/comparator.py``:
  ``--load-outputs`` is ``RunResults.load`` per file, appended after the runners' results, and
  ``Comparator.compare_accuracy`` compares each runner with the next (here: TensorRT first, the goldens
  second, so relative errors are relative to the goldens).
- ``tools/Polygraphy/polygraphy/comparator/compare.py`` (``CompareFunc.simple``): an output fails when its
  error statistic exceeds *both* ``atol`` and ``rtol``; ``reldiff = absdiff / |golden|`` with ``2.22e-16``
  added to zero goldens; bool outputs compare by XOR; shapes must match.  :func:`compare_outputs` applies the
  same rule in numpy (in float64, where Polygraphy casts only float16 and small integers up).

The writer reproduces these bytes exactly (a test re-encodes the real Polygraphy fixture and compares
bytes).  This module needs numpy and the standard library only: no onnxruntime, torch or TensorRT.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.core.fileio import MAX_JSON_BYTES, dumps_json, read_json, write_text_atomic

INPUTS_FILE = "inputs.json"
OUTPUTS_FILE = "outputs.json"
METADATA_FILE = "goldens.json"
README_FILE = "README.md"
METADATA_SCHEMA = 1

TYPE_MARKER = "polygraphy_class"  # polygraphy/constants.py
LEGACY_TYPE_MARKER = "polygraphy_serialized_json_type"
POLYGRAPHY_TAB = " " * 4  # polygraphy/constants.py TAB, the indent of every file Polygraphy saves
ZERO_EPSILON = 2.220446049250313e-16  # added to zero goldens before dividing (compare.py)

Feed = dict[str, np.ndarray]


class GoldenFormatError(ValueError):
    """A golden file that is not in Polygraphy's format (or not the shape this module writes)."""


# ---------------------------------------------------------------------------------------------- encoding


def _array(value: Any, where: str) -> np.ndarray:
    array = np.asarray(value)  # a numpy scalar becomes a 0-d array, as Polygraphy only encodes np.ndarray
    if array.dtype.hasobject or array.dtype.fields is not None:
        raise TypeError(f"{where}: dtype {array.dtype} cannot be saved without pickling; Polygraphy refuses it")
    return array


def encode_ndarray(array: np.ndarray) -> dict[str, str]:
    """Polygraphy's JSON object for one array: ``np.save`` bytes (no pickle), base64, the class marker."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return {"array": base64.b64encode(buffer.getvalue()).decode(), TYPE_MARKER: "ndarray"}


def _feed_document(feed: Mapping[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(feed, Mapping):
        raise TypeError(f"{where}: expected a dict of name -> array, got {type(feed).__name__}")
    out: dict[str, Any] = {}
    for name, value in feed.items():
        if not isinstance(name, str):
            raise TypeError(f"{where}: tensor names must be strings, got {name!r}")
        out[name] = encode_ndarray(_array(value, f"{where} '{name}'"))
    return out


def _dumps(document: Any) -> str:
    return json.dumps(document, indent=POLYGRAPHY_TAB)  # Polygraphy's to_json, byte for byte


def encode_inputs(inputs: Sequence[Mapping[str, Any]]) -> str:
    """The text ``polygraphy run --save-inputs`` writes for these feed dicts (one per iteration)."""
    return _dumps([_feed_document(feed, f"inputs[{i}]") for i, feed in enumerate(inputs)])


def encode_run_results(outputs: Sequence[Mapping[str, Any]], runner_name: str,
                       runtimes: Sequence[float | None] | None = None) -> str:
    """The text ``polygraphy run --save-outputs`` writes: a ``RunResults`` holding one runner,
    ``runner_name``, with one ``IterationResult`` per element of ``outputs``; ``runtimes`` (seconds per
    iteration; Polygraphy logs them only) default to ``null``."""
    if runtimes is not None and len(runtimes) != len(outputs):
        raise ValueError(f"{len(runtimes)} runtimes for {len(outputs)} iterations")
    iterations = []
    for index, feed in enumerate(outputs):
        arrays = _feed_document(feed, f"outputs[{index}]")
        iterations.append({
            "outputs": {name: {"values": value, TYPE_MARKER: "LazyArray"} for name, value in arrays.items()},
            "runtime": None if runtimes is None else runtimes[index],
            "runner_name": runner_name,
            TYPE_MARKER: "IterationResult",
        })
    return _dumps({"lst": [[runner_name, iterations]], TYPE_MARKER: "RunResults"})


# ---------------------------------------------------------------------------------------------- decoding


def _class_of(document: Mapping[str, Any]) -> str | None:
    marker = document.get(TYPE_MARKER)
    if isinstance(marker, str):
        return marker
    for key, value in document.items():  # files from Polygraphy before the polygraphy_class marker
        if key.startswith("__polygraphy_encoded_") and value == LEGACY_TYPE_MARKER:
            return key.removeprefix("__polygraphy_encoded_")
    return None


def decode_ndarray(document: Any, where: str) -> np.ndarray:
    """The array of a Polygraphy ``ndarray`` object (also when wrapped in a ``LazyArray``)."""
    if not isinstance(document, Mapping):
        raise GoldenFormatError(f"{where}: expected an encoded array object, got {type(document).__name__}")
    kind = _class_of(document)
    if kind in ("LazyArray", "LazyNumpyArray"):
        return decode_ndarray(document.get("values"), f"{where}.values")
    if kind != "ndarray" or not isinstance(document.get("array"), str):
        raise GoldenFormatError(f"{where}: not a Polygraphy ndarray (polygraphy_class {kind!r})")
    try:
        data = base64.b64decode(document["array"].encode("ascii"), validate=True)
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
    except (binascii.Error, UnicodeEncodeError, ValueError, OSError, EOFError) as error:
        raise GoldenFormatError(f"{where}: array payload is not base64 np.save data: {error}") from error
    if not isinstance(loaded, np.ndarray):  # an .npz archive (very old Polygraphy)
        raise GoldenFormatError(f"{where}: array payload is an npz archive, not an np.save array")
    return loaded


def _decode_feed(document: Any, where: str) -> Feed:
    if not isinstance(document, Mapping) or _class_of(document) is not None:
        raise GoldenFormatError(f"{where}: expected a feed dict (name -> array)")
    return {str(name): decode_ndarray(value, f"{where}['{name}']") for name, value in document.items()}


def decode_inputs(document: Any, source: str = "inputs") -> list[Feed]:
    """Feed dicts from the parsed JSON of an ``--save-inputs`` file."""
    if not isinstance(document, list):
        raise GoldenFormatError(f"{source}: expected a JSON list of feed dicts (polygraphy --save-inputs)")
    return [_decode_feed(feed, f"{source}[{i}]") for i, feed in enumerate(document)]


def decode_run_results(document: Any, source: str = "outputs") -> list[tuple[str, list[Feed]]]:
    """(runner name, outputs per iteration) for every runner in the parsed JSON of a ``RunResults``."""
    if not isinstance(document, Mapping) or _class_of(document) != "RunResults" \
            or not isinstance(document.get("lst"), list):
        raise GoldenFormatError(f"{source}: not a Polygraphy RunResults (polygraphy --save-outputs)")
    runners: list[tuple[str, list[Feed]]] = []
    for r, entry in enumerate(document["lst"]):
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)
                and isinstance(entry[1], list)):
            raise GoldenFormatError(f"{source}.lst[{r}]: expected [runner name, [IterationResult, ...]]")
        iterations: list[Feed] = []
        for i, result in enumerate(entry[1]):
            where = f"{source}.lst[{r}][{i}]"
            if not isinstance(result, Mapping) or _class_of(result) != "IterationResult" \
                    or not isinstance(result.get("outputs"), Mapping):
                raise GoldenFormatError(f"{where}: not a Polygraphy IterationResult")
            iterations.append({str(name): decode_ndarray(value, f"{where}.outputs['{name}']")
                               for name, value in result["outputs"].items()})
        runners.append((entry[0], iterations))
    return runners


# ---------------------------------------------------------------------------------------------- tolerances


@dataclass(frozen=True)
class Tolerances:
    """A Polygraphy ``CompareFunc.simple`` setting: an output fails when its ``check_error_stat`` of the
    absolute error exceeds ``atol`` *and* that of the relative error exceeds ``rtol``."""

    precision: str
    atol: float
    rtol: float
    check_error_stat: str  # elemwise | max | mean | median | quantile (Polygraphy's names)
    error_quantile: float | None = None
    why: str = ""

    def polygraphy_args(self) -> list[str]:
        args = ["--check-error-stat", self.check_error_stat]
        if self.error_quantile is not None:
            args += ["--error-quantile", f"{self.error_quantile:g}"]
        return args + ["--atol", f"{self.atol:g}", "--rtol", f"{self.rtol:g}"]

    def to_dict(self) -> dict[str, Any]:
        return {"precision": self.precision, "atol": self.atol, "rtol": self.rtol,
                "check_error_stat": self.check_error_stat, "error_quantile": self.error_quantile, "why": self.why}


# Why these numbers (the goldens are ONNX Runtime CPU outputs of the *same* ONNX file TensorRT builds):
# - fp32: only the accumulation order and kernels differ (Polygraphy leaves TF32 off unless --tf32); FP32
#   unit roundoff is 6e-8, and over a deep network reordered sums reach ~1e-5..1e-4 relative, so 1e-3 absolute
#   or relative per element leaves an order of magnitude of room and still catches any wrong layer.
# - fp16: FP16 unit roundoff is 2^-11 = 4.9e-4 per rounding, and a network rounds every activation; 1e-2
#   (about 20 roundings' worth) per element is the usual margin for FP16 against FP32 references.
# - int8: both runtimes execute the same Q/DQ graph, but they fuse differently (TensorRT folds bias,
#   residual Add and activation into INT8 kernels and may requantize at other points), so a value that lands
#   near a rounding boundary flips by one quantization step, which is 1/127 (0.8 %) of its tensor's range,
#   and flips propagate.  Element-wise max is therefore the wrong statistic: the 99th percentile of the
#   errors must stay within 0.05 absolute or 5 % relative.  A TensorRT engine that mishandles a scale, a
#   zero point or an axis is off by far more than that on most elements and still fails.
_TOLERANCES = {
    "fp32": Tolerances("fp32", 1e-3, 1e-3, "elemwise",
                       why="same graph, FP32 kernels in another order (TF32 off): ~1e-5..1e-4 relative expected"),
    "fp16": Tolerances("fp16", 1e-2, 1e-2, "elemwise",
                       why="FP16 rounding (2^-11 per operation) accumulated over the network"),
    "int8": Tolerances("int8", 0.05, 0.05, "quantile", 0.99,
                       why="same Q/DQ graph, other fusions: one-step (1/127 of range) flips near rounding "
                           "boundaries; the 99th percentile of the errors is judged, not the worst element"),
}


def recommended_tolerances(precision: str) -> Tolerances:
    """Tolerances for comparing a TensorRT engine of ``precision`` (``fp32``, ``fp16``, ``int8``) with ONNX
    Runtime CPU goldens of the same ONNX file; ``ValueError`` for another precision."""
    try:
        return _TOLERANCES[precision]
    except KeyError:
        raise ValueError(f"no golden tolerances for precision {precision!r}; known: {sorted(_TOLERANCES)}") from None


@dataclass(frozen=True)
class OutputComparison:
    """One output of one iteration judged as Polygraphy would (``passed``), with the statistics it rests on."""

    iteration: int
    name: str
    passed: bool
    max_abs: float
    max_rel: float
    abs_stat: float  # the tolerances' statistic of the absolute error
    rel_stat: float
    reason: str = ""

    def sentence(self) -> str:
        verdict = "ok" if self.passed else "MISMATCH"
        text = (f"iteration {self.iteration} output '{self.name}': {verdict} (max abs {self.max_abs:.4g}, "
                f"max rel {self.max_rel:.4g}; judged abs {self.abs_stat:.4g}, rel {self.rel_stat:.4g})")
        return text + (f": {self.reason}" if self.reason else "")


def _statistic(values: np.ndarray, tolerances: Tolerances) -> float:
    if values.size == 0:
        return 0.0
    stat = tolerances.check_error_stat
    if stat in ("elemwise", "max"):
        return float(np.max(values))
    if stat == "mean":
        return float(np.mean(values))
    if stat == "median":
        return float(np.median(values))
    if stat == "quantile":
        return float(np.quantile(values, tolerances.error_quantile if tolerances.error_quantile is not None
                                 else 0.99))
    raise ValueError(f"unknown check_error_stat {stat!r}")


def compare_output(actual: np.ndarray, golden: np.ndarray, tolerances: Tolerances, *, name: str = "",
                   iteration: int = 0) -> OutputComparison:
    """``actual`` (e.g. TensorRT) against ``golden`` by Polygraphy's ``CompareFunc.simple`` rule."""
    actual, golden = np.asarray(actual), np.asarray(golden)
    if actual.shape != golden.shape:
        return OutputComparison(iteration, name, False, math.nan, math.nan, math.nan, math.nan,
                                f"shape {actual.shape} != golden {golden.shape}")
    if actual.dtype == np.bool_ and golden.dtype == np.bool_:
        absdiff = np.logical_xor(actual, golden).astype(np.float64)
    else:
        absdiff = np.abs(actual.astype(np.float64) - golden.astype(np.float64))
    reference = np.abs(golden.astype(np.float64))
    reference[reference == 0] += ZERO_EPSILON
    with np.errstate(divide="ignore", invalid="ignore"):
        reldiff = absdiff / reference
    if tolerances.check_error_stat == "elemwise":
        bad = ((absdiff > tolerances.atol) | np.isnan(absdiff)) & ((reldiff > tolerances.rtol) | np.isnan(reldiff))
        failed = bool(np.any(bad))
        reason = f"{int(np.count_nonzero(bad))} of {bad.size} elements beyond both tolerances" if failed else ""
    else:
        a, r = _statistic(absdiff, tolerances), _statistic(reldiff, tolerances)
        failed = (math.isnan(a) or a > tolerances.atol) and (math.isnan(r) or r > tolerances.rtol)
        reason = f"{tolerances.check_error_stat} error beyond both tolerances" if failed else ""
    max_abs = float(np.max(absdiff)) if absdiff.size else 0.0
    max_rel = float(np.max(reldiff)) if reldiff.size else 0.0
    return OutputComparison(iteration, name, not failed, max_abs, max_rel, _statistic(absdiff, tolerances),
                            _statistic(reldiff, tolerances), reason)


def compare_outputs(actual: Sequence[Mapping[str, np.ndarray]], golden: Sequence[Mapping[str, np.ndarray]],
                    tolerances: Tolerances) -> list[OutputComparison]:
    """Every output of every iteration; a missing output or iteration is a failed comparison."""
    results: list[OutputComparison] = []
    if len(actual) != len(golden):
        results.append(OutputComparison(-1, "*", False, math.nan, math.nan, math.nan, math.nan,
                                         f"{len(actual)} iterations against {len(golden)} goldens"))
    for index, (mine, reference) in enumerate(zip(actual, golden, strict=False)):
        for name, expected in reference.items():
            if name not in mine:
                results.append(OutputComparison(index, name, False, math.nan, math.nan, math.nan, math.nan,
                                                "output missing"))
                continue
            results.append(compare_output(mine[name], expected, tolerances, name=name, iteration=index))
    return results


# ---------------------------------------------------------------------------------------------- files


@dataclass(frozen=True)
class GoldenFiles:
    """What :func:`write_goldens` wrote."""

    folder: Path
    inputs: Path
    outputs: Path
    metadata: Path
    readme: Path
    command: str
    tolerances: Tolerances


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def polygraphy_command(model: str, tolerances: Tolerances) -> str:
    """The ``polygraphy run`` line that compares TensorRT with the goldens, run in the golden folder.

    INT8 and FP16 build strongly typed (``--strongly-typed``: the types come from the Q/DQ or fp16 file, as
    edgeopt's own builds on TensorRT 10 and 11); FP32 builds with Polygraphy's defaults (TF32 off)."""
    typing = ["--strongly-typed"] if tolerances.precision in ("int8", "fp16") else []
    parts = ["polygraphy", "run", model, "--trt", *typing, "--load-inputs", INPUTS_FILE,
             "--load-outputs", OUTPUTS_FILE, *tolerances.polygraphy_args()]
    return " ".join(_shell_quote(p) for p in parts)


def _shell_quote(text: str) -> str:
    if text and all(c.isalnum() or c in "-_./:=+," for c in text):
        return text
    return "'" + text.replace("'", "'\"'\"'") + "'"


def _describe(feeds: Sequence[Mapping[str, np.ndarray]]) -> dict[str, dict[str, Any]]:
    described: dict[str, dict[str, Any]] = {}
    for feed in feeds[:1]:
        for name, value in feed.items():
            array = np.asarray(value)
            nonfinite = sum(int(np.count_nonzero(~np.isfinite(np.asarray(f[name]))))
                            for f in feeds if name in f and np.issubdtype(np.asarray(f[name]).dtype, np.floating))
            described[name] = {"dtype": str(array.dtype), "shape": list(array.shape), "nonfinite_values": nonfinite}
    return described


def write_goldens(folder: Path | str, inputs: Sequence[Mapping[str, np.ndarray]],
                  outputs: Sequence[Mapping[str, np.ndarray]], *, runner_name: str, model_sha256: str,
                  note: str, precision: str = "int8", model_path: Path | str | None = None,
                  runtimes: Sequence[float | None] | None = None) -> GoldenFiles:
    """Write ``inputs.json``, ``outputs.json`` (Polygraphy's formats), ``goldens.json`` and ``README.md``.

    ``inputs[i]`` is the feed of iteration ``i`` and ``outputs[i]`` what the reference runtime
    (``runner_name``, e.g. ``onnxrt-cpu-golden``; ``note`` says how: ONNX Runtime version, provider) returned
    for it.  ``precision`` picks the recommended tolerances and the build flags of the command;
    ``model_path`` (the ONNX file TensorRT should build) is written into the command relative to ``folder``
    (``MODEL.onnx`` when not given).  Every file is written atomically; the metadata last."""
    if not inputs:
        raise ValueError("goldens need at least one iteration of inputs")
    if len(inputs) != len(outputs):
        raise ValueError(f"{len(inputs)} input feeds but {len(outputs)} output sets: one per iteration")
    if not runner_name:
        raise ValueError("runner_name must not be empty")
    tolerances = recommended_tolerances(precision)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    inputs_text = encode_inputs(inputs)
    outputs_text = encode_run_results(outputs, runner_name, runtimes)
    model = os.path.relpath(Path(model_path), folder) if model_path is not None else "MODEL.onnx"
    command = polygraphy_command(model, tolerances)
    write_text_atomic(folder / INPUTS_FILE, inputs_text)
    write_text_atomic(folder / OUTPUTS_FILE, outputs_text)
    document = {
        "schema": METADATA_SCHEMA,
        "kind": "tensorrt-goldens",
        "model_sha256": model_sha256,
        "model": model,
        "produced_by": {"runner_name": runner_name, "note": note,
                        "versions": {"numpy": np.__version__, "onnxruntime": _version("onnxruntime")}},
        "iterations": len(inputs),
        "inputs": _describe(inputs),
        "outputs": _describe(outputs),
        "format": "Polygraphy JSON: inputs.json as `polygraphy run --save-inputs`, outputs.json as "
                  "`--save-outputs` (RunResults); ndarrays are base64 np.save bytes",
        "polygraphy_command": command,
        "run_in": "this folder (the command's paths are relative to it)",
        "tolerances": tolerances.to_dict(),
    }
    readme = "\n".join([
        "# Golden outputs for the first TensorRT run",
        "",
        f"Model: `{model}` (SHA-256 `{model_sha256}`).",
        f"Produced by `{runner_name}`: {note}.",
        f"{len(inputs)} iteration(s); inputs in `{INPUTS_FILE}`, reference outputs in `{OUTPUTS_FILE}`, both in",
        "Polygraphy's JSON format. On a machine with TensorRT and Polygraphy, in this folder:",
        "",
        "```bash",
        command,
        "```",
        "",
        f"Tolerances ({tolerances.precision}): {tolerances.check_error_stat}"
        + (f" {tolerances.error_quantile:g}" if tolerances.error_quantile is not None else "")
        + f" error within atol {tolerances.atol:g} or rtol {tolerances.rtol:g}: {tolerances.why}.",
        "Check that the model's SHA-256 matches before comparing: goldens belong to one file.",
        "",
    ])
    write_text_atomic(folder / README_FILE, readme)
    write_text_atomic(folder / METADATA_FILE, dumps_json(document) + "\n")
    return GoldenFiles(folder, folder / INPUTS_FILE, folder / OUTPUTS_FILE, folder / METADATA_FILE,
                       folder / README_FILE, command, tolerances)


def read_goldens(folder: Path | str, *, max_bytes: int = MAX_JSON_BYTES) -> tuple[list[Feed], list[Feed]]:
    """(inputs, outputs) per iteration from ``inputs.json`` and ``outputs.json`` in ``folder`` (written by
    :func:`write_goldens` or by ``polygraphy run --save-inputs/--save-outputs``).  ``outputs.json`` must
    hold one runner with as many iterations as there are inputs; ``GoldenFormatError`` otherwise."""
    folder = Path(folder)
    inputs = decode_inputs(read_json(folder / INPUTS_FILE, max_bytes=max_bytes), str(folder / INPUTS_FILE))
    runners = decode_run_results(read_json(folder / OUTPUTS_FILE, max_bytes=max_bytes), str(folder / OUTPUTS_FILE))
    if len(runners) != 1:
        raise GoldenFormatError(f"{folder / OUTPUTS_FILE}: {len(runners)} runners; goldens hold exactly one")
    outputs = runners[0][1]
    if len(outputs) != len(inputs):
        raise GoldenFormatError(f"{folder}: {len(inputs)} input feeds but {len(outputs)} output iterations")
    return inputs, outputs
