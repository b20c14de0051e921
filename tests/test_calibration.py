"""Tests for edgeopt.models.calibration: shipped sets, entry points, and every rejection on real files."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from edgeopt.errors import CalibrationError, UserCodeError
from edgeopt.models.calibration import (
    SHIPPED_DATA_DIR,
    CalibrationSet,
    InputSpec,
    load_calibration,
    load_eval_split,
    validate_samples,
)

DIGITS = SHIPPED_DATA_DIR / "digits"
IMAGES = SHIPPED_DATA_DIR / "images"
SPEC = [InputSpec("input", (1, 1, 8, 8), "float32")]


def write_manifest(directory: Path, **overrides: Any) -> Path:
    document: dict[str, Any] = {
        "name": "tiny",
        "kind": "arrays",
        "description": "test set",
        "provenance": "built by the test",
        "licence": "CC0",
        "inputs": [{"name": "input", "dtype": "float32", "shape": [1, 1, 8, 8]}],
    }
    document.update(overrides)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "manifest.yaml").write_text(yaml.safe_dump(document))
    return directory


def per_file_set(directory: Path, count: int = 4, **overrides: Any) -> Path:
    """A kind-arrays set with one sample per .npz file: sample_000.npz, sample_001.npz, ..."""
    write_manifest(directory, **overrides)
    rng = np.random.default_rng(0)
    for i in range(count):
        np.savez(directory / f"sample_{i:03d}.npz", input=rng.random((1, 1, 8, 8), dtype=np.float32))
    return directory


def rejected(source: Path | str, *fragments: str, **kwargs: Any) -> str:
    kwargs.setdefault("min_samples", 1)
    with pytest.raises(CalibrationError) as info:
        load_calibration(source, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


# ------------------------------------------------------------------------------------------ shipped


def test_shipped_digits_load_validate_and_hash_is_stable() -> None:
    first = load_calibration(DIGITS, expected_inputs=[InputSpec("input", ("batch", 1, 8, 8), "float32")])
    second = load_calibration(DIGITS, expected_inputs=SPEC)
    assert first.count == 128
    assert all(f["input"].shape == (1, 1, 8, 8) and f["input"].dtype == np.float32 for f in first.feeds())
    assert first.content_hash == second.content_hash and len(first.content_hash) == 64
    assert "CC BY 4.0" in first.licence and "Alpaydin" in first.provenance
    assert first.describe()["count"] == 128


def test_shipped_digits_splits() -> None:
    sizes = {}
    for split in ("train", "val", "eval"):
        images, labels = load_eval_split(DIGITS / f"{split}.npz")
        assert images.dtype == np.float32 and images.shape[1:] == (1, 8, 8)
        assert 0.0 <= images.min() and images.max() <= 1.0
        assert set(np.unique(labels)) == set(range(10))
        sizes[split] = len(labels)
    assert sizes == {"train": 1077, "val": 360, "eval": 360}


def test_shipped_images_load_normalised() -> None:
    spec = [InputSpec("input", ("N", 3, 224, 224), "float32")]
    images = load_calibration(IMAGES, expected_inputs=spec)
    assert images.count == 32
    stacked = np.concatenate([f["input"] for f in images.feeds()])
    assert stacked.shape == (32, 3, 224, 224) and stacked.dtype == np.float32
    assert abs(float(stacked.mean())) < 1.0 and 0.5 < float(stacked.std()) < 2.0
    assert -2.2 < stacked.min() and stacked.max() < 2.7  # bounds of (x - mean) / std for x in [0, 1]
    manifest = yaml.safe_load((IMAGES / "manifest.yaml").read_text())
    assert {s["file"] for s in manifest["sources"]} == set(images.metadata["files"])


# ---------------------------------------------------------------------------------------- behaviour


def test_hash_changes_with_one_value_take_and_to_npz(tmp_path: Path) -> None:
    source = per_file_set(tmp_path / "set", count=5)
    before = load_calibration(source, min_samples=1)
    data = dict(np.load(source / "sample_003.npz"))
    data["input"][0, 0, 4, 4] += 1e-3
    np.savez(source / "sample_003.npz", **data)
    after = load_calibration(source, min_samples=1)
    assert before.content_hash != after.content_hash

    head = after.take(2)
    assert head.count == 2 and head.content_hash != after.content_hash
    assert np.array_equal(head.samples[1]["input"], after.samples[1]["input"])
    assert after.take(99).content_hash == after.content_hash
    assert load_calibration(source, min_samples=1, max_samples=2).content_hash == head.content_hash

    written = head.to_npz(tmp_path / "out" / "reference.npz")
    with np.load(written, allow_pickle=False) as archive:
        assert archive["input"].shape == (2, 1, 1, 8, 8)
        assert np.array_equal(archive["input"][1], head.samples[1]["input"])
    with pytest.raises(ValueError):
        head.samples[0]["input"][0, 0, 0, 0] = 5.0  # samples are read-only


def test_stacked_npz_with_new_leading_axis_and_npy(tmp_path: Path) -> None:
    source = write_manifest(tmp_path / "stacked", stacked=True)
    np.savez(source / "a.npz", input=np.zeros((3, 1, 1, 8, 8), np.float32), labels=np.arange(3))
    np.save(source / "b.npy", np.ones((2, 1, 8, 8), np.float32))  # batch-axis form, single input
    loaded = load_calibration(source, min_samples=1)
    assert loaded.count == 3  # default glob '*.npz' skips b.npy
    both = write_manifest(tmp_path / "stacked", stacked=True, files="*.np[yz]")
    assert load_calibration(both, min_samples=1).count == 5


def test_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "calibfeeds.py").write_text(
        textwrap.dedent("""
        import numpy as np

        def feeds():
            rng = np.random.default_rng(1)
            for _ in range(20):
                yield {"input": rng.random((1, 1, 8, 8), dtype=np.float32)}

        def with_nan():
            samples = [{"input": np.zeros((1, 1, 8, 8), np.float32)} for _ in range(3)]
            samples[2]["input"][0, 0, 0, :2] = np.nan
            return samples

        def broken():
            raise RuntimeError("camera offline")
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded = load_calibration("calibfeeds:feeds", expected_inputs=SPEC)
    assert loaded.count == 20 and loaded.source == "calibfeeds:feeds"
    assert load_calibration("calibfeeds:feeds", max_samples=16).content_hash == loaded.take(16).content_hash
    rejected("calibfeeds:with_nan", "calibfeeds:with_nan sample 2", "input 'input'", "2 NaN")
    with pytest.raises(UserCodeError, match=r"calibfeeds:broken: your calibration entry point raised RuntimeError: "
                       r"camera offline \(at .*calibfeeds.py:\d+ in broken\)"):  # exit 3, the user's frame
        load_calibration("calibfeeds:broken", min_samples=1)
    rejected("calibfeeds:missing", "calibfeeds:missing", "cannot import")
    rejected("no_such_pkg.mod:feeds", "no_such_pkg.mod:feeds", "cannot import")
    rejected(
        "calibfeeds:feeds",
        "calibfeeds:feeds",
        "20 calibration sample(s) found",
        "min_samples",
        min_samples=32,
    )


# ---------------------------------------------------------------------------------------- rejection


def test_empty_folder_and_missing_manifest(tmp_path: Path) -> None:
    rejected(tmp_path, str(tmp_path / "manifest.yaml"), "manifest missing")
    rejected(write_manifest(tmp_path / "empty"), "empty", "'files'", "*.npz")
    rejected(tmp_path / "nowhere", "nowhere", "not a directory")


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"colour": "blue"}, "colour"),
        ({"kind": "audio"}, "kind"),
        (
            {"inputs": [{"name": "input", "dtype": "float32", "shape": [1], "layout": "NCHW"}]},
            "inputs.0.layout",
        ),
        ({"inputs": [{"name": "input", "dtype": "floot32", "shape": [1]}]}, "inputs.0.dtype"),
        ({"stacked": "perhaps"}, "stacked"),
        ({"inputs": [{"name": "input", "dtype": "float32", "shape": [1, 2.5]}]}, "inputs.0.shape'"),
        ({"inputs": []}, "inputs'"),
        ({"name": None}, "name"),
    ],
)
def test_bad_manifest_names_file_and_key(tmp_path: Path, overrides: dict[str, Any], key: str) -> None:
    source = per_file_set(tmp_path / "set", **overrides)
    rejected(source, str(source / "manifest.yaml"), f"key '{key}")


def test_manifest_missing_key_and_bad_yaml(tmp_path: Path) -> None:
    source = per_file_set(tmp_path / "set")
    document = yaml.safe_load((source / "manifest.yaml").read_text())
    del document["licence"]
    (source / "manifest.yaml").write_text(yaml.safe_dump(document))
    rejected(source, "manifest.yaml", "key 'licence'", "required")
    (source / "manifest.yaml").write_text("name: [unclosed\n")
    rejected(source, "manifest.yaml", "invalid YAML")
    (source / "manifest.yaml").write_text("!!python/object/apply:os.system ['true']\n")
    rejected(source, "manifest.yaml", "invalid YAML", "no !!python")  # a safe loader refuses python tags


@pytest.mark.parametrize(("bad", "count"), [(np.nan, "3 NaN and 0 Inf"), (np.inf, "0 NaN and 3 Inf")])
def test_non_finite_values(tmp_path: Path, bad: float, count: str) -> None:
    source = per_file_set(tmp_path / "set")
    values = np.zeros((1, 1, 8, 8), np.float32)
    values[0, 0, 1, :3] = bad
    np.savez(source / "sample_002.npz", input=values)
    rejected(source, "sample_002.npz", "input 'input'", count)


def test_wrong_name_shape_dtype(tmp_path: Path) -> None:
    source = per_file_set(tmp_path / "set")
    np.savez(source / "sample_001.npz", pixels=np.zeros((1, 1, 8, 8), np.float32))
    rejected(source, "sample_001.npz", "missing input(s) 'input'", "unexpected input(s) 'pixels'")
    np.savez(source / "sample_001.npz", input=np.zeros((1, 3, 32, 32), np.float32))
    rejected(source, "sample_001.npz: input 'input': shape (1, 3, 32, 32) != expected (1, 1, 8, 8)")
    np.savez(source / "sample_001.npz", input=np.zeros((1, 1, 8, 8), np.float64))
    rejected(source, "sample_001.npz: input 'input': dtype float64 != expected float32")
    np.savez(source / "sample_001.npz", input=np.zeros((1, 1, 8, 8), np.float32))
    model = [InputSpec("input", (1, 1, 16, 16), "float32")]
    rejected(
        source,
        "sample_000.npz: input 'input': shape (1, 1, 8, 8) != expected (1, 1, 16, 16)",
        expected_inputs=model,
    )


def test_too_few_samples(tmp_path: Path) -> None:
    source = per_file_set(tmp_path / "set", count=3)
    rejected(
        source,
        str(source),
        "3 calibration sample(s) found, at least 16 required",
        "min_samples",
        min_samples=16,
    )
    assert load_calibration(source, min_samples=3).count == 3


def test_truncated_npz(tmp_path: Path) -> None:
    source = per_file_set(tmp_path / "set")
    whole = (source / "sample_001.npz").read_bytes()
    (source / "sample_001.npz").write_bytes(whole[: len(whole) // 2])
    rejected(source, "sample_001.npz", "unreadable or corrupt")
    (source / "sample_001.npz").write_bytes(b"")
    rejected(source, "sample_001.npz", "is empty (0 bytes)")


def test_object_npy_is_refused(tmp_path: Path) -> None:
    source = write_manifest(tmp_path / "set", files="*.npy")
    np.save(source / "sample_000.npy", np.zeros((1, 1, 8, 8), np.float32))
    np.save(source / "sample_001.npy", np.array([{"x": 1}, None], dtype=object), allow_pickle=True)
    rejected(source, "sample_001.npy", "pickled", "refused")
    np.savez(tmp_path / "split.npz", images=np.array([1, "a"], dtype=object), labels=np.arange(2))
    with pytest.raises(CalibrationError, match="split.npz.*refused"):
        load_eval_split(tmp_path / "split.npz")


def test_unreadable_image(tmp_path: Path) -> None:
    source = tmp_path / "photos"
    manifest = yaml.safe_load((IMAGES / "manifest.yaml").read_text())
    del manifest["sources"]
    source.mkdir()
    (source / "manifest.yaml").write_text(yaml.safe_dump(manifest))
    for name in ("astronaut_0.jpg", "coffee_0.jpg"):
        (source / name).write_bytes((IMAGES / name).read_bytes())
    assert load_calibration(source, min_samples=2).count == 2
    (source / "coffee_0.jpg").write_bytes((IMAGES / "coffee_0.jpg").read_bytes()[:300])
    rejected(source, "coffee_0.jpg", "unreadable image")
    (source / "coffee_0.jpg").write_text("not an image")
    rejected(source, "coffee_0.jpg", "unreadable image")


def test_eval_split_rejections(tmp_path: Path) -> None:
    path = tmp_path / "split.npz"
    np.savez(path, images=np.zeros((4, 1, 8, 8), np.float32), labels=np.arange(4.0))
    with pytest.raises(CalibrationError, match=r"split\.npz: array 'labels'"):
        load_eval_split(path)
    np.savez(path, images=np.full((4, 1, 8, 8), np.nan, np.float32), labels=np.arange(4))
    with pytest.raises(CalibrationError, match=r"split\.npz: array 'images': 256 NaN"):
        load_eval_split(path)
    np.savez(path, images=np.zeros((4, 1, 8, 8), np.float32), labels=np.arange(3))
    with pytest.raises(CalibrationError, match=r"split\.npz: array 'labels'.*expected 4"):
        load_eval_split(path)


def test_validate_samples_directly() -> None:
    good = [{"input": np.zeros((2, 1, 8, 8), np.float32)}, {"input": np.ones((5, 1, 8, 8), np.float32)}]
    validate_samples(
        good, [InputSpec("input", ("batch", 1, 8, 8), "float32")], min_samples=2, source_label="feeds"
    )
    with pytest.raises(CalibrationError, match="feeds sample 1: input 'input': shape"):
        validate_samples(good, None, min_samples=1, source_label="feeds")  # sample 0 defines the shape
    with pytest.raises(CalibrationError, match="feeds: 0 calibration sample"):
        validate_samples([], None, min_samples=0, source_label="feeds")
    not_arrays: list[Any] = [{"input": [1.0]}]
    with pytest.raises(CalibrationError, match="feeds sample 0: input 'input': is a list"):
        validate_samples(not_arrays, None, min_samples=1, source_label="feeds")
    assert isinstance(CalibrationSet("x", "y", tuple(good)).content_hash, str)


def test_image_folder_feeds_a_single_input_model_whatever_its_input_name() -> None:
    calibration = load_calibration(IMAGES, expected_inputs=[InputSpec("x", ("N", 3, 224, 224), "float32")],
                                   max_samples=4, min_samples=1)
    assert list(calibration.samples[0]) == ["x"]


# ------------------------------------------------------------------------- files stay inside the folder


@pytest.mark.parametrize(("pattern", "phrase"), [
    ("../outside/*.npz", "climbs out of the calibration folder ('..' is refused)"),
    ("sub/../../outside/*.npz", "climbs out of the calibration folder"),
    ("/etc/*.npz", "is an absolute pattern"),
    ("C:\\data\\*.npz", "is an absolute pattern"),
    ("~/data/*.npz", "is an absolute pattern"),
    ("  ", "empty pattern"),
])
def test_a_files_pattern_outside_the_folder_is_refused(tmp_path: Path, pattern: str, phrase: str) -> None:
    per_file_set(tmp_path / "outside")
    source = per_file_set(tmp_path / "set", files=pattern)
    rejected(source, str(source / "manifest.yaml"), "key 'files'", phrase)


def test_symlinks_out_of_the_folder_are_refused_and_links_inside_allowed(tmp_path: Path) -> None:
    outside = per_file_set(tmp_path / "outside")
    source = per_file_set(tmp_path / "set")
    (source / "sample_009.npz").symlink_to(source / "sample_000.npz")  # inside: fine
    linked = load_calibration(source, min_samples=1)
    assert linked.count == 5 and linked.metadata["files"][-1] == "sample_009.npz"  # the name as matched
    (source / "sample_010.npz").symlink_to(outside / "sample_000.npz")
    rejected(source, f"{source / 'sample_010.npz'}: resolves to {outside / 'sample_000.npz'}",
             "outside the calibration")
    (source / "sample_010.npz").unlink()
    (source / "more").symlink_to(outside, target_is_directory=True)
    write_manifest(source, files="more/*.npz")  # a symlinked sub-folder pointing out
    rejected(source, f"{source / 'more' / 'sample_000.npz'}: resolves to", "outside the calibration folder")
    write_manifest(source, files="**/*.npz")  # the recursive glob does not follow the link
    assert load_calibration(source, min_samples=1).count == 5


def test_the_files_read_are_hashed_into_provenance(tmp_path: Path) -> None:
    source = per_file_set(tmp_path / "set", files="**/*.npz")
    (source / "sub").mkdir()
    np.savez(source / "sub" / "extra.npz", input=np.ones((1, 1, 8, 8), np.float32))
    first = load_calibration(source, min_samples=1)
    assert first.metadata["files"] == ["sample_000.npz", "sample_001.npz", "sample_002.npz", "sample_003.npz",
                                       "sub/extra.npz"]
    record = first.describe()
    assert record["file_count"] == 5 and len(record["files_sha256"]) == 64
    assert set(first.metadata["file_sha256"]) == set(first.metadata["files"])
    (source / "sub" / "extra.npz").rename(source / "sub" / "renamed.npz")  # same samples, other files
    second = load_calibration(source, min_samples=1)
    assert second.content_hash == first.content_hash
    assert second.describe()["files_sha256"] != record["files_sha256"]


def test_duplicate_keys_in_the_manifest_are_refused(tmp_path: Path) -> None:
    source = per_file_set(tmp_path / "set")
    text = (source / "manifest.yaml").read_text()
    (source / "manifest.yaml").write_text(text + "licence: MIT\n")
    message = rejected(source, str(source / "manifest.yaml"), "licence: duplicate key (line")
    assert "first at line" in message
    (source / "manifest.yaml").write_text(text.replace("inputs:\n", "inputs:\n- {name: a, name: b, dtype: float32, "
                                                                    "shape: [1]}\n"))
    rejected(source, "inputs[0].name: duplicate key")


def test_an_alias_bomb_manifest_is_refused_at_once(tmp_path: Path) -> None:
    source = per_file_set(tmp_path / "set")
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(10))
    (source / "manifest.yaml").write_text((source / "manifest.yaml").read_text() + bomb)
    rejected(source, "manifest.yaml", "YAML anchor &a refused")


@pytest.mark.parametrize(("content", "phrase"), [
    (b"images,labels\n0.1,3\n", "is a text file (starts 'images,labels 0.1,3'), not a .npz or .npy array file"),
    (b"\x80\x04\x95\x10\x00\x00", "is a Python pickle; refused, edgeopt never unpickles data files"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "holds a PNG image, not a .npz or .npy array file"),
    (b"\x00\x01\x02\xff\xfe", "holds binary data, not a .npz or .npy array file"),
    ("é".encode() * 400, "is a text file (starts '" + "é" * 40 + "'), not a .npz or .npy array file"),
])
def test_an_array_file_that_is_not_one_says_what_it_is(tmp_path: Path, content: bytes, phrase: str) -> None:
    path = tmp_path / "eval.npz"
    path.write_bytes(content)
    with pytest.raises(CalibrationError) as info:
        load_eval_split(path)
    assert str(info.value) == f"{path}: {phrase}"
    assert "pickled" not in str(info.value)


def test_a_compressed_npz_bomb_is_refused_from_its_header_and_real_data_is_not(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A member that declares far more than it stores (zeros deflate ~1000x) is refused before numpy allocates it;
    random data saved compressed (ratio ~1.1) reads as ever.  The threshold is lowered to keep the files small."""
    from edgeopt.models import calibration

    monkeypatch.setattr(calibration, "BOMB_MIN_BYTES", 2**20)
    np.savez_compressed(tmp_path / "bomb.npz", input=np.zeros((1, 1, 1024, 1024), np.float32))  # 4 MiB in ~4 KiB
    np.savez_compressed(tmp_path / "real.npz", input=np.random.default_rng(0).random((1, 1, 1024, 1024), np.float32))
    with pytest.raises(CalibrationError, match=r"bomb\.npz: array 'input' declares \(1, 1, 1024, 1024\) float32 "
                                               r"\(4 MiB\) in 0\.0 MiB compressed: refused as a compression bomb"):
        calibration._load_array_file(tmp_path / "bomb.npz")
    assert calibration._load_array_file(tmp_path / "real.npz")["input"].shape == (1, 1, 1024, 1024)
