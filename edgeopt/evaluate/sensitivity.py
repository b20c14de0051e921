"""Per-layer sensitivity of a QDQ variant: how much error each quantized tensor introduces, by ONNX node.

The fp32 model (the one the quantizer actually saw: edgeopt's pre-processed copy when pre-processing
was kept) and the QDQ model run on the same inputs with their intermediate tensors exposed as
outputs, one sample at a time (streaming: only signal and noise energies are kept, unlike ONNX
Runtime's ``qdq_loss_debug.collect_activations``, which holds every tensor of every sample).  Its
naming rules are followed: an activation ``X`` quantized by the QDQ pass reads ``X`` (or
``X_QuantizeLinear_Input`` when ``X`` is a graph output) → QuantizeLinear → DequantizeLinear →
``X_DequantizeLinear_Output[_N]``.  For each such tensor two SQNRs (dB, 10·log10 signal/noise energy
summed over all samples) are computed:

- ``local``: the QDQ model's own tensor before vs after its Q/DQ pair: the rounding and clipping
  error this one tensor adds, on the inputs it really sees.  This is the cheap stand-in for the
  "quantize only this node" experiment, and it is what nodes are ranked by;
- ``accumulated``: the fp32 model's tensor vs the QDQ model's dequantized one: everything upstream
  included.  It only falls along the graph, so ranking by it would blame the last layers.

Both are the mean over channels of each channel's SQNR (axis 1 of (N, C) and (N, C, H, W) tensors, else
the last axis), not the energy ratio of the whole tensor: with an outlier channel that sets the scale,
the energy ratio stays high while every small channel is rounded away; the channel mean sees it (the
energy SQNR is kept as ``local_energy_sqnr_db``).  Weights (DequantizeLinear on an int8 initializer)
get the energy SQNR of the dequantized weight vs the fp32 initializer.  Tensors are ranked worst
first, and each brings the quantized nodes that write or read it (a tensor's Q/DQ pair disappears only
when all of them are excluded); these node names, in that order, are what ``Recipe(exclude_nodes=...)``
and ``edgeopt tune`` take.

Caveat of the cheap method: errors compound downstream, so a tensor whose own SQNR looks fine can
still matter after amplification, and a low local SQNR on a tensor the rest of the model ignores
costs nothing.  ``isolated_gains`` measures the expensive truth for the top few nodes: one variant
per node with only that node kept in float, and the output SQNR it wins back.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from edgeopt.core import progress
from edgeopt.errors import QuantizationError
from edgeopt.models.graph import cpu_session

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
QUANT_INPUT_SUFFIX = "_QuantizeLinear_Input"


@dataclass(frozen=True)
class TensorError:
    """One quantized tensor: its SQNRs and the nodes around it."""

    tensor: str
    kind: str  # "activation" or "weight"
    producer: str | None
    consumers: tuple[str, ...]
    local_sqnr_db: float | None  # mean over channels of the per-channel SQNR; None: no noise at all (exact)
    accumulated_sqnr_db: float | None  # activations only, same statistic
    local_energy_sqnr_db: float | None = None  # 10·log10(total signal / total noise)


@dataclass(frozen=True)
class NodeSensitivity:
    """One quantized node of the QDQ graph, scored by the worst quantized tensor it touches."""

    rank: int
    node: str
    op_type: str
    worst_tensor: str
    score_db: float | None  # lowest local SQNR over its activations and weights; None: nothing lost
    activation_sqnr_db: float | None
    accumulated_sqnr_db: float | None
    weight_sqnr_db: float | None


@dataclass(frozen=True)
class SensitivityReport:
    float_model: str
    qdq_model: str
    samples: int
    tensors: tuple[TensorError, ...]
    nodes: tuple[NodeSensitivity, ...]
    method: str = ("local SQNR (dB, mean over channels) of each quantized tensor in the QDQ model, before vs after "
                   "its Q/DQ; tensors ranked worst first, each followed by the nodes that write or read it; "
                   "accumulated = fp32 model's tensor vs QDQ model's")
    isolated: tuple[dict[str, Any], ...] = field(default=())

    def ranked_nodes(self) -> list[str]:
        return [n.node for n in self.nodes]

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": 1, "kind": "sensitivity", "float_model": self.float_model,
                "qdq_model": self.qdq_model, "samples": self.samples, "method": self.method,
                "nodes": [asdict(n) for n in self.nodes], "tensors": [asdict(t) for t in self.tensors],
                "isolated": list(self.isolated)}


def sqnr_db(signal: float, noise: float) -> float | None:
    """10·log10(signal / noise) of summed energies; None when there is no noise."""
    if noise <= 0:
        return None
    return 10 * math.log10(signal / noise) if signal > 0 else -999.0


def _channel_axis(array: np.ndarray) -> int | None:
    """Axis 1 for (N, C) and (N, C, H, W) tensors, else the last axis; None for scalars."""
    if array.ndim == 0:
        return None
    return 1 if array.ndim in (2, 4) else array.ndim - 1


@dataclass
class _Energy:
    """Signal and noise energy, in total and per channel (see ``channel_sqnr_db``)."""

    signal: float = 0.0
    noise: float = 0.0
    channel_signal: np.ndarray | None = None
    channel_noise: np.ndarray | None = None

    def add(self, reference: np.ndarray, other: np.ndarray) -> None:
        ref = np.asarray(reference, dtype=np.float64)
        err = (ref - np.asarray(other, dtype=np.float64).reshape(ref.shape)) ** 2
        self.signal += float(np.sum(ref**2))
        self.noise += float(np.sum(err))
        axis = _channel_axis(ref)
        if axis is None:
            return
        others = tuple(i for i in range(ref.ndim) if i != axis)
        signal, noise = np.sum(ref**2, axis=others), np.sum(err, axis=others)
        if self.channel_signal is None or self.channel_noise is None or self.channel_signal.shape != signal.shape:
            self.channel_signal, self.channel_noise = signal, noise
        else:
            self.channel_signal = self.channel_signal + signal
            self.channel_noise = self.channel_noise + noise

    def channel_sqnr_db(self) -> float | None:
        """Mean over channels of each channel's SQNR (dB, capped at 100; silent channels left out).

        Energy SQNR is dominated by the largest channel: an outlier channel that sets the scale keeps it
        high while every small channel is rounded away.  The channel mean sees that damage."""
        if self.channel_signal is None or self.channel_noise is None:
            return sqnr_db(self.signal, self.noise)
        live = self.channel_signal > 0
        if not live.any():
            return sqnr_db(self.signal, self.noise)
        if not (self.channel_noise[live] > 0).any():
            return None
        ratio = self.channel_signal[live] / np.maximum(self.channel_noise[live], 1e-300)
        return float(np.mean(np.minimum(10 * np.log10(ratio), 100.0)))


@dataclass
class _QdqTensor:
    name: str  # the tensor's name in the fp32 graph
    pre: str  # the tensor fed to QuantizeLinear in the QDQ graph
    post: str  # one DequantizeLinear output
    producer: str | None
    consumers: set[str]


def _compute_nodes(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {n.name: n for n in model.graph.node if n.op_type not in QDQ_OPS and n.name}


def _qdq_activations(model: onnx.ModelProto) -> dict[str, _QdqTensor]:
    """fp32 tensor name → its Q/DQ pair in the QDQ graph, with the quantized nodes that write or read it."""
    producer_of = {out: n for n in model.graph.node for out in n.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for name in n.input:
            readers.setdefault(name, []).append(n)
    found: dict[str, _QdqTensor] = {}
    for dq in model.graph.node:
        if dq.op_type != "DequantizeLinear":
            continue
        q = producer_of.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear":
            continue  # a weight or bias: handled by _weight_errors
        pre = q.input[0]
        name = pre[: -len(QUANT_INPUT_SUFFIX)] if pre.endswith(QUANT_INPUT_SUFFIX) else pre
        made_by = producer_of.get(pre)
        entry = found.setdefault(name, _QdqTensor(name, pre, dq.output[0],
                                                  made_by.name if made_by is not None else None, set()))
        entry.consumers.update(n.name for n in readers.get(dq.output[0], []) if n.op_type not in QDQ_OPS)
    return found


def _dequantize(q: np.ndarray, scale: np.ndarray, zero: np.ndarray | None, axis: int) -> np.ndarray:
    data = q.astype(np.float64) - (0 if zero is None else zero.astype(np.float64).reshape(
        [-1 if i == axis % q.ndim else 1 for i in range(q.ndim)] if zero.size > 1 else ()))
    if scale.size > 1:
        return data * scale.astype(np.float64).reshape([-1 if i == axis % q.ndim else 1 for i in range(q.ndim)])
    return data * float(scale.reshape(-1)[0])


def _weight_errors(qdq: onnx.ModelProto, float_model: onnx.ModelProto) -> list[TensorError]:
    quantized = {init.name: init for init in qdq.graph.initializer}
    originals = {init.name: init for init in float_model.graph.initializer}
    readers: dict[str, list[str]] = {}
    for n in qdq.graph.node:
        for name in n.input:
            readers.setdefault(name, []).append(n.name)
    errors = []
    for dq in qdq.graph.node:
        if dq.op_type != "DequantizeLinear" or dq.input[0] not in quantized:
            continue
        stored = dq.input[0]
        base = stored[: -len("_quantized")] if stored.endswith("_quantized") else stored
        if base not in originals:
            continue
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        scale = numpy_helper.to_array(quantized[dq.input[1]])
        zero = numpy_helper.to_array(quantized[dq.input[2]]) if len(dq.input) > 2 and dq.input[2] else None
        weights = numpy_helper.to_array(originals[base]).astype(np.float64)
        restored = _dequantize(numpy_helper.to_array(quantized[stored]), scale, zero, axis)
        energy = _Energy()
        energy.add(weights, restored.reshape(weights.shape))
        errors.append(TensorError(base, "weight", None, tuple(sorted(readers.get(dq.output[0], []))),
                                  sqnr_db(energy.signal, energy.noise), None, sqnr_db(energy.signal, energy.noise)))
    return errors


def _session(model: onnx.ModelProto, outputs: list[str], path: Path) -> Any:

    model = onnx.ModelProto.FromString(model.SerializeToString())
    existing = {o.name for o in model.graph.output}
    for name in outputs:
        if name not in existing:
            model.graph.output.append(onnx.ValueInfoProto(name=name))
    onnx.save(model, str(path))
    return cpu_session(path, optimization="disable")


def reference_model_for(source: Path, qdq_model: Path, work_dir: Path) -> Path:
    """The fp32 model whose node names the QDQ model carries: ``source`` itself, or edgeopt's
    pre-processed copy of it (what ``make_variant`` quantized when pre-processing was kept)."""
    wanted = set(_compute_nodes(onnx.load(str(qdq_model), load_external_data=False)))
    if wanted <= set(_compute_nodes(onnx.load(str(source), load_external_data=False))):
        return source
    from edgeopt.models.quantize import preprocess

    processed, _ = preprocess(source, work_dir)
    have = set(_compute_nodes(onnx.load(str(processed), load_external_data=False)))
    if not wanted <= have:
        missing = sorted(wanted - have)
        raise QuantizationError(f"{qdq_model}: {len(missing)} of its nodes (e.g. '{missing[0]}') are not in {source} "
                                "nor in its pre-processed form; was the QDQ model made from this fp32 model?")
    return processed


def analyse_sensitivity(float_model: Path | str, qdq_model: Path | str, inputs: Iterable[Mapping[str, np.ndarray]],
                        work_dir: Path | str) -> SensitivityReport:
    """Rank the quantized nodes of ``qdq_model`` by the error their tensors introduce on ``inputs``.

    ``float_model`` must be the model that was quantized (see ``reference_model_for``)."""
    float_model, qdq_model, work_dir = Path(float_model), Path(qdq_model), Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    fp32 = onnx.load(str(float_model))
    qdq = onnx.load(str(qdq_model))
    activations = _qdq_activations(qdq)
    if not activations:
        raise QuantizationError(f"{qdq_model}: no quantized activations (QuantizeLinear → DequantizeLinear) found; "
                                "is it a QDQ model?")
    float_names = {t for n in fp32.graph.node for t in [*n.input, *n.output]} | {i.name for i in fp32.graph.input}
    comparable = [t for t in activations.values() if t.name in float_names]
    float_session = _session(fp32, [t.name for t in comparable], work_dir / "fp32-exposed.onnx")
    qdq_outputs = sorted({name for t in activations.values() for name in (t.pre, t.post)})
    qdq_session = _session(qdq, qdq_outputs, work_dir / "qdq-exposed.onnx")
    local = {name: _Energy() for name in activations}
    accumulated = {t.name: _Energy() for t in comparable}
    samples = 0
    with progress.task(f"sensitivity: {len(activations)} quantized tensors", unit="samples") as step:
        for feeds in inputs:
            feeds = dict(feeds)
            got = dict(zip(qdq_outputs, qdq_session.run(qdq_outputs, feeds), strict=True))
            want = dict(zip([t.name for t in comparable], float_session.run([t.name for t in comparable], feeds),
                            strict=True))
            for tensor in activations.values():
                local[tensor.name].add(got[tensor.pre], got[tensor.post])
                if tensor.name in accumulated:
                    accumulated[tensor.name].add(want[tensor.name], got[tensor.post])
            samples += 1
            step.advance()
    if samples == 0:
        raise QuantizationError("sensitivity: no input samples given")
    tensors = [TensorError(t.name, "activation", t.producer, tuple(sorted(t.consumers)),
                           local[t.name].channel_sqnr_db(),
                           accumulated[t.name].channel_sqnr_db() if t.name in accumulated else None,
                           sqnr_db(local[t.name].signal, local[t.name].noise))
               for t in activations.values()]
    tensors += _weight_errors(qdq, fp32)
    return SensitivityReport(str(float_model), str(qdq_model), samples, tuple(tensors),
                             tuple(_rank_nodes(qdq, tensors)))


def _worst(values: Iterable[float | None]) -> float | None:
    present = [math.inf if v is None else v for v in values]
    best = min(present, default=math.inf)
    return None if best == math.inf else best


def _rank_nodes(qdq: onnx.ModelProto, tensors: list[TensorError]) -> list[NodeSensitivity]:
    """Tensors worst first; each brings its not-yet-ranked quantized producer and consumers, so that the
    nodes whose exclusion removes one tensor's Q/DQ pair (all of them: a Q/DQ pair stays while any of its
    nodes is quantized) sit next to each other in the ranking."""
    nodes = _compute_nodes(qdq)
    touching: dict[str, list[TensorError]] = {}
    for tensor in tensors:
        for name in {*tensor.consumers, *([tensor.producer] if tensor.producer else [])}:
            if name in nodes:
                touching.setdefault(name, []).append(tensor)

    def key(tensor: TensorError) -> tuple[float, str]:
        return (math.inf if tensor.local_sqnr_db is None else tensor.local_sqnr_db, tensor.tensor)

    ranked: list[NodeSensitivity] = []
    seen: set[str] = set()
    for tensor in sorted(tensors, key=key):
        neighbours = [*([tensor.producer] if tensor.producer else []), *tensor.consumers]
        for name in neighbours:
            if name not in nodes or name in seen:
                continue
            seen.add(name)
            found = touching[name]
            acts = [t for t in found if t.kind == "activation"]
            weights = [t for t in found if t.kind == "weight"]
            ranked.append(NodeSensitivity(
                rank=len(ranked) + 1, node=name, op_type=nodes[name].op_type, worst_tensor=tensor.tensor,
                score_db=tensor.local_sqnr_db, activation_sqnr_db=_worst(t.local_sqnr_db for t in acts),
                accumulated_sqnr_db=_worst(t.accumulated_sqnr_db for t in acts),
                weight_sqnr_db=_worst(t.local_sqnr_db for t in weights)))
    return ranked


def output_sqnr(reference: list[np.ndarray], outputs: list[np.ndarray]) -> float | None:
    """SQNR (dB) of all outputs over all samples together."""
    energy = _Energy()
    for ref, out in zip(reference, outputs, strict=True):
        energy.add(ref, out)
    return sqnr_db(energy.signal, energy.noise)


def run_outputs(model: Path, inputs: Iterable[Mapping[str, np.ndarray]]) -> list[np.ndarray]:
    """Every output of ``model`` on every sample, as one flat list (single-threaded CPU session)."""
    session = cpu_session(model)
    return [np.asarray(out) for feeds in inputs for out in session.run(None, dict(feeds))]


def isolated_gains(source: Path, recipe: Any, calibration: Any, nodes: list[str],
                   inputs: Sequence[Mapping[str, np.ndarray]], work_dir: Path) -> list[dict[str, Any]]:
    """The expensive check: for each node, a variant of ``recipe`` with only that node kept in float,
    and the output SQNR vs fp32 it reaches (``gain_db`` over the plain variant).  One quantizer run per node."""
    from dataclasses import replace

    from edgeopt.models.quantize import RangeCache, make_variant

    ranges = RangeCache()
    reference = run_outputs(source, inputs)
    base = make_variant(source, recipe, work_dir, calibration=calibration, ranges=ranges)
    base_sqnr = output_sqnr(reference, run_outputs(base.path, inputs))
    rows = []
    with progress.task("sensitivity: each node alone in float", total=len(nodes), unit="nodes") as step:
        for node in nodes:
            variant = make_variant(source, replace(recipe, exclude_nodes=(node,)), work_dir,
                                   calibration=calibration, ranges=ranges)
            value = output_sqnr(reference, run_outputs(variant.path, inputs))
            gain = None if value is None or base_sqnr is None else value - base_sqnr
            rows.append({"node": node, "output_sqnr_db": value, "base_output_sqnr_db": base_sqnr, "gain_db": gain})
            step.advance()
    return rows


def _fmt(value: float | None) -> str:
    return "exact" if value is None else f"{value:.1f}"


def render_sensitivity_table(report: SensitivityReport, top: int | None = None) -> str:
    from tabulate import tabulate

    rows = [[n.rank, n.node, n.op_type, n.worst_tensor, _fmt(n.score_db), _fmt(n.activation_sqnr_db),
             _fmt(n.accumulated_sqnr_db), "-" if n.weight_sqnr_db is None and not _has_weight(report, n.node)
             else _fmt(n.weight_sqnr_db)] for n in report.nodes[:top]]
    header = ["rank", "node", "op", "worst tensor", "score dB", "activation SQNR dB (local)",
              "accumulated SQNR dB (vs fp32)", "weight SQNR dB"]
    return tabulate(rows, headers=header, disable_numparse=True)


def _has_weight(report: SensitivityReport, node: str) -> bool:
    return any(t.kind == "weight" and node in t.consumers for t in report.tensors)


def plot_sensitivity(report: SensitivityReport, path: Path | str, top: int = 20) -> Path:
    """A horizontal bar plot (PNG) of the ``top`` worst nodes' scores; lower = more damage."""
    try:
        import matplotlib
    except ImportError as error:
        from edgeopt.errors import BackendUnavailableError

        raise BackendUnavailableError("plots need matplotlib: pip install 'edgeopt[report]'") from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgeopt.core.fileio import atomic_path

    nodes = list(report.nodes[:top])
    values = [60.0 if n.score_db is None else n.score_db for n in nodes]
    figure, axis = plt.subplots(figsize=(8, 0.35 * len(nodes) + 1.2))
    axis.barh(range(len(nodes)), values, color=["#c0392b" if v < 30 else "#2980b9" for v in values])
    axis.set_yticks(range(len(nodes)), [f"{n.node} ({n.op_type})" for n in nodes], fontsize=8)
    axis.invert_yaxis()
    axis.set_xlabel("SQNR dB of the worst quantized tensor the node touches (lower = more error)")
    axis.set_title(f"quantization sensitivity: {Path(report.qdq_model).name}", fontsize=10)
    figure.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
    return path
