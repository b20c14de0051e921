"""Dev-time generator of the calibration and evaluation data shipped under ``calibration_data/``.

Not part of the edgeopt package and never imported by it.  It needs scikit-learn (for the bundled
UCI handwritten digits) and scikit-image (for its bundled photographs), both installed only in the
development environment.  It reads nothing from the network: every source file ships inside those
wheels.  Run from the repository root::

    .venv/bin/python scripts/make_calibration_data.py

The output is deterministic for a given scikit-learn/scikit-image/Pillow version (fixed seeds,
sorted names); rerunning it rewrites ``calibration_data/digits`` and ``calibration_data/images``.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

SEED = 20240611
IMAGE_SIZE = 256
JPEG_QUALITY = 90

DIGITS_PROVENANCE = (
    "scikit-learn {sklearn} sklearn.datasets.load_digits(): the 1797-sample test set (optdigits.tes) of "
    "the UCI 'Optical Recognition of Handwritten Digits' dataset by E. Alpaydin and C. Kaynak "
    "(Bogazici University, 1998): 32x32 NIST-preprocessed bitmaps pooled into 8x8 blocks with integer "
    "counts 0..16. Stored here as float32 pixel/16 in [0, 1], shape (N, 1, 8, 8). Split with "
    "scripts/make_calibration_data.py (seed {seed}, stratified by label): train 1077, val 360, "
    "eval 360; the 128 calibration samples are a stratified draw from train."
)
DIGITS_LICENCE = (
    "CC BY 4.0 (UCI Machine Learning Repository, dataset 80; cite Alpaydin & Kaynak 1998). "
    "Redistributed via scikit-learn (BSD-3-Clause)."
)

# (package, path inside the package, origin, licence) -- licences as stated by each package:
# skimage.data docstrings, and sklearn/datasets/images/README.txt.
PHOTOS: dict[str, tuple[str, str, str, str]] = {
    "astronaut": (
        "skimage", "data/astronaut.png",
        "Eileen Collins, NASA astronaut; NASA Great Images database (https://flic.kr/p/r9qvLn), "
        "bundled as skimage.data.astronaut",
        "Public domain (no known copyright restrictions; NASA)",
    ),
    "coffee": (
        "skimage", "data/coffee.png",
        "Coffee cup, courtesy of Pikolo Espresso Bar, photographer Rachel Michetti; "
        "bundled as skimage.data.coffee",
        "CC0 (photographer Rachel Michetti)",
    ),
    "chelsea": (
        "skimage", "data/chelsea.png",
        "Chelsea the cat, photographer Stefan van der Walt; bundled as skimage.data.chelsea",
        "CC0 (photographer Stefan van der Walt)",
    ),
    "rocket": (
        "skimage", "data/rocket.jpg",
        "Launch of DSCOVR on Falcon 9, SpaceX Photos "
        "(https://www.flickr.com/photos/spacexphotos/16511594820/); bundled as skimage.data.rocket",
        "Public domain (released by SpaceX)",
    ),
    "hubble": (
        "skimage", "data/hubble_deep_field.jpg",
        "Hubble eXtreme Deep Field, NASA/HubbleSite release 2012-37; "
        "bundled as skimage.data.hubble_deep_field",
        "Public domain (NASA)",
    ),
    "china": (
        "sklearn", "datasets/images/china.jpg",
        "Flickr photo 6061409035 by danielbuechele "
        "(https://www.flickr.com/photos/danielbuechele/6061409035/), retrieved 2011-08-21 by Robert "
        "Layton; bundled as sklearn.datasets.load_sample_image('china.jpg')",
        "CC BY 2.0 (https://creativecommons.org/licenses/by/2.0/), attribution: danielbuechele",
    ),
    "flower": (
        "sklearn", "datasets/images/flower.jpg",
        "Flickr photo 6056698931 by vultilion (https://www.flickr.com/photos/vultilion/6056698931/), "
        "retrieved 2011-08-21 by Robert Layton; bundled as sklearn.datasets.load_sample_image('flower.jpg')",
        "CC BY 2.0 (https://creativecommons.org/licenses/by/2.0/), attribution: vultilion "
        "(sklearn's README.txt names danielbuechele, but its source URL is vultilion's photostream)",
    ),
}
CROPS_PER_PHOTO = {
    "astronaut": 5, "coffee": 5, "chelsea": 4, "rocket": 5, "hubble": 4, "china": 5, "flower": 4,
}


def _package_file(package: str, relative: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise SystemExit(f"{package} is not installed; install it into the dev venv to regenerate")
    return Path(spec.origin).parent / relative


def _dump_yaml(path: Path, document: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100))


def make_digits(out: Path) -> None:
    """Write train/val/eval/calib npz files and the calibration manifest for the digits set."""
    import sklearn

    digits = load_digits()
    images = (digits.images.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    labels = digits.target.astype(np.int64)
    index = np.arange(len(labels))
    rest, eval_idx = train_test_split(index, test_size=360, stratify=labels, random_state=SEED)
    train_idx, val_idx = train_test_split(rest, test_size=360, stratify=labels[rest], random_state=SEED)
    calib_idx, _ = train_test_split(train_idx, train_size=128, stratify=labels[train_idx], random_state=SEED)
    out.mkdir(parents=True, exist_ok=True)
    for split, idx in (("train", train_idx), ("val", val_idx), ("eval", eval_idx)):
        np.savez_compressed(out / f"{split}.npz", images=images[idx], labels=labels[idx])
    np.savez_compressed(out / "calib.npz", input=images[calib_idx], labels=labels[calib_idx])
    _dump_yaml(out / "manifest.yaml", {
        "name": "digits-calib-128",
        "kind": "arrays",
        "description": "128 real 8x8 handwritten digits (stratified from the train split) for calibrating "
                       "the digits classifier; train.npz/val.npz/eval.npz hold the full splits "
                       "(arrays 'images' float32 (N,1,8,8) in [0,1], 'labels' int64).",
        "provenance": DIGITS_PROVENANCE.format(sklearn=sklearn.__version__, seed=SEED),
        "licence": DIGITS_LICENCE,
        "source_url": "https://archive.ics.uci.edu/dataset/80/optical+recognition+of+handwritten+digits",
        "inputs": [{"name": "input", "dtype": "float32", "shape": [1, 1, 8, 8]}],
        "files": "calib.npz",
        "stacked": True,
    })


Box = tuple[int, int, int, int]


def _crop_boxes(width: int, height: int, count: int, rng: np.random.Generator) -> list[Box]:
    """The first box is the largest centred square; the others are random squares of 55-90%."""
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    boxes: list[Box] = [(left, top, left + side, top + side)]
    while len(boxes) < count:
        size = int(side * rng.uniform(0.55, 0.9))
        left = int(rng.integers(0, width - size + 1))
        top = int(rng.integers(0, height - size + 1))
        boxes.append((left, top, left + size, top + size))
    return boxes


def make_images(out: Path) -> None:
    """Write 32 JPEG crops (256x256, quality 90) of bundled photographs and their manifest."""
    import skimage
    import sklearn

    rng = np.random.default_rng(SEED)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.jpg"):
        old.unlink()
    sources = []
    for key, (package, relative, origin, licence) in PHOTOS.items():
        path = _package_file(package, relative)
        version = getattr(skimage if package == "skimage" else sklearn, "__version__", "?")
        with Image.open(path) as opened:
            photo = opened.convert("RGB")
        for number, box in enumerate(_crop_boxes(photo.width, photo.height, CROPS_PER_PHOTO[key], rng)):
            name = f"{key}_{number}.jpg"
            crop = photo.crop(box).resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
            crop.save(out / name, format="JPEG", quality=JPEG_QUALITY)
            sources.append({
                "file": name,
                "origin": f"{origin}; {package} {version} {relative}, crop box {list(box)} "
                          f"resized to {IMAGE_SIZE}x{IMAGE_SIZE}",
                "licence": licence,
            })
    _dump_yaml(out / "manifest.yaml", {
        "name": "photos-32",
        "kind": "images",
        "description": "32 real colour photographs (people, objects, animals, a launch, a city, flowers, "
                       "deep sky), 256x256 JPEG crops, preprocessed for a 224x224 ImageNet-style model.",
        "provenance": "Photographs bundled in the scikit-image and scikit-learn wheels (see sources); "
                      f"cropped and resized by scripts/make_calibration_data.py (seed {SEED}, "
                      f"JPEG quality {JPEG_QUALITY}).",
        "licence": "Mixed, per file (see sources): public domain, CC0 and CC BY 2.0.",
        "inputs": [{"name": "input", "dtype": "float32", "shape": [1, 3, 224, 224]}],
        "files": "*.jpg",
        "preprocess": {
            "resize_shorter": 256,
            "center_crop": 224,
            "scale": 1.0 / 255.0,
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
            "layout": "NCHW",
            "channel_order": "RGB",
            "dtype": "float32",
        },
        "sources": sources,
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("calibration_data"))
    args = parser.parse_args()
    make_digits(args.out / "digits")
    make_images(args.out / "images")
    print(f"wrote {args.out}/digits and {args.out}/images")


if __name__ == "__main__":
    main()
