"""An MLP trained here, deterministically, on the real digits in calibration_data/digits, with raw "ink" features.

The 64 pixels go through a hidden layer (64 ReLU units, values ~0-5); beside them the model feeds its
head 17 hand-made features in raw pixel counts (0-16 per pixel): the ink of each row and column
(0-128) and the total ink (up to ~400).  Mixing learned features with unnormalised counts is common
in small production models (tabular and sensor side-features), and it is exactly the outlier-channel
case that defeats per-tensor int8 activations: the ``Concat`` that joins both has one scale for all
81 values, set by the total-ink channel, so the 64 learned features keep only a few levels each.
Plain static INT8 loses top-1 accuracy on it (see docs/research.md); ``edgeopt tune`` wins it back
by keeping the few nodes around that tensor in float.  Training is seeded, single-threaded and
takes about half a second.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeopt.models.calibration import SHIPPED_DATA_DIR
from edgeopt.zoo.digits import train_on_digits

DATA_DIR = SHIPPED_DATA_DIR / "digits"
WIDTH = 64


class DigitsInkMLP(nn.Module):
    """8x8 grey digit (pixel/16) → [64 hidden ReLU features ‖ 17 ink counts] → 64 ReLU → 10 logits."""

    def __init__(self, width: int = WIDTH) -> None:
        super().__init__()
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(width + 17, width), nn.ReLU(), nn.Linear(width, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        counts = x * 16.0  # back to the raw 0..16 pixel counts of the UCI data
        ink = torch.cat([counts.sum(dim=3).flatten(1), counts.sum(dim=2).flatten(1),
                         counts.flatten(1).sum(1, keepdim=True)], dim=1)
        return self.head(torch.cat([self.hidden(x), ink], dim=1))


def train_digits_ink(epochs: int = 40, seed: int = 0, width: int = WIDTH) -> DigitsInkMLP:
    """Train on ``train.npz`` with Adam; deterministic for a given seed and torch build."""
    torch.manual_seed(seed)
    model = DigitsInkMLP(width)
    train_on_digits(model, epochs, seed)
    return model


def digits_ink() -> DigitsInkMLP:
    """Factory for ``edgeopt.zoo.digits_ink:digits_ink``."""
    return train_digits_ink()


def input_spec() -> list[tuple[str, tuple[int, ...], str]]:
    return [("input", (1, 1, 8, 8), "float32")]


def digits_ink_wide() -> DigitsInkMLP:
    """The same model at hidden width 512 (``edgeopt.zoo.digits_ink:digits_ink_wide``): big enough for a
    fallback's latency cost to be measured (the default width runs in ~10 µs)."""
    return train_digits_ink(width=512)
