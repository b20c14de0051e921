"""Tiny PyTorch modules for export tests; importing this module imports torch (slow tests only)."""

from __future__ import annotations

import torch
from torch import nn

from edgeopt.models.input_spec import InputSpec

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


class DictHead(nn.Module):
    """A segmentation-style model: forward returns a dict ``{"out": mask logits, "aux": pooled}`` (and a None)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(CHANNELS, 4, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
        out = self.conv(x)
        return {"out": out, "aux": out.mean(dim=(2, 3)), "unused": None}


class RecurrentState(nn.Module):
    """An LSTM that takes and returns its state: ``out, (h_n, c_n)``; the batch is dim 1 of ``h0``/``c0``."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size=12, hidden_size=8, num_layers=2, batch_first=True)

    def forward(self, x: torch.Tensor, h0: torch.Tensor,
                c0: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        return self.lstm(x, (h0, c0))  # type: ignore[no-any-return]


class TokenModel(nn.Module):
    """Token ids through a 5-row table, weighted by an integer mask; keyword-only inputs.  Ids outside the table
    raise in PyTorch, so an export whose example ids leave the table fails."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(5, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, *, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = self.embed(input_ids) * attention_mask.unsqueeze(-1).to(torch.float32)
        return {"logits": self.head(hidden), "pooled": hidden.sum(dim=1)}


def _seeded(cls: type[nn.Module]) -> nn.Module:
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(0)
        return cls().eval()
    finally:
        torch.random.set_rng_state(state)


def dict_head() -> nn.Module:
    return _seeded(DictHead)


def recurrent_state() -> nn.Module:
    return _seeded(RecurrentState)


def token_model() -> nn.Module:
    return _seeded(TokenModel)


def tiny_bert() -> nn.Module:
    """A transformers BertModel from a tiny config (random weights, no download): returns a ``ModelOutput``."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32)
    return BertModel(config).eval()


def with_examples() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A factory returning ``(module, example_inputs)``."""
    return tiny_cnn(), {"x": torch.zeros(1, CHANNELS, HEIGHT, WIDTH)}


def raises() -> nn.Module:
    """A factory whose own code fails."""
    raise RuntimeError("checkpoint weights.pt not found")


def tiny_gpt2() -> nn.Module:
    """A transformers GPT2LMHeadModel from a tiny config that returns its key/value cache."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=50, n_positions=32, n_embd=16, n_layer=2, n_head=2, bos_token_id=0,
                        eos_token_id=0, use_cache=True)
    return GPT2LMHeadModel(config).eval()


class DictInput(nn.Module):
    """``forward(batch)`` reading a dict, and a list parameter, as collate functions and detectors pass them."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 2)

    def forward(self, batch: dict[str, torch.Tensor], extras: list[torch.Tensor]) -> torch.Tensor:
        return self.proj(batch["features"]) * batch["scale"] + extras[0].sum() - extras[1].mean()


def dict_input() -> nn.Module:
    return _seeded(DictInput)


class DataDependent(nn.Module):
    """A branch on a tensor's value: torch.export cannot capture it; TorchScript's tracer records one branch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return x * 2
        return x - 1


def data_dependent() -> nn.Module:
    return DataDependent().eval()
