"""A small CNN trained here, deterministically, on the real handwritten digits shipped in calibration_data/digits.

Its task accuracy on the held-out eval split (360 real digits) is reported for every variant,
so a quantized variant's accuracy cost is measured, not assumed.  Training takes a few seconds
on one CPU core and is seeded, so the same weights come out every time.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgeopt.models.calibration import SHIPPED_DATA_DIR, load_eval_split

DATA_DIR = SHIPPED_DATA_DIR / "digits"


class DigitsCNN(nn.Module):
    """Two 3x3 convolutions, a max-pool and two fully connected layers: 8x8 grey digit → 10 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def train_on_digits(model: nn.Module, epochs: int, seed: int) -> nn.Module:
    """Train ``model`` on the shipped ``train.npz`` with Adam (lr 3e-3, batch 64); deterministic for a
    given seed and torch build (one thread, seeded shuffles)."""
    images, labels = load_eval_split(DATA_DIR / "train.npz")
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    generator = torch.Generator().manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: bit-reproducible reductions
    try:
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=generator)
            for start in range(0, len(x), 64):
                index = order[start:start + 64]
                optimizer.zero_grad()
                loss = nn.functional.cross_entropy(model(x[index]), y[index])
                loss.backward()
                optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def train_digits_cnn(epochs: int = 30, seed: int = 0) -> DigitsCNN:
    """The digits CNN, trained on ``train.npz``."""
    torch.manual_seed(seed)
    model = DigitsCNN()
    train_on_digits(model, epochs, seed)
    return model


def digits_cnn() -> DigitsCNN:
    """The default task model (factory for ``edgeopt.zoo.digits:digits_cnn``)."""
    return train_digits_cnn()


def input_spec() -> list[tuple[str, tuple[int, ...], str]]:
    return [("input", (1, 1, 8, 8), "float32")]
