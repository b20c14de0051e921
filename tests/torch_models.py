"""Tiny PyTorch modules for export tests; importing this module imports torch (slow tests only)."""

from __future__ import annotations

import torch
from torch import nn

from edgeopt.models.calibration import InputSpec

INPUT_NAME = "input"
CHANNELS, HEIGHT, WIDTH = 3, 16, 16
CLASSES = 10


class TinyCNN(nn.Module):
    """Conv -> ReLU -> global average pool -> Linear: the torch twin of ``zoo.tiny_conv_model``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(CHANNELS, 8, kernel_size=3, padding=1)
        self.fc = nn.Linear(8, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(x))
        x = torch.mean(x, dim=(2, 3))
        return self.fc(x)


def tiny_cnn(seed: int = 0) -> TinyCNN:
    """A ``TinyCNN`` with seeded weights, in eval mode."""
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = TinyCNN()
    finally:
        torch.random.set_rng_state(generator_state)
    return model.eval()


def input_spec(batch: int | str = 1) -> list[InputSpec]:
    """The one input of ``TinyCNN``; pass ``batch='batch'`` for a symbolic batch dimension."""
    return [InputSpec(INPUT_NAME, (batch, CHANNELS, HEIGHT, WIDTH), "float32")]
