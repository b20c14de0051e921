"""Rows of the second campaign: inputs (see tests/campaign2/table.py)."""

from __future__ import annotations

import csv
import json
import re
import stat
import sys
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from tests.campaign2.table import OPSETS, Workspace2, base_graph, case, profile_text

if TYPE_CHECKING:
    from tests.hostile_runner import Outcome

Problems = list[tuple[str, str]]
RAN = {"out_untouched": False, "files": ("out/summary.json",)}  # a row whose command runs and writes its folder
DEVICE = "makes a private character device node (mknod)"

# ------------------------------------------------------------------------------------------------- helpers


def _summary(ws: Workspace2) -> dict[str, Any]:
    path = ws.out / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _rows(ws: Workspace2) -> list[dict[str, Any]]:
    return list(_summary(ws).get("rows") or [])


def _measured(ws: Workspace2, *variants: str) -> Problems:
    """Each of ``variants`` has a row with a latency (status ok, a p50)."""
    rows = {row.get("variant"): row for row in _rows(ws)}
    problems: Problems = []
    for variant in variants:
        row = rows.get(variant)
        if row is None:
            problems.append(("bad", f"summary.json has no row for {variant}"))
        elif row.get("status") != "ok" or not (row.get("p50_ms") or {}).get("value"):
            problems.append(("bad", f"{variant} was not measured: status {row.get('status')}, "
                                    f"failure {row.get('failure')}"))
    return problems


def _single(graph_name: str, node: Any, inputs: list[Any], outputs: list[Any],
            initializers: list[Any] | None = None) -> Any:
    return helper.make_graph([node] if not isinstance(node, list) else node, graph_name, inputs, outputs,
                             initializers or [])


def _bomb_npz(path: Path, shape: tuple[int, ...], member: str) -> Path:
    """A small .npz whose one member's npy header declares ``shape`` float32 zeros (1 GiB deflates to ~5 MB)."""
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape!r}, }}"
    header += " " * (63 - (len(header) + 10) % 64) + "\n"
    prefix = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode()
    left = int(np.prod(shape)) * 4
    chunk = bytes(1 << 24)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive, \
            archive.open(f"{member}.npy", "w", force_zip64=True) as handle:
        handle.write(prefix)
        while left > 0:
            handle.write(chunk[:left])
            left -= len(chunk)
    return path


PEAK_RSS_FILE = "peak_rss_kb.txt"
PEAK_RSS_MB = 512  # edgeopt refusing a file is about 70 MB; a 1 GiB bomb inflated is 1.1 GB
MEASURED = (  # python -c MEASURED FILE ARGS: edgeopt ARGS, then the peak RSS (KiB) of it and its workers into FILE
    "import resource, subprocess, sys; code = subprocess.call([sys.executable, '-m', 'edgeopt', *sys.argv[2:]]); "
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
    "sys.exit(code if code >= 0 else 128 - code)")


def _rss_measured(ws: Workspace2, argv: list[Any]) -> list[Any]:
    """Run ``edgeopt ARGV`` under a small wrapper that records its peak RSS (see :func:`_bounded_memory`)."""
    ws.command = [sys.executable, "-c", MEASURED, str(ws.root / PEAK_RSS_FILE)]
    return argv


def _bounded_memory(ws: Workspace2, outcome: Outcome) -> Problems:
    """The input was refused from its declared sizes: edgeopt's peak RSS stayed under :data:`PEAK_RSS_MB`."""
    path = ws.root / PEAK_RSS_FILE
    if not path.is_file():
        return [("bad", "the peak RSS of the command was not recorded")]
    peak_mb = int(path.read_text()) / 1024
    if peak_mb > PEAK_RSS_MB:
        return [("bad", f"peak RSS {peak_mb:.0f} MB > {PEAK_RSS_MB} MB: the data was read (inflated) before "
                        "its declared size or shape was checked")]
    return []


# ============================================================================================ model paths


def _check_model_name(name: str) -> Any:
    def check(ws: Workspace2, outcome: Outcome) -> Problems:
        problems = _measured(ws, "fp32")
        summary = _summary(ws)
        if Path(str(summary.get("model"))).name != name:
            problems.append(("weak", f"summary.json names the model {summary.get('model')!r}, not ...{name!r}"))
        return problems
    return check


@case("in-unicode-spaces-path", "inputs", 0, r"verdict: PASS", stream="stdout",
      check=_check_model_name("mö dél ü 模型.onnx"), **RAN)
def build_in_unicode_spaces_path(ws: Workspace2) -> list[Any]:
    return ws.run(model=ws.save(base_graph(), "mö dél ü 模型.onnx"))


def _check_newline_reports(ws: Workspace2, outcome: Outcome) -> Problems:
    """The name with a line break leaves every report whole: one CSV record per row (the name quoted), JUnit
    well-formed, no Markdown line broken."""
    problems = _measured(ws, "fp32")
    with (ws.out / "results.csv").open(newline="", encoding="utf-8") as handle:
        records = list(csv.reader(handle))
    if len(records) != 2:
        problems.append(("bad", f"results.csv holds {len(records)} records, expected a header and one row"))
    elif not records[1][0].endswith("/a\nb.onnx"):
        problems.append(("bad", f"results.csv names the model {records[1][0]!r}"))
    try:
        ElementTree.parse(ws.out / "junit.xml")
    except ElementTree.ParseError as error:
        problems.append(("bad", f"junit.xml is not well-formed XML: {error}"))
    for line in (ws.out / "summary.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("b.onnx"):
            problems.append(("bad", f"summary.md: the model name's line break split a line: {line[:80]!r}"))
    return problems


@case("in-newline-in-path", "inputs", 0, r"verdict: PASS", stream="stdout", check=_check_newline_reports, **RAN)
def build_in_newline_in_path(ws: Workspace2) -> list[Any]:
    return ws.run(model=ws.save(base_graph(), "a\nb.onnx"))


@case("in-dash-model-name", "inputs", 2, r"arguments are required: MODEL", r"-x\.onnx", r"\./-x\.onnx", r"after --",
      stream="stderr", note="argparse's own error (edgeopt run: error: ...), then edgeopt's hint naming the file")
def build_in_dash_model_name(ws: Workspace2) -> list[Any]:
    ws.save(base_graph(), "-x.onnx")
    return ["run", "-x.onnx", "--profile", str(ws.profile), "--out", str(ws.out), "--variant", "fp32"]


@case("in-dash-model-after-ddash", "inputs", 0, r"verdict: PASS", stream="stdout",
      check=_check_model_name("-x.onnx"), **RAN)
def build_in_dash_model_after_ddash(ws: Workspace2) -> list[Any]:
    ws.save(base_graph(), "-x.onnx")
    return ["run", "--profile", str(ws.profile), "--out", str(ws.out), "--variant", "fp32", "--", "-x.onnx"]


@case("in-non-utf8-filename", "inputs", 3, r"bad\\xff\\xfename\.onnx", r"not valid UTF-8", r"rename",
      note="onnx and ONNX Runtime open models by UTF-8 path only: refused up front, naming the file")
def build_in_non_utf8_filename(ws: Workspace2) -> list[Any]:
    return ws.run(model=ws.save(base_graph(), b"bad\xff\xfename.onnx"))


@case("in-directory-as-model", "inputs", 3, r"dir_model\.onnx", r"not a regular file")
def build_in_directory_as_model(ws: Workspace2) -> list[Any]:
    return ws.run(model=ws.path("dir_model.onnx/x").parent)


@case("in-fifo-as-model", "inputs", 3, r"fifo\.onnx", r"not a regular file", timeout=30)
def build_in_fifo_as_model(ws: Workspace2) -> list[Any]:
    return ws.run(model=ws.fifo("fifo.onnx"))


def _still_device(relative: str) -> Any:
    def check(ws: Workspace2, outcome: Outcome) -> Problems:
        mode = (ws.root / relative).lstat().st_mode
        return [] if stat.S_ISCHR(mode) else [("bad", f"{relative} is no longer a character device")]
    return check


@case("in-devzero-chardev-as-model", "inputs", 3, r"zero\.onnx", r"not a regular file", timeout=30,
      root=DEVICE, check=_still_device("zero.onnx"))
def build_in_devzero_chardev_as_model(ws: Workspace2) -> list[Any]:
    return ws.run(model=ws.device("zero.onnx"))


@case("in-inspect-fifo", "inputs", 3, r"fifo\.onnx", r"not a regular file", timeout=30)
def build_in_inspect_fifo(ws: Workspace2) -> list[Any]:
    return ["inspect", str(ws.fifo("fifo.onnx"))]


# =========================================================================================== model content

SPARSE_FLOATS = 625_000_000  # 2.5 GB of float32 external data (a sparse file: no disk used)


@case("in-sparse-2.5GB-external", "inputs", 3, r"sparse/model\.onnx", r"w\.bin", r"2\.50 GB", r"2 GiB",
      r"refused before loading", timeout=60, check=_bounded_memory,
      note="w.bin is a sparse file of 2.5 GB: refused from the external-data sizes, before reading any weight")
def build_in_sparse_external(ws: Workspace2) -> list[Any]:
    weight = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[SPARSE_FLOATS],
                         data_location=TensorProto.EXTERNAL)
    for key, value in (("location", "w.bin"), ("offset", "0"), ("length", str(SPARSE_FLOATS * 4))):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    with ws.path("sparse/w.bin").open("wb") as handle:
        handle.truncate(SPARSE_FLOATS * 4)
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["W"], ["s"], keepdims=0), helper.make_node("Add", ["input", "s"], ["out"])],
        "sparse", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 1, 8, 8])], [weight])
    model = helper.make_model(graph, opset_imports=OPSETS)
    model.ir_version = 9
    return _rss_measured(ws, ws.run(model=ws.data("sparse/model.onnx", model.SerializeToString())))


def _roomy(ws: Workspace2, model: Path) -> list[Any]:
    """``run MODEL`` on a profile of ``max_seconds`` 2 (a slow model's 72 samples for a p95 interval fit)."""
    profile = ws.profile_file("roomy", profile_text("roomy").replace("max_seconds: 0.05", "max_seconds: 2"))
    return ["run", str(model), "--profile", str(profile), "--out", str(ws.out), "--variant", "fp32"]


@case("in-500-inputs", "inputs", 0, r"verdict: PASS", stream="stdout",
      check=lambda ws, outcome: _measured(ws, "fp32"), timeout=60, **RAN,
      note="about 1.5 ms a call here: fast.yaml's 0.05 s gives 33 samples, too few for a p95 interval (exit 5, "
           "said so); a profile of 2 s leaves room for them")
def build_in_500_inputs(ws: Workspace2) -> list[Any]:
    inputs = [helper.make_tensor_value_info(f"i{k}", TensorProto.FLOAT, [1, 4]) for k in range(500)]
    graph = _single("many_in", helper.make_node("Sum", [f"i{k}" for k in range(500)], ["y"]), inputs,
                    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    return _roomy(ws, ws.save(graph, "in500.onnx"))


@case("in-500-outputs", "inputs", 0, r"verdict: PASS", stream="stdout",
      check=lambda ws, outcome: _measured(ws, "fp32"), timeout=60, **RAN,
      note="about 0.4 ms a call: on a loaded host fast.yaml's 0.05 s may give fewer than 72 samples (exit 5)")
def build_in_500_outputs(ws: Workspace2) -> list[Any]:
    graph = _single("many_out", [helper.make_node("Relu", ["x"], [f"o{k}"]) for k in range(500)],
                    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                    [helper.make_tensor_value_info(f"o{k}", TensorProto.FLOAT, [1, 4]) for k in range(500)])
    return _roomy(ws, ws.save(graph, "out500.onnx"))


def _not_compared(output: str, why: str, *variants: str) -> Any:
    """Every row timed; ``output``'s fidelity says why it was not compared (``why``), and each of ``variants``
    (no other output compared with fp32's) is inconclusive for that reason, never failed or lost."""
    def check(ws: Workspace2, outcome: Outcome) -> Problems:
        problems = _measured(ws, "fp32", "fp16")
        said = " ".join(item.get("note") or "" for row in _rows(ws) for item in row.get("fidelity") or []
                        if item.get("output") == output)
        said += " ".join(c.get("sentence") or "" for gate in _summary(ws).get("gates") or []
                         for c in gate.get("checks") or [])
        if not re.search(why, said, re.IGNORECASE) or output not in said:
            problems.append(("weak", f"summary.json does not say that {output!r} was not compared (/{why}/)"))
        for row in _rows(ws):
            if row.get("variant") in variants and row.get("verdict") != "inconclusive":
                problems.append(("bad", f"{row.get('variant')}: verdict {row.get('verdict')}, expected inconclusive"))
        return problems
    return check


@case("in-string-output", "inputs", 5, r"verdict: INCONCLUSIVE", stream="stdout",
      check=_not_compared("s", r"not comparable \(string output", "fp16"), **RAN,
      note="latency of both rows kept; fp16's only output cannot be compared with fp32's: inconclusive (exit 5)")
def build_in_string_output(ws: Workspace2) -> list[Any]:
    graph = _single("strout", helper.make_node("Cast", ["x"], ["s"], to=TensorProto.STRING),
                    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                    [helper.make_tensor_value_info("s", TensorProto.STRING, [1, 4])])
    return ws.run(model=ws.save(graph, "strout.onnx"), variants=("fp32", "fp16"))


@case("in-optional-initializer-input", "inputs", 0, r"verdict: PASS", stream="stdout",
      check=lambda ws, outcome: _measured(ws, "fp32", "fp16"), **RAN)
def build_in_optional_initializer_input(ws: Workspace2) -> list[Any]:
    graph = _single("optin", helper.make_node("Add", ["x", "bias"], ["y"]),
                    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
                     helper.make_tensor_value_info("bias", TensorProto.FLOAT, [1, 4])],
                    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                    [numpy_helper.from_array(np.ones((1, 4), np.float32), "bias")])
    return ws.run(model=ws.save(graph, "optin.onnx"), variants=("fp32", "fp16"))


@case("in-bool-input", "inputs", 0, r"verdict: PASS", stream="stdout",
      check=lambda ws, outcome: _measured(ws, "fp32"), **RAN)
def build_in_bool_input(ws: Workspace2) -> list[Any]:
    graph = _single("boolin", helper.make_node("Not", ["x"], ["y"]),
                    [helper.make_tensor_value_info("x", TensorProto.BOOL, [1, 4])],
                    [helper.make_tensor_value_info("y", TensorProto.BOOL, [1, 4])])
    return ws.run(model=ws.save(graph, "boolin.onnx"))


@case("in-zipmap-seq-map-output", "inputs", 0, r"verdict: PASS", stream="stdout",
      check=_not_compared("zm", r"not comparable \(non-tensor output"), **RAN,
      note="the label (int64) is compared, the ZipMap (a sequence of maps) is measured and said not comparable")
def build_in_zipmap_seq_map_output(ws: Workspace2) -> list[Any]:
    coefficients = np.random.default_rng(0).standard_normal(12).astype(np.float32).tolist()
    nodes = [helper.make_node("LinearClassifier", ["x"], ["label", "probs"], domain="ai.onnx.ml",
                              coefficients=coefficients, intercepts=[0.0, 0.0, 0.0], classlabels_ints=[0, 1, 2],
                              post_transform="SOFTMAX"),
             helper.make_node("ZipMap", ["probs"], ["zm"], domain="ai.onnx.ml", classlabels_int64s=[0, 1, 2])]
    sequence_of_maps = helper.make_sequence_type_proto(
        helper.make_map_type_proto(TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, [])))
    graph = _single("zipmap", nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                    [helper.make_tensor_value_info("label", TensorProto.INT64, [1]),
                     helper.make_value_info("zm", sequence_of_maps)])
    return ws.run(model=ws.save(graph, "zipmap.onnx", opsets=[*OPSETS, helper.make_opsetid("ai.onnx.ml", 3)]),
                  variants=("fp32", "fp16"))


@case("in-output-shape-varies", "inputs", 5, r"verdict: INCONCLUSIVE", stream="stdout",
      check=_not_compared("nz", r"shape varies", "fp16"), **RAN,
      note="NonZero: the output's shape follows the values; fidelity is skipped with a note, fp16 inconclusive")
def build_in_output_shape_varies(ws: Workspace2) -> list[Any]:
    graph = _single("varshape", [helper.make_node("Greater", ["x", "t"], ["g"]),
                                 helper.make_node("NonZero", ["g"], ["nz"])],
                    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                    [helper.make_tensor_value_info("nz", TensorProto.INT64, [4, None])],
                    [numpy_helper.from_array(np.array(0.5, np.float32), "t")])
    return ws.run(model=ws.save(graph, "varshape.onnx"), variants=("fp32", "fp16"))


# ====================================================================================== calibration / eval


def _static(ws: Workspace2, calibration: Path) -> list[Any]:
    return ws.run("--calibration", calibration, "--min-calibration-samples", 4, variants=("int8-static-minmax",))


@case("cal-fifo-sample", "inputs", 3, r"calib/s19\.npz", r"not a regular file", r"FIFO", timeout=30)
def build_cal_fifo_sample(ws: Workspace2) -> list[Any]:
    calibration = ws.calibration(count=19)
    ws.fifo("calib/s19.npz")
    return _static(ws, calibration)


@case("cal-devzero-sample", "inputs", 3, r"calib/s19\.npz", r"not a regular file", r"character device",
      timeout=30, root=DEVICE, check=_still_device("calib/s19.npz"))
def build_cal_devzero_sample(ws: Workspace2) -> list[Any]:
    calibration = ws.calibration(count=19)
    ws.device("calib/s19.npz")
    return _static(ws, calibration)


@case("cal-npz-zip-bomb", "inputs", 3, r"calib/s19\.npz", r"33554432", r"compression bomb", timeout=60,
      check=_bounded_memory,
      note="s19.npz (about 5 MB) declares 1 GiB of float32 zeros: refused from its npy header, memory bounded")
def build_cal_npz_zip_bomb(ws: Workspace2) -> list[Any]:
    calibration = ws.calibration(count=19)
    _bomb_npz(calibration / "s19.npz", (1, 1, 8, 32 * 1024 * 1024), "input")
    return _rss_measured(ws, _static(ws, calibration))


@case("eval-npz-zip-bomb", "inputs", 3, r"eval/bomb_eval\.npz", r"1024, 1024", r"compression bomb", timeout=60,
      check=_bounded_memory, note="images declared [256, 1, 1024, 1024] float32 (1 GiB) in about 5 MB: refused "
      "without inflating them")
def build_eval_npz_zip_bomb(ws: Workspace2) -> list[Any]:
    bomb = _bomb_npz(ws.root / "eval" / "bomb_eval.npz", (256, 1, 1024, 1024), "images")
    return _rss_measured(ws, ws.run("--eval", bomb))


@case("eval-object-labels", "inputs", 3, r"eval/obj_labels\.npz", r"object \(pickled\) array", r"never unpickles")
def build_eval_object_labels(ws: Workspace2) -> list[Any]:
    path = ws.path("eval/obj_labels.npz")
    images = np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32)
    np.savez(path, images=images, labels=np.array([1, "x", None, {"a": 1}], dtype=object))
    return ws.run("--eval", path)


EVAL_SAMPLES = 200_000  # the campaign's million took 65 s here (most of it the bootstrap): a fifth keeps the point


def _evaluated_all(ws: Workspace2, outcome: Outcome) -> Problems:
    problems = _measured(ws, "fp32")
    accuracy = next((row.get("accuracy") for row in _rows(ws) if row.get("variant") == "fp32"), None) or {}
    if accuracy.get("samples") != EVAL_SAMPLES:
        problems.append(("bad", f"fp32's accuracy covers {accuracy.get('samples')} samples, not {EVAL_SAMPLES}"))
    return problems


@case("eval-million-samples", "inputs", 0, r"verdict: PASS", stream="stdout", timeout=60, check=_evaluated_all,
      **RAN, note=f"{EVAL_SAMPLES} samples: the run finishes with its latency and an accuracy over all of them")
def build_eval_million_samples(ws: Workspace2) -> list[Any]:
    return ws.run("--eval", ws.eval_set("eval/many.npz", count=EVAL_SAMPLES))


# ================================================================================================ profiles


def _run_profile(ws: Workspace2, stem: str, **options: Any) -> list[Any]:
    profile = ws.profile_file(stem, **options)
    return ["run", str(ws.model), "--profile", str(profile), "--out", str(ws.out), "--variant", "fp32"]


def _profile_replaced(ws: Workspace2, stem: str, old: str, new: str) -> list[Any]:
    text = profile_text(stem)
    assert old in text, old
    profile = ws.profile_file(stem, text.replace(old, new, 1))
    return ["run", str(ws.model), "--profile", str(profile), "--out", str(ws.out), "--variant", "fp32"]


@case("prof-budget-string-units", "inputs", 2, r"strbudget\.yaml", r"budgets\.p95_ms", r"got '40ms'")
def build_prof_budget_string_units(ws: Workspace2) -> list[Any]:
    return _run_profile(ws, "strbudget", budgets="  p95_ms: 40ms\n")


@case("prof-budget-zero", "inputs", 2, r"zerobudget\.yaml", r"budgets\.p95_ms", r"finite number > 0, got 0\b")
def build_prof_budget_zero(ws: Workspace2) -> list[Any]:
    return _run_profile(ws, "zerobudget", budgets="  p95_ms: 0\n")


@case("prof-budget-inf", "inputs", 2, r"infbudget\.yaml", r"budgets\.p95_ms", r"finite number > 0, got inf")
def build_prof_budget_inf(ws: Workspace2) -> list[Any]:
    return _run_profile(ws, "infbudget", budgets="  p95_ms: .inf\n")


@case("prof-max-iterations-1e21", "inputs", 0, r"verdict: PASS", stream="stdout", timeout=30,
      check=lambda ws, outcome: _measured(ws, "fp32"), **RAN)
def build_prof_max_iterations_1e21(ws: Workspace2) -> list[Any]:
    return _run_profile(ws, "hugetimes", bench="  max_iterations: 1000000000000000000000\n")


@case("prof-worker-timeout-zero", "inputs", 2, r"zerotimeout\.yaml", r"bench\.worker_timeout_s",
      r"finite number > 0, got 0\b")
def build_prof_worker_timeout_zero(ws: Workspace2) -> list[Any]:
    return _profile_replaced(ws, "zerotimeout", "worker_timeout_s: 120", "worker_timeout_s: 0")


@case("prof-worker-timeout-1ms", "inputs", 4,
      r"worker exceeded worker_timeout_s=0\.001 on fp32|fp32.*did not finish within 0\.001 s", stream="stdout",
      timeout=30, **RAN, note="a timeout too short for one call: recorded as the row's failure (exit 4): the "
      "measurement's, or, when the variant's own check run (under the same timeout) is the first to run out, the "
      "variant's; which of the two comes first is a race of a sub-millisecond call against 1 ms")
def build_prof_worker_timeout_1ms(ws: Workspace2) -> list[Any]:
    return _profile_replaced(ws, "tinytimeout", "worker_timeout_s: 120", "worker_timeout_s: 0.001")


@case("prof-extends-key", "inputs", 2, r"profiles/extends\.yaml", r"description: required key is missing",
      note="profiles do not inherit: 'extends: fast' leaves a profile without its required keys")
def build_prof_extends_key(ws: Workspace2) -> list[Any]:
    ws.profile_file("fast")
    profile = ws.profile_file("extends", "extends: fast\nname: extends\n")
    return ["run", str(ws.model), "--profile", str(profile), "--out", str(ws.out), "--variant", "fp32"]


SHADOWED = "host-cpu"  # a shipped profile


def _shadow_recorded(ws: Workspace2, outcome: Outcome) -> Problems:
    recorded = (_summary(ws).get("profile_files") or {}).get(SHADOWED, "")
    if not recorded.endswith(f"hostile_profiles/{SHADOWED}.yaml"):
        return [("weak", f"summary.json's profile_files names {recorded!r} for {SHADOWED}, not the shadowing file")]
    return []


@case("env-profile-path-shadows-shipped", "inputs", 1, rf"profiles {SHADOWED} from <case>/hostile_profiles/"
      rf"{SHADOWED}\.yaml", stream="stderr", check=_shadow_recorded, **RAN,
      note="the shadowing file (budget 1e-6 ms) fails the run: the plan line and summary.json name the file used")
def build_env_profile_path_shadows_shipped(ws: Workspace2) -> list[Any]:
    ws.text(f"hostile_profiles/{SHADOWED}.yaml", profile_text(SHADOWED, budgets="  p95_ms: 0.000001\n"))
    ws.env["EDGEOPT_PROFILE_PATH"] = str(ws.root / "hostile_profiles")
    return ["run", str(ws.model), "--profile", SHADOWED, "--out", str(ws.out), "--variant", "fp32"]


@case("env-profile-path-list-hostile", "inputs", 2, r"hostile_profiles/bomb\.yaml", r"anchor &a refused", timeout=30,
      note="a FIFO, a folder and an alias bomb named *.yaml on EDGEOPT_PROFILE_PATH: no hang, the bomb named")
def build_env_profile_path_list_hostile(ws: Workspace2) -> list[Any]:
    ws.fifo("hostile_profiles/fifo.yaml")
    ws.path("hostile_profiles/dir.yaml/x")
    levels = ["a: &a [x,x,x,x,x,x,x,x,x]"] + [f"{b}: &{b} [" + ",".join([f"*{a}"] * 9) + "]"
                                             for a, b in zip("abcd", "bcde", strict=True)]
    ws.text("hostile_profiles/bomb.yaml", "\n".join(levels) + "\n")
    ws.env["EDGEOPT_PROFILE_PATH"] = str(ws.root / "hostile_profiles")
    return ["profiles", "list"]


@case("env-tmpdir-missing", "inputs", 0, r"verdict: PASS", stream="stdout",
      check=lambda ws, outcome: _measured(ws, "fp32"), **RAN)
def build_env_tmpdir_missing(ws: Workspace2) -> list[Any]:
    ws.env["TMPDIR"] = str(ws.root / "nonexistent" / "tmp")
    return ws.run()


# ================================================================================================= options


@case("opt-budget-cli-units", "inputs", 2, r"--budget 'p95_ms=40ms'", r"unit in the key")
def build_opt_budget_cli_units(ws: Workspace2) -> list[Any]:
    return ws.run("--budget", "p95_ms=40ms")


@case("opt-budget-cli-nan", "inputs", 2, r"--budget", r"p95_ms", r"finite number > 0, got nan")
def build_opt_budget_cli_nan(ws: Workspace2) -> list[Any]:
    return ws.run("--budget", "p95_ms=nan")


@case("opt-budget-cli-inf", "inputs", 2, r"--budget", r"p95_ms", r"finite number > 0, got inf")
def build_opt_budget_cli_inf(ws: Workspace2) -> list[Any]:
    return ws.run("--budget", "p95_ms=inf")


@case("opt-budget-cli-unknown-key", "inputs", 2, r"--budget", r"p97_ms: unknown key", r"allowed: .*p95_ms")
def build_opt_budget_cli_unknown_key(ws: Workspace2) -> list[Any]:
    return ws.run("--budget", "p97_ms=3")


@case("opt-variant-unknown", "inputs", 2, r"unknown variant 'int9'", r"choose from fp32")
def build_opt_variant_unknown(ws: Workspace2) -> list[Any]:
    return ws.run(variants=("int9",))


@case("opt-variant-n0", "inputs", 2, r"unknown variant 'int8-static-n0'")
def build_opt_variant_n0(ws: Workspace2) -> list[Any]:
    return ws.run("--calibration", ws.calibration(), "--min-calibration-samples", 4, variants=("int8-static-n0",))


@case("opt-variant-n-huge", "inputs", 2, r"unknown variant 'int8-static-n9{23}'")
def build_opt_variant_n_huge(ws: Workspace2) -> list[Any]:
    return ws.run("--calibration", ws.calibration(), "--min-calibration-samples", 4,
                  variants=("int8-static-n" + "9" * 23,))


def _nothing_outside(ws: Workspace2, outcome: Outcome) -> Problems:
    places = (ws.out / "variants", ws.out, ws.root, ws.root.parent, ws.root.parent.parent)
    return [("bad", f"{place / 'evil'} was written") for place in places if (place / "evil").exists()]


@case("opt-variant-traversal", "inputs", 2, r"unknown variant '\.\./\.\./evil'", check=_nothing_outside)
def build_opt_variant_traversal(ws: Workspace2) -> list[Any]:
    return ws.run(variants=("../../evil",))


def _measured_once(ws: Workspace2, outcome: Outcome) -> Problems:
    problems = _measured(ws, "fp32")
    documents = sorted(p.name for p in (ws.out / "measurements").glob("fp32__*.json"))
    if documents != ["fp32__fast.json"]:
        problems.append(("weak", f"fp32 measured as {documents}"))
    if len(re.findall(r"measure fp32__fast: p50", outcome.stderr)) != 1:
        problems.append(("weak", "fp32 was timed more than once"))
    return problems


@case("opt-variant-duplicate", "inputs", 0, r"verdict: PASS", stream="stdout", check=_measured_once, **RAN)
def build_opt_variant_duplicate(ws: Workspace2) -> list[Any]:
    return ws.run(variants=("fp32", "fp32"))


@case("opt-input-complex-dtype", "inputs", 2, r"--input input", r"dtype complex128 differs from the float32")
def build_opt_input_complex_dtype(ws: Workspace2) -> list[Any]:
    return ws.run("--input", "input:1x1x8x8:complex128")


@case("opt-input-zero-dim", "inputs", 2, r"input:0x1x8x8", r"dimension 0 must be a whole number >= 1")
def build_opt_input_zero_dim(ws: Workspace2) -> list[Any]:
    return ws.run("--input", "input:0x1x8x8")


@case("opt-input-unknown-name", "inputs", 2, r"--input nosuch", r"no input of that name \(inputs: input\)")
def build_opt_input_unknown_name(ws: Workspace2) -> list[Any]:
    return ws.run("--input", "nosuch:1x1x8x8")


@case("opt-input-extra-field", "inputs", 2, r"--input 'input:1x1x8x8:float32:x'", r"expected name:DIMxDIM")
def build_opt_input_extra_field(ws: Workspace2) -> list[Any]:
    return ws.run("--input", "input:1x1x8x8:float32:x")


@case("opt-input-duplicate-conflict", "inputs", 2, r"--input input:1x1x4x4", r"'input' is declared twice")
def build_opt_input_duplicate_conflict(ws: Workspace2) -> list[Any]:
    return ws.run("--input", "input:1x1x8x8", "--input", "input:1x1x4x4")


@case("opt-input-wrong-static-shape", "inputs", 2, r"shape \[1, 1, 4, 4\] does not fit", r"good\.onnx's \[1, 1, 8, 8\]")
def build_opt_input_wrong_static_shape(ws: Workspace2) -> list[Any]:
    return ws.run("--input", "input:1x1x4x4")


@case("opt-input-dim-2pow70", "inputs", 2, r"\[1180591620717411303424, 1, 8, 8\] does not fit")
def build_opt_input_dim_2pow70(ws: Workspace2) -> list[Any]:
    return ws.run("--input", f"input:{2 ** 70}x1x8x8")
