"""Calibration/eval inputs for the example PaddleOCR text-direction classifier (examples/models/).

``photo_strips`` is a calibration entry point (``edgeopt.zoo.ocr_strips:photo_strips``): it cuts
48x192 horizontal strips from the shipped real photos (calibration_data/images) and normalises them
the way PaddleOCR's classifier expects (RGB, ``(x / 255 - 0.5) / 0.5``, NCHW).  They are real images,
not text lines, so they calibrate activation ranges but say nothing about the classifier's accuracy.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from edgeopt.models.calibration import SHIPPED_DATA_DIR

HEIGHT, WIDTH = 48, 192


def photo_strips(per_image: int = 2) -> Iterator[dict[str, np.ndarray]]:
    """Yield ``{"x": (1, 3, 48, 192) float32}`` feeds, ``per_image`` strips from each shipped photo."""
    from PIL import Image

    for path in sorted((SHIPPED_DATA_DIR / "images").glob("*.jpg")):
        with Image.open(path) as image:
            rgb = image.convert("RGB")
            band = rgb.height // (per_image + 1)
            for index in range(per_image):
                top = band * index + band // 2
                strip = rgb.crop((0, top, rgb.width, top + rgb.width // 4)).resize((WIDTH, HEIGHT),
                                                                                   Image.Resampling.BILINEAR)
                pixels = np.asarray(strip, dtype=np.float32) / 255.0
                yield {"x": ((pixels - 0.5) / 0.5).transpose(2, 0, 1)[None].copy()}
