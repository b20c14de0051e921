"""The export corpus: real architectures as torchvision, timm and transformers build them (random weights, seeded,
no downloads; sizes shrunk where a 2-core machine needs it), each with the inputs a user would declare — natural
dynamic dims by name, example sizes as hints — and the exporter it goes through.

Each factory returns the library's own module, unwrapped, so its forward returns what the library returns
(tensors, dicts, ``ModelOutput``, lists of dicts, recurrent state).  Importing this module imports torch only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Entry:
    """One corpus model: its factory, ``--input`` declarations, exporter and what it covers."""

    name: str
    source: str  # the library and the class it builds
    covers: str
    inputs: tuple[str, ...]
    exporter: str = "dynamo"
    with_past: bool = False

    @property
    def factory(self) -> str:
        return f"tests.export_corpus.models:{self.name.replace('-', '_')}"


def _seed() -> None:
    torch.manual_seed(0)


# ----------------------------------------------------------------------------------------------- torchvision


def resnet18() -> nn.Module:
    from torchvision.models import resnet18 as build

    _seed()
    return build(weights=None, num_classes=100).eval()


def mobilenet_v3_small() -> nn.Module:
    from torchvision.models import mobilenet_v3_small as build

    _seed()
    return build(weights=None).eval()


def lraspp_mobilenet_v3() -> nn.Module:
    """Segmentation: forward returns ``{"out": logits}``."""
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    _seed()
    return lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=5).eval()


def ssdlite_detector() -> nn.Module:
    """Detection: forward takes ``images: list[Tensor]`` and returns a list of dicts (boxes, scores, labels).  The
    batch-norm statistics are estimated on a few random images, as training would: at torchvision's own
    initialisation (running mean 0, variance 1) the backbone's features fade to 1e-13, every score is exactly
    1/num_classes, and comparing detections ordered by tied scores would test the tie-breaking, not the export."""
    from torchvision.models.detection import ssdlite320_mobilenet_v3_large

    _seed()
    model = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=4,
                                          detections_per_img=10, score_thresh=0.05)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None  # a cumulative average over the batches below
    model.train()
    with torch.no_grad():
        for _ in range(3):
            images, _ = model.transform(list(torch.rand(4, 3, 320, 320)))
            model.head(list(model.backbone(images.tensors).values()))
    return model.eval()


# ------------------------------------------------------------------------------------------------------ timm


def vit_tiny() -> nn.Module:
    import timm

    _seed()
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64, num_classes=10).eval()


def timm_mobilenetv3() -> nn.Module:
    import timm

    _seed()
    return timm.create_model("mobilenetv3_small_050", pretrained=False, num_classes=10).eval()


# ---------------------------------------------------------------------------------------------- transformers


def bert_encoder() -> nn.Module:
    """An encoder taking ids and a mask; returns ``BaseModelOutputWithPooling``."""
    from transformers import BertConfig, BertModel

    _seed()
    config = BertConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128, max_position_embeddings=128)
    return BertModel(config).eval()


def distilbert_classifier() -> nn.Module:
    """A sequence classifier: ``SequenceClassifierOutput`` with logits."""
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    _seed()
    config = DistilBertConfig(vocab_size=1000, dim=64, n_layers=2, n_heads=4, hidden_dim=128,
                              max_position_embeddings=128, num_labels=3)
    return DistilBertForSequenceClassification(config).eval()


def gpt2_causal_lm() -> nn.Module:
    """A causal LM returning ``CausalLMOutputWithCrossAttentions`` (logits; no cache)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    _seed()
    config = GPT2Config(vocab_size=500, n_positions=128, n_embd=64, n_layer=2, n_head=4, bos_token_id=0,
                        eos_token_id=0, use_cache=False)
    return GPT2LMHeadModel(config).eval()


def gpt2_causal_lm_with_past() -> nn.Module:
    """The same causal LM with its key/value cache: exported with ``--with-past``."""
    from transformers import GPT2Config, GPT2LMHeadModel

    _seed()
    config = GPT2Config(vocab_size=500, n_positions=128, n_embd=64, n_layer=2, n_head=4, bos_token_id=0,
                        eos_token_id=0, use_cache=True)
    return GPT2LMHeadModel(config).eval()


def wav2vec2_audio() -> nn.Module:
    """An audio encoder over raw samples (time dynamic); returns ``Wav2Vec2BaseModelOutput``."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    _seed()
    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(32, 32, 32), conv_stride=(5, 4, 4), conv_kernel=(10, 4, 4),
                            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, do_stable_layer_norm=True,
                            feat_extract_norm="layer")
    return Wav2Vec2Model(config).eval()


class KeywordOnlyClassifier(nn.Module):
    """User code around a transformers encoder whose forward takes keyword-only inputs (a common wrapper)."""

    def __init__(self) -> None:
        super().__init__()
        from transformers import BertConfig, BertForSequenceClassification

        config = BertConfig(vocab_size=1000, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=64, num_labels=2)
        self.encoder = BertForSequenceClassification(config)

    def forward(self, *, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.encoder(input_ids=input_ids, attention_mask=attention_mask).logits
        return {"logits": logits, "probabilities": logits.softmax(-1)}


def keyword_only_classifier() -> nn.Module:
    _seed()
    return KeywordOnlyClassifier().eval()


# --------------------------------------------------------------------------------------------------- torch.nn


class KeywordSpotterGRU(nn.Module):
    """A streaming keyword spotter: log-mel frames and the GRU state in, class logits and the new state out."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(input_size=40, hidden_size=32, num_layers=2, batch_first=True)
        self.head = nn.Linear(32, 12)

    def forward(self, frames: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, new_state = self.gru(frames, state)
        return self.head(out[:, -1]), new_state


def gru_keyword_spotter() -> nn.Module:
    _seed()
    return KeywordSpotterGRU().eval()


ENTRIES: tuple[Entry, ...] = (
    Entry("resnet18", "torchvision ResNet-18", "classification CNN, image size dynamic",
          ("x:batch x 3 x height=96 x width=96",)),
    Entry("mobilenet-v3-small", "torchvision MobileNetV3-Small", "classification CNN (hardswish, SE)",
          ("x:batch x 3 x height=96 x width=96",)),
    Entry("lraspp-mobilenet-v3", "torchvision LR-ASPP MobileNetV3-Large", "segmentation returning a dict",
          ("input:batch x 3 x height=128 x width=128",)),
    Entry("ssdlite-detector", "torchvision SSDlite320 MobileNetV3-Large", "detector: list input, list of dicts",
          ("images.0:3 x height=320 x width=320",), exporter="torchscript"),
    Entry("vit-tiny", "timm vit_tiny_patch16_224 (64x64)", "vision transformer", ("x:batch x 3 x 64 x 64",)),
    Entry("timm-mobilenetv3", "timm mobilenetv3_small_050", "timm CNN, image size dynamic",
          ("x:batch x 3 x height=96 x width=96",)),
    Entry("bert-encoder", "transformers BertModel", "encoder: ids + mask, batch and sequence dynamic, ModelOutput",
          ("input_ids:batch x seq=32:int64", "attention_mask:batch x seq:int64")),
    Entry("distilbert-classifier", "transformers DistilBertForSequenceClassification", "classifier, ModelOutput",
          ("input_ids:batch x seq=32:int64", "attention_mask:batch x seq:int64")),
    Entry("gpt2-causal-lm", "transformers GPT2LMHeadModel", "causal LM without past, ids + mask",
          ("input_ids:batch x seq=32:int64", "attention_mask:batch x seq:int64")),
    Entry("gpt2-causal-lm-with-past", "transformers GPT2LMHeadModel", "causal LM with its key/value cache "
          "(--with-past: past length dynamic)", ("input_ids:batch x seq=8:int64", "attention_mask:batch x seq:int64"),
          with_past=True),
    Entry("wav2vec2-audio", "transformers Wav2Vec2Model", "audio encoder, time dynamic",
          ("input_values:batch x time=8000",)),
    Entry("keyword-only-classifier", "user wrapper over transformers BertForSequenceClassification",
          "forward with keyword-only inputs", ("input_ids:batch x seq=16:int64", "attention_mask:batch x seq:int64")),
    Entry("gru-keyword-spotter", "torch.nn.GRU keyword spotter", "recurrent state in and out, time dynamic",
          ("frames:batch x time=50 x 40", "state:2 x batch x 32")),
)


PAST_LENGTH = 16  # the cached length of a --with-past entry's calibration samples


def calibration_samples(entry: Entry, count: int = 8) -> list[dict[str, object]]:
    """``count`` in-domain samples of ``entry``'s inputs at their example sizes, batch 1: floats standard normal
    (a decoder's cached keys and values too), token ids below 100 (every corpus vocabulary is larger), masks of
    ones, the recurrent state zeros."""
    import numpy as np

    from edgeopt.models.modelref import parse_inputs

    declared = parse_inputs(list(entry.inputs))
    specs = list(declared.specs)
    sizes = {**declared.sizes, "batch": 1, "past": PAST_LENGTH}
    if entry.with_past:  # a decoder's cache of 16 earlier tokens
        from edgeopt.models.torch_io import with_past_inputs

        specs = with_past_inputs(globals()[entry.factory.rsplit(":", 1)[1]](), specs, entry.name)
    specs = [type(s)(s.name, tuple(sum(sizes[p] for p in d.split("+")) if isinstance(d, str) else d
                                   for d in s.shape), s.dtype) for s in specs]
    rng = np.random.default_rng(0)
    samples = []
    for _ in range(count):
        sample: dict[str, object] = {}
        for spec in specs:
            shape = tuple(int(d) for d in spec.shape)
            if spec.dtype.startswith("int"):
                sample[spec.name] = (np.ones(shape, spec.dtype) if "mask" in spec.name
                                     else rng.integers(0, 100, shape).astype(spec.dtype))
            elif spec.name == "state":
                sample[spec.name] = np.zeros(shape, np.float32)
            else:
                sample[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        samples.append(sample)
    return samples


def _calibration_entry_point(entry: Entry):  # type: ignore[no-untyped-def]
    return lambda: calibration_samples(entry)


for _entry in ENTRIES:  # calibration_<factory>: the --calibration entry point of each corpus model
    globals()[f"calibration_{_entry.factory.rsplit(':', 1)[1]}"] = _calibration_entry_point(_entry)
