"""A ResNet-18-class image classifier (224x224 RGB, 1000 classes) with seeded weights.

It stands in for an edge perception backbone in the latency story: the real ResNet-18
topology (BasicBlocks 2-2-2-2, 1.8 GMACs at 224x224), defined here so nothing is downloaded.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 topology; ``width`` scales every stage's channel count (1.0 is the standard net)."""

    def __init__(self, num_classes: int = 1000, width: float = 1.0) -> None:
        super().__init__()
        channels = [max(8, int(c * width)) for c in (64, 128, 256, 512)]
        self.stem = nn.Sequential(
            nn.Conv2d(3, channels[0], 7, 2, 3, bias=False),
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        layers: list[nn.Module] = []
        in_channels = channels[0]
        for index, out_channels in enumerate(channels):
            stride = 1 if index == 0 else 2
            layers += [BasicBlock(in_channels, out_channels, stride), BasicBlock(out_channels, out_channels, 1)]
            in_channels = out_channels
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


def _seeded_init(model: nn.Module, seed: int) -> None:
    """Kaiming weights and non-trivial batch-norm statistics, reproducible from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            fan_out = module.out_channels * module.kernel_size[0] * module.kernel_size[1]
            with torch.no_grad():
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * (2.0 / fan_out) ** 0.5)
        elif isinstance(module, nn.BatchNorm2d):
            with torch.no_grad():
                n = module.num_features
                module.weight.copy_(1.0 + 0.1 * torch.randn(n, generator=generator))
                module.bias.copy_(0.1 * torch.randn(n, generator=generator))
                assert module.running_mean is not None and module.running_var is not None
                module.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
                module.running_var.copy_(1.0 + 0.1 * torch.rand(n, generator=generator))
        elif isinstance(module, nn.Linear):
            with torch.no_grad():
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * 0.01)
                module.bias.zero_()


def resnet18(seed: int = 0) -> ResNet18:
    """The default image model: ResNet-18 at full width, seeded weights, eval mode."""
    model = ResNet18()
    _seeded_init(model, seed)
    return model.eval()


def input_spec() -> list[tuple[str, tuple[int, ...], str]]:
    """(name, shape, dtype) of the default image model's input."""
    return [("input", (1, 3, 224, 224), "float32")]
