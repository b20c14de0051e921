"""PyTorch → ONNX export: inputs bound by name, outputs of any structure, named dynamic dimensions, and a numeric
parity check with PyTorch at two sizes of every dynamic dimension; provenance is saved beside the model.

The module is exported as the flat module of :mod:`edgeopt.models.torch_io` (declared inputs in, named tensor
leaves out) with ``torch.onnx.export``: ``dynamo`` (torch.export, torch's default since 2.9; the opset is the
exporter's own, at least 18, never down-converted) or ``torchscript`` (opset 17 by default).  A dynamic
dimension is a *name* in an input's shape (``input_ids: batch x seq``); it is passed to the exporter
(``dynamic_shapes`` / ``dynamic_axes``) and must stay that name in the file.  The example size of each name is,
in order: its ``name=size`` hint, the first parity sample's size when it is 2 or more, else 2 for a batch-like
name and 16 for any other (never a sample's 1: broadcasting bugs hide there, and torch.export specialises it).
The model is exported on the first user sample of exactly those sizes, else on in-domain synthetic data.
Parity runs at those sizes and at second ones (:func:`second_size`), on the user's samples first and then on
in-domain synthetic data (:func:`edgeopt.models.inputs.synthetic_feeds`: token ids inside their table, masks of
ones, lengths inside the dimension); an export whose outputs are all empty on every parity input (a detector
that detects nothing) proves nothing and is refused.  The ONNX file appears only after every check passed.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import logging
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from edgeopt.core.fileio import atomic_path, sha256_file, write_json_atomic
from edgeopt.errors import USER_CODE_ERRORS, ConfigError, ExportError, UserCodeError, first_line
from edgeopt.models.export_file import check_named_dims, name_output_dims, strip_wrapper_scope
from edgeopt.models.export_parity import (
    OutputParity,
    ParityTolerance,
    check_tolerance,
    compare_outputs,
    concrete_specs,
    parity_feeds,
    second_size,
    size_of,
    sizes_label,
    worst_of,
)
from edgeopt.models.graph import cpu_session
from edgeopt.models.graph_check import refusal
from edgeopt.models.input_spec import InputSpec
from edgeopt.models.inputs import DEFAULT_MAX_INPUT_MB, check_input_sizes, standard_normal, synthetic_feeds
from edgeopt.models.modelref import CACHE_PARAMETERS, InputDeclaration, parse_inputs, user_code_error, user_frame

if TYPE_CHECKING:
    import torch

Exporter = Literal["dynamo", "torchscript"]
EXPORTERS: tuple[str, ...] = ("dynamo", "torchscript")
DEFAULT_EXPORTER: Exporter = "dynamo"
TORCHSCRIPT_DEFAULT_OPSET = 17
DYNAMO_MIN_OPSET = 18  # torch.export's ONNX translation is written for 18+; below, it down-converts (and breaks)
BATCH_NAMES = frozenset({"batch", "batch_size", "bs", "b", "n", "num_images"})
DEFAULT_BATCH_SIZE = 2
DEFAULT_DIM_SIZE = 16
DEFAULT_TOLERANCE = ParityTolerance()

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportResult:
    path: Path
    provenance_path: Path
    parity: tuple[OutputParity, ...]
    provenance: dict[str, Any]
    sizes: Mapping[str, int] = field(default_factory=dict)  # the example size of every dynamic dimension


def provenance_path_for(model_path: Path) -> Path:
    return model_path.with_name(model_path.stem + ".provenance.json")


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def random_feeds(specs: list[InputSpec], seed: int, batch: int = 1,
                 max_input_mb: float | None = DEFAULT_MAX_INPUT_MB) -> dict[str, np.ndarray]:
    """Seeded random inputs for the given specs, made in each input's dtype; a symbolic dimension becomes
    ``batch``.  An input over ``max_input_mb`` MiB is refused before anything is allocated (exit 3)."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    concrete = [InputSpec(s.name, tuple(d if isinstance(d, int) and d > 0 else batch for d in s.shape), s.dtype)
                for s in specs]
    if max_input_mb is not None:
        check_input_sizes(concrete, max_input_mb)
    for spec in concrete:
        shape = tuple(int(d) for d in spec.shape)
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f":
            feeds[spec.name] = standard_normal(rng, shape, dtype)
        elif dtype.kind in "iu":
            feeds[spec.name] = rng.integers(0, 10, size=shape, dtype=dtype)
        elif dtype.kind == "b":
            feeds[spec.name] = rng.integers(0, 2, size=shape, dtype=np.uint8).view(np.bool_)
        else:
            raise ExportError(f"input '{spec.name}': cannot generate random data of dtype {spec.dtype}")
    return feeds


def example_sizes(declaration: InputDeclaration, samples: Sequence[Mapping[str, np.ndarray]] = ()) -> dict[str, int]:
    """The example size of every dynamic dimension name (module docstring: hint, first sample, default)."""
    sizes: dict[str, int] = {}
    first = samples[0] if samples else {}
    for spec in declaration.specs:
        for axis, dim in enumerate(spec.shape):
            if not isinstance(dim, str) or dim in sizes or "+" in dim:  # a sum follows its parts
                continue
            if dim in declaration.sizes:
                sizes[dim] = declaration.sizes[dim]
            elif (spec.name in first and np.ndim(first[spec.name]) == len(spec.shape)
                  and np.shape(first[spec.name])[axis] >= 2):  # a sample's 1 (its batch) is never the example
                sizes[dim] = int(np.shape(first[spec.name])[axis])
            else:
                sizes[dim] = DEFAULT_BATCH_SIZE if dim.lower() in BATCH_NAMES else DEFAULT_DIM_SIZE
    return sizes


def _integer_bound(model: torch.nn.Module) -> int:
    """Integers of the export example stay inside the smallest embedding table (ids, token types) and below 10."""
    import torch

    tables = [m.num_embeddings for m in model.modules() if isinstance(m, torch.nn.Embedding)]
    return max(1, min([10, *tables]))


class _Eager:
    """The user's module called eagerly on numpy feeds, its outputs flattened into named numpy arrays."""

    def __init__(self, model: torch.nn.Module, bindings: Sequence[Any], where: str) -> None:
        self.model, self.bindings, self.where = model, tuple(bindings), where
        self.dropped: list[str] = []

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        from edgeopt.models.torch_io import call_arguments, flatten_outputs

        tensors = [torch.from_numpy(np.require(feeds[b.input], requirements=("C", "W"))) for b in self.bindings]
        args, kwargs = call_arguments(self.bindings, tensors)
        try:
            with torch.no_grad():
                produced = self.model(*args, **kwargs)
        except USER_CODE_ERRORS as error:  # the user's forward may raise anything, or call sys.exit
            shapes = ", ".join(f"{name} {list(np.shape(v))}" for name, v in feeds.items())
            done = (f"called sys.exit({error.code!r}); edgeopt stopped without a result"
                    if isinstance(error, SystemExit) else f"raised {type(error).__name__}: {first_line(error)}")
            raise UserCodeError(f"{self.where}: your model's forward {done} (at {user_frame(error)}) on inputs "
                                f"{shapes}") from error
        leaves, self.dropped = flatten_outputs(produced)
        if not leaves:
            raise ExportError(f"{self.where}: forward returned no tensor ({', '.join(self.dropped) or 'nothing'}); "
                              "there is nothing to export")
        return {name: tensor.detach().cpu().numpy() for name, tensor in leaves}


def _output_axes(at_a: Mapping[str, np.ndarray], at_b: Mapping[str, np.ndarray], sizes_a: Mapping[str, int],
                 sizes_b: Mapping[str, int]) -> dict[str, dict[int, str]]:
    """Output axes whose size follows the inputs' dynamic dims (sizes at the two example sizes), named after
    the dimension whose two sizes they match (where several match, e.g. ``h`` and ``w``, the first not yet used by
    this output, in declaration order), else ``<output>_dim<axis>``."""
    axes: dict[str, dict[int, str]] = {}
    for name, a in at_a.items():
        b = at_b.get(name)
        if b is None or np.ndim(a) != np.ndim(b):
            continue
        for axis, (size_a, size_b) in enumerate(zip(np.shape(a), np.shape(b), strict=True)):
            if size_a != size_b:
                used = set(axes.get(name, {}).values())
                match = [d for d in sizes_a if sizes_a[d] == size_a and sizes_b[d] == size_b and d not in used]
                axes.setdefault(name, {})[axis] = match[0] if match else f"{name}_dim{axis}"
    return axes


def _distinct_from_inputs(outputs: list[str], inputs: list[str]) -> list[str]:
    """Output names no input has (ONNX names each tensor once): a cache returned as the parameter it came in as
    (``cache.0.key``) is ``present.0.key``, as optimum names it; any other clash gets ``.out``."""
    taken = set(inputs)
    renamed = []
    for name in outputs:
        if name in taken:
            head, _, rest = name.partition(".")
            name = f"present.{rest}" if head in CACHE_PARAMETERS and rest else f"{name}.out"
        renamed.append(name)
    return renamed


def _dynamo_cause(error: BaseException) -> str:
    """The first real cause of a torch.onnx dynamo failure: the line after its '## Exception summary', else the
    innermost chained exception's first line."""
    text = str(error)
    if "## Exception summary" in text:
        after = text.split("## Exception summary", 1)[1]
        for line in after.splitlines():
            if line.strip():
                return line.strip()[:400]
    inner: BaseException = error
    while inner.__cause__ is not None:
        inner = inner.__cause__
    return first_line(inner)


@contextlib.contextmanager
def _quiet_torch_logs() -> Iterator[None]:
    """torch's own loggers at ERROR while the exporter runs: on a failure torch.export logs the whole traced graph
    (dozens of lines) before raising, and without torchvision it warns about each of its operators; the error
    edgeopt raises names the first cause in one line."""
    import torch  # noqa: F401 - its logging configuration must exist before its levels are changed

    names = ["torch", *(n for n, v in logging.root.manager.loggerDict.items()
                        if n.startswith("torch.") and isinstance(v, logging.Logger))]
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def _logged_at_debug(said: io.StringIO) -> Iterator[None]:
    """What the exporter printed (its steps; on a failure, the traced graph), logged at DEBUG (``-v``, --log-file)."""
    try:
        yield
    finally:
        if said.getvalue().strip():
            logger.debug(f"export: what torch.onnx.export printed:\n{said.getvalue().rstrip()}")


def _run_exporter(flat: torch.nn.Module, example: tuple[Any, ...], staged: Path, specs: Sequence[InputSpec],
                  output_names: list[str], output_axes: Mapping[str, Mapping[int, str]], opset: int | None,
                  exporter: str) -> None:
    """Export ``flat`` to ``staged``; what the exporter prints is logged at DEBUG."""
    import torch

    input_axes = {s.name: {axis: d for axis, d in enumerate(s.shape) if isinstance(d, str)} for s in specs}
    said = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(said), contextlib.redirect_stderr(said), \
            _quiet_torch_logs(), _logged_at_debug(said):
        warnings.simplefilter("ignore")  # the exporters warn about their own deprecations and renamings
        if exporter == "torchscript":
            dynamic_axes = {n: dict(a) for n, a in {**input_axes, **output_axes}.items() if a}
            torch.onnx.export(flat, example, str(staged), input_names=[s.name for s in specs],
                              output_names=output_names, opset_version=opset or TORCHSCRIPT_DEFAULT_OPSET,
                              dynamic_axes=dynamic_axes or None, dynamo=False)
        else:
            dynamic = tuple(input_axes[s.name] or None for s in specs)
            program = torch.onnx.export(flat, example, input_names=[s.name for s in specs],
                                        output_names=output_names, opset_version=opset, dynamo=True,
                                        dynamic_shapes=(dynamic,) if any(dynamic) else None, external_data=False,
                                        optimize=True, verbose=False)
            if program is None:
                raise ExportError("torch.onnx.export(dynamo=True) returned no program")
            program.save(str(staged), external_data=False)


def export_onnx(
    model: torch.nn.Module,
    inputs: InputDeclaration | Sequence[str | InputSpec | tuple[Any, ...]],
    output_path: Path | str,
    *,
    sizes: Mapping[str, int] | None = None,
    exporter: Exporter = DEFAULT_EXPORTER,
    opset: int | None = None,
    tolerance: ParityTolerance = DEFAULT_TOLERANCE,
    parity_inputs: Sequence[Mapping[str, np.ndarray]] = (),
    parity_samples: int = 3,
    seed: int = 1234,
    source: str = "",
    source_sha256: str | None = None,
    with_past: bool = False,
) -> ExportResult:
    """Export ``model`` to ``output_path``, check it, and verify parity with PyTorch (module docstring).

    ``inputs``: ``--input`` strings, ``(name, shape, dtype)`` tuples or ``InputSpec`` (a dim that is a name is
    dynamic; ``name=size`` gives its example size, as ``sizes`` does).  ``parity_inputs``: the user's samples,
    checked first.  ``with_past``: a transformers causal LM also takes and returns its key/value cache, one
    ``cache.<layer>.key``/``.value`` input per layer with a dynamic ``past`` length
    (:func:`edgeopt.models.torch_io.with_past_inputs`).  The ONNX file appears only after every check passed;
    provenance is written beside it.
    Raises ConfigError (exit 2) for inputs ``forward`` does not take, UserCodeError (exit 3) when ``forward``
    raises, ExportError (exit 4) when the exporter fails or the file differs from PyTorch.
    """
    try:
        import onnx
        import onnxruntime as ort
        import torch

        from edgeopt.models.torch_io import FlatModule, bind_inputs, with_past_inputs
    except ImportError as error:
        raise ExportError(f"export needs torch and onnxruntime: pip install 'edgeopt[torch]' ({error})") from error

    if exporter not in EXPORTERS:
        raise ConfigError(f"exporter {exporter!r}: expected one of {', '.join(EXPORTERS)}")
    if exporter == "dynamo" and opset is not None and opset < DYNAMO_MIN_OPSET:
        raise ConfigError(f"--opset {opset}: the dynamo exporter writes opset {DYNAMO_MIN_OPSET} or newer (below, "
                          "torch down-converts and writes invalid files); leave --opset out, or use --exporter "
                          "torchscript for an older opset")
    declaration = inputs if isinstance(inputs, InputDeclaration) else parse_inputs(list(inputs), where="inputs")
    if sizes:
        declaration = InputDeclaration(declaration.specs, {**declaration.sizes, **sizes})
    specs = list(declaration.specs)
    if not specs:
        raise ConfigError(f"{source or type(model).__name__}: no inputs declared (--input or input_spec())")
    output_path = Path(output_path)
    where = source or type(model).__name__
    if with_past:
        specs = with_past_inputs(model, specs, where)
        declaration = InputDeclaration(tuple(specs), declaration.sizes)
    for index, sample in enumerate(parity_inputs):
        if set(sample) != {s.name for s in specs}:
            raise ConfigError(f"{where}: parity sample {index} holds inputs {sorted(sample)}, the model's declared "
                              f"inputs are {[s.name for s in specs]}")
        for spec in specs:
            if not spec.accepts_shape(tuple(np.shape(sample[spec.name]))):
                raise ConfigError(f"{where}: parity sample {index}: input {spec.name!r} has shape "
                                  f"{list(np.shape(sample[spec.name]))}, declared {list(spec.shape)}")
    model = model.eval()
    bindings = bind_inputs(model, [s.name for s in specs], where)
    started = time.perf_counter()
    sizes_a = example_sizes(declaration, parity_inputs)
    sizes_b = {name: second_size(size) for name, size in sizes_a.items()}
    concrete_a = concrete_specs(specs, sizes_a)
    fits = [dict(s) for s in parity_inputs if all(np.shape(s[c.name]) == c.shape for c in concrete_a)]
    example_feeds = fits[0] if fits else synthetic_feeds(concrete_a, None, seed=seed - 1,
                                                         int_high=_integer_bound(model), where=where)
    eager = _Eager(model, bindings, where)
    at_a = eager(example_feeds)
    at_a = dict(zip(_distinct_from_inputs(list(at_a), [s.name for s in specs]), at_a.values(), strict=True))
    output_axes: dict[str, dict[int, str]] = {}
    if sizes_b != sizes_a:
        feeds_b = synthetic_feeds(concrete_specs(specs, sizes_b), None, seed=seed - 2, int_high=_integer_bound(model),
                                  where=where)
        sums = {d for spec in specs for d in spec.shape if isinstance(d, str) and "+" in d}
        at_b = dict(zip(at_a, eager(feeds_b).values(), strict=True))
        output_axes = _output_axes(at_a, at_b, {**sizes_a, **{d: size_of(d, sizes_a) for d in sums}},
                                   {**sizes_b, **{d: size_of(d, sizes_b) for d in sums}})
    output_names = list(at_a)
    for note in eager.dropped:
        logger.info(f"export: {where}: output leaf {note} is not a tensor: left out of the ONNX file")
    flat = FlatModule(model, bindings).eval()
    example = tuple(torch.from_numpy(np.require(example_feeds[s.name], requirements=("C", "W"))) for s in specs)
    with tempfile.TemporaryDirectory(prefix="edgeopt-export-") as scratch:
        staged = Path(scratch) / "model.onnx"
        try:
            _run_exporter(flat, example, staged, specs, output_names, output_axes, opset, exporter)
        except ExportError:
            raise
        except (SystemExit, GeneratorExit) as error:  # the user's forward, traced, ended the process
            raise user_code_error(where, "your model's forward (while torch.onnx.export traced it)", error) from error
        except Exception as error:  # noqa: BLE001 - any exporter failure becomes one clear error
            cause = _dynamo_cause(error) if exporter == "dynamo" else first_line(error)
            hint = "; try --exporter torchscript" if exporter == "dynamo" else ""
            raise ExportError(f"{where}: torch.onnx.export ({exporter}) failed: {cause}{hint}") from error
        try:
            exported = onnx.load(str(staged))
            strip_wrapper_scope(exported)
            check_named_dims(exported, specs, where, exporter)
            name_output_dims(exported, output_axes)
            try:
                onnx.checker.check_model(exported)
            except onnx.checker.ValidationError as error:  # the statement whole, the node and tensor it is about
                raise ExportError(f"{output_path}: exported model fails onnx.checker: "
                                  f"{refusal(error, exported).line()}") from error
            inferred = onnx.shape_inference.infer_shapes(exported, strict_mode=True)
        except ExportError:
            raise
        except Exception as error:  # noqa: BLE001
            raise ExportError(f"{output_path}: exported model fails onnx checks: {first_line(error)}") from error
        onnx.save(inferred, str(staged))
        actual_opset = next((int(e.version) for e in inferred.opset_import if e.domain in ("", "ai.onnx")), 0)

        session = cpu_session(staged, log_severity=3)
        file_outputs = [o.name for o in session.get_outputs()]
        if file_outputs != output_names:
            raise ExportError(f"{where}: the exported file's outputs {file_outputs} are not forward's tensors "
                              f"{output_names}")
        worst: dict[str, OutputParity] = {}
        checked: list[str] = []
        compared: set[str] = set()  # outputs that held at least one value on some parity input
        for label, feeds in parity_feeds(specs, sizes_a, sizes_b, inferred, parity_inputs, parity_samples, seed):
            expected = dict(zip(output_names, eager(feeds).values(), strict=True))
            try:
                actual = session.run(None, {s.name: feeds[s.name] for s in specs})
            except Exception as error:  # noqa: BLE001 - onnxruntime raises several unrelated types
                raise ExportError(f"{where}: the exported file does not run at {label} (it was exported at "
                                  f"{sizes_label(sizes_a)}): {first_line(error)}") from error
            for name, got in zip(output_names, actual, strict=True):
                want = expected[name]
                if np.shape(want) != np.shape(got):
                    raise ExportError(f"{where}: output {name!r} has shape {list(np.shape(got))} in ONNX Runtime "
                                      f"and {list(np.shape(want))} in PyTorch at {label}")
                if np.size(want):
                    compared.add(name)
                parity = compare_outputs(name, want, got)
                check_tolerance(parity, tolerance, str(output_path), label)
                worst[name] = worst_of(worst.get(name), parity)
            checked.append(label)
        if not compared:
            raise ExportError(f"{where}: every output was empty on every parity input ({', '.join(output_names)}): "
                              "parity would prove nothing; give inputs that produce outputs (--parity-inputs, "
                              "--calibration), e.g. real images for a detector")
        provenance: dict[str, Any] = {
            "kind": "export",
            "source": source,
            "source_sha256": source_sha256,
            "exporter": exporter,
            "opset": actual_opset,
            "opset_requested": opset,
            "inputs": [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype} for s in specs],
            "dynamic_dims": {name: {"example": sizes_a[name], "second": sizes_b[name]} for name in sizes_a},
            "with_past": with_past,
            "dim_hints": dict(declaration.sizes),
            "bindings": [{"input": b.input, "parameter": b.parameter, "key": b.key} for b in bindings],
            "outputs": output_names,
            "dropped_outputs": eager.dropped,
            "empty_outputs": [name for name in output_names if name not in compared],  # never held a value
            "parity": [asdict(p) for p in worst.values()],
            "parity_checked_at": list(dict.fromkeys(checked)),
            "parity_samples": len(checked),
            "parity_user_samples": len(parity_inputs),
            "parity_seed": seed,
            "tolerance": asdict(tolerance),
            "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__,
                         "onnxscript": _version("onnxscript")},
            "export_seconds": round(time.perf_counter() - started, 3),
        }
        output_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(output_path) as tmp:
            tmp.write_bytes(staged.read_bytes())
        provenance["sha256"] = sha256_file(output_path)
        write_json_atomic(provenance_path_for(output_path), provenance)
    return ExportResult(output_path, provenance_path_for(output_path), tuple(worst.values()), provenance, sizes_a)
