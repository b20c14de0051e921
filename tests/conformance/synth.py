"""Offline, deterministic inputs for the conformance corpus: rendered text, speech-like audio, WordPiece ids.

Nothing here downloads anything.  Every function takes a ``numpy.random.Generator`` so that a seed fixes
the output (given the same Pillow, numpy and scipy versions: text rendering goes through Pillow's bundled
default font and FreeType, so another Pillow may move pixels slightly).
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SAMPLE_RATE = 16_000

#: Hand-written English sentences (no third-party text): OCR lines, document pages and tokeniser input.
SENTENCES: tuple[str, ...] = (
    "The quick brown fox jumps over the lazy dog.",
    "Please keep this door closed at all times.",
    "Invoice 2024-0117 is due on 14 March 2025.",
    "Platform 3 for the 08:45 service to Cambridge.",
    "Total amount: 1,284.50 EUR including VAT.",
    "Battery low: connect the charger within 10 minutes.",
    "How do I reset my password without the old one?",
    "The meeting moved to Thursday afternoon in room B12.",
    "Fresh bread and pastries baked every morning.",
    "Warning: high voltage inside, authorised staff only.",
    "Turn left after the bridge and follow the river path.",
    "Our quarterly revenue grew by 12 percent year over year.",
    "Store in a cool, dry place away from direct sunlight.",
    "Tickets are non-refundable but can be exchanged once.",
    "The museum is open daily from 9 am to 6 pm.",
    "Call 0800 555 0199 for free technical support.",
    "A small neural network can run on a microcontroller.",
    "Quantization reduces model size but may cost accuracy.",
    "Which laptop has the longest battery life this year?",
    "Recipes for a quick vegetarian dinner with lentils.",
    "Order #58213 has been shipped and will arrive tomorrow.",
    "The library will be closed for renovation until June.",
    "Speed limit 30 in residential areas, drive carefully.",
    "Remember to back up your files before the update.",
)

_WORDS = tuple(sorted({w.strip(".,:?#") for s in SENTENCES for w in s.split() if len(w.strip(".,:?#")) > 2}))


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled default font at ``size`` pixels (TrueType when Pillow has FreeType)."""
    return ImageFont.load_default(size=size)


def text_snippet(rng: np.random.Generator, min_chars: int = 5, max_chars: int = 28) -> str:
    """A contiguous run of words from one sentence, between ``min_chars`` and ``max_chars`` long."""
    words = SENTENCES[int(rng.integers(len(SENTENCES)))].split()
    start = int(rng.integers(len(words)))
    out = words[start]
    for word in words[start + 1:]:
        if len(out) + 1 + len(word) > max_chars:
            break
        out = f"{out} {word}"
    if len(out) < min_chars:
        out = f"{out} {_WORDS[int(rng.integers(len(_WORDS)))]}"
    return out[:max_chars]


def _colour(rng: np.random.Generator, low: int, high: int) -> tuple[int, int, int]:
    base = int(rng.integers(low, high))
    r, g, b = (int(np.clip(base + rng.integers(-25, 26), 0, 255)) for _ in range(3))
    return r, g, b


def add_noise(image: Image.Image, rng: np.random.Generator, sigma: float) -> Image.Image:
    """Gaussian sensor-like noise, clipped to 8 bits."""
    pixels = np.asarray(image, dtype=np.float32)
    pixels = pixels + rng.normal(0.0, sigma, pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode=image.mode)


def render_line(
    text: str, rng: np.random.Generator, *, size: int, background: Image.Image | None = None
) -> Image.Image:
    """One line of text, tightly framed (a few pixels of margin) as a text detector's crop would be."""
    fnt = font(size)
    left, top, right, bottom = (int(v) for v in fnt.getbbox(text))
    pad_x, pad_y = int(rng.integers(3, 10)), int(rng.integers(3, 8))
    width, height = right - left + 2 * pad_x, bottom - top + 2 * pad_y
    dark_on_light = rng.random() < 0.8
    if background is not None:
        canvas = background.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
        # wash the texture out so the text keeps its contrast, as on a printed label or a sign
        wash = Image.new("RGB", canvas.size, _colour(rng, 200, 250) if dark_on_light else _colour(rng, 10, 60))
        canvas = Image.blend(canvas, wash, 0.65)
    else:
        canvas = Image.new("RGB", (width, height), _colour(rng, 190, 255) if dark_on_light else _colour(rng, 0, 70))
    ink = _colour(rng, 0, 70) if dark_on_light else _colour(rng, 190, 255)
    ImageDraw.Draw(canvas).text((pad_x - left, pad_y - top), text, font=fnt, fill=ink)
    if rng.random() < 0.5:
        canvas = canvas.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 0.9))))
    return add_noise(canvas, rng, float(rng.uniform(2.0, 7.0)))


def wrap(text: str, fnt: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: int) -> list[str]:
    """Greedy word wrap to ``width`` pixels."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        trial = f"{current} {word}".strip()
        if current and fnt.getlength(trial) > width:
            lines.append(current)
            current = word
        else:
            current = trial
    if current:
        lines.append(current)
    return lines


def render_page(
    rng: np.random.Generator, width: int, height: int, *, photo: Image.Image | None = None, margin: int = 16
) -> Image.Image:
    """A document-like page: a heading, wrapped paragraphs of body text, optionally a photo figure."""
    paper = _colour(rng, 225, 256)
    page = Image.new("RGB", (width, height), paper)
    draw = ImageDraw.Draw(page)
    y = margin
    heading = font(int(rng.integers(max(12, height // 18), max(14, height // 11))))
    draw.text((margin, y), text_snippet(rng, 8, 22).upper(), font=heading, fill=_colour(rng, 0, 60))
    y += int(heading.getbbox("Ag")[3] * 1.6)
    body_size = int(rng.integers(max(9, height // 34), max(11, height // 20)))
    body = font(body_size)
    if photo is not None:
        fig_w = int(width * rng.uniform(0.3, 0.45))
        fig_h = int(fig_w * rng.uniform(0.6, 0.9))
        fig_x = width - margin - fig_w
        page.paste(photo.convert("RGB").resize((fig_w, fig_h), Image.Resampling.BILINEAR), (fig_x, y))
        text_right = fig_x - margin
        figure_bottom = y + fig_h
    else:
        text_right, figure_bottom = width - margin, -1
    ink = _colour(rng, 0, 70)
    while y + body_size < height - margin:
        paragraph = " ".join(SENTENCES[int(i)] for i in rng.integers(len(SENTENCES), size=int(rng.integers(2, 5))))
        right = text_right if y < figure_bottom else width - margin
        for line in wrap(paragraph, body, right - margin):
            if y + body_size >= height - margin:
                break
            draw.text((margin, y), line, font=body, fill=ink)
            y += int(body_size * 1.35)
            right = text_right if y < figure_bottom else width - margin
        y += body_size
    return add_noise(page, rng, float(rng.uniform(1.5, 5.0)))


def render_scene_text(rng: np.random.Generator, photo: Image.Image, width: int, height: int) -> Image.Image:
    """A photo with signs and captions on it: text regions of several sizes over real image content."""
    scene = photo.convert("RGB").resize((width, width), Image.Resampling.BILINEAR)
    top = int(rng.integers(0, max(1, width - height + 1)))
    scene = scene.crop((0, top, width, top + height))
    draw = ImageDraw.Draw(scene)
    for _ in range(int(rng.integers(3, 7))):
        fnt = font(int(rng.integers(14, 40)))
        text = text_snippet(rng, 4, 24)
        left, t, right, bottom = (int(v) for v in fnt.getbbox(text))
        w, h = right - left, bottom - t
        x = int(rng.integers(0, max(1, width - w - 12)))
        y = int(rng.integers(0, max(1, height - h - 12)))
        if rng.random() < 0.6:  # a sign or a label: a plate behind the text
            plate = _colour(rng, 180, 256) if rng.random() < 0.7 else _colour(rng, 0, 80)
            draw.rectangle((x, y, x + w + 12, y + h + 12), fill=plate)
            ink = _colour(rng, 0, 60) if sum(plate) > 380 else _colour(rng, 200, 256)
        else:  # a caption straight on the photo
            ink = _colour(rng, 220, 256) if rng.random() < 0.5 else _colour(rng, 0, 40)
        draw.text((x + 6 - left, y + 6 - t), text, font=fnt, fill=ink)
    return add_noise(scene, rng, float(rng.uniform(1.5, 4.0)))


def render_captcha(rng: np.random.Generator, width: int, height: int, alphabet: str, length: int) -> Image.Image:
    """A classic text captcha: jittered, rotated, coloured characters over noise, dots and lines."""
    image = Image.new("RGB", (width, height), _colour(rng, 200, 256))
    pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, 12, (height, width, 3)).astype(np.float32)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(2, 5))):  # interference curves
        xs = np.linspace(0, width, 12)
        ys = height / 2 + rng.uniform(-0.35, 0.35) * height * np.sin(xs / width * rng.uniform(2, 7) + rng.uniform(0, 6))
        points = list(zip(xs.tolist(), ys.tolist(), strict=True))
        draw.line(points, fill=_colour(rng, 40, 180), width=int(rng.integers(1, 3)))
    step = width / (length + 0.6)
    for i in range(length):
        char = alphabet[int(rng.integers(len(alphabet)))]
        fnt = font(int(rng.integers(int(height * 0.55), int(height * 0.8))))
        tile = Image.new("RGBA", (height, height), (0, 0, 0, 0))
        ImageDraw.Draw(tile).text((height * 0.2, height * 0.05), char, font=fnt, fill=(*_colour(rng, 0, 150), 255))
        tile = tile.rotate(float(rng.uniform(-28, 28)), resample=Image.Resampling.BICUBIC)
        x = int(step * (i + 0.3) + rng.integers(-3, 4))
        y = int(rng.integers(-int(height * 0.12), int(height * 0.12) + 1))
        image.paste(tile, (x, y), tile)
    for _ in range(int(width * height * 0.01)):  # speckles
        x, y = int(rng.integers(width)), int(rng.integers(height))
        draw.point((x, y), fill=_colour(rng, 0, 256))
    return image


def load_photos(directory: Path) -> list[Image.Image]:
    """The shipped calibration photos (sorted by name), decoded to RGB."""
    photos = []
    for path in sorted(directory.glob("*.jpg")):
        with Image.open(path) as opened:
            photos.append(opened.convert("RGB"))
    if not photos:
        raise FileNotFoundError(f"{directory}: no *.jpg photos (the repository ships them in calibration_data/images)")
    return photos


# ------------------------------------------------------------------------------------------------- audio

_VOWELS = (  # formant frequencies (Hz) and bandwidths of a few vowels, adult speaker
    ((730, 1090, 2440), (80, 90, 120)),   # a
    ((270, 2290, 3010), (60, 100, 120)),  # i
    ((300, 870, 2240), (60, 80, 110)),    # u
    ((530, 1840, 2480), (70, 90, 120)),   # e
    ((570, 840, 2410), (70, 80, 120)),    # o
)


def _resonator(signal: np.ndarray, freq: float, bandwidth: float, sample_rate: int) -> np.ndarray:
    from scipy.signal import lfilter

    r = math.exp(-math.pi * bandwidth / sample_rate)
    theta = 2 * math.pi * freq / sample_rate
    a = [1.0, -2 * r * math.cos(theta), r * r]
    return lfilter([1 - r], a, signal)


def _envelope(n: int, attack: int, release: int) -> np.ndarray:
    env = np.ones(n)
    attack, release = min(attack, n // 2), min(release, n // 2)
    if attack:
        env[:attack] = 0.5 - 0.5 * np.cos(np.linspace(0, math.pi, attack))
    if release:
        env[n - release:] = 0.5 + 0.5 * np.cos(np.linspace(0, math.pi, release))
    return env


def speech_like(rng: np.random.Generator, seconds: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Float32 mono audio in [-1, 1]: voiced syllables, fricatives, pauses, a tone and room noise.

    Voiced segments are a harmonic source on a drifting, jittered pitch (90-230 Hz) shaped by three
    formant resonators of a randomly chosen vowel; fricatives are high-passed noise bursts; pauses hold
    only background noise; one segment is a steady 1 kHz beep (a non-speech sound a VAD must reject).
    """
    from scipy.signal import butter, lfilter

    total = int(seconds * sample_rate)
    out = np.zeros(total)
    pos = int(rng.integers(int(0.1 * sample_rate), int(0.4 * sample_rate)))
    beep_done = False
    while pos < total:
        kind = rng.choice(["voiced", "voiced", "voiced", "fricative", "pause", "beep"])
        if kind == "beep" and beep_done:
            kind = "pause"
        length = {
            "voiced": rng.uniform(0.12, 0.35), "fricative": rng.uniform(0.05, 0.13),
            "pause": rng.uniform(0.15, 0.6), "beep": rng.uniform(0.2, 0.4),
        }[str(kind)]
        n = min(int(length * sample_rate), total - pos)
        if n <= 16:
            break
        t = np.arange(n) / sample_rate
        if kind == "voiced":
            f0 = rng.uniform(90, 230) * (1 + 0.08 * np.sin(2 * math.pi * rng.uniform(1, 4) * t))
            f0 *= 1 + 0.01 * rng.standard_normal(n).cumsum() / math.sqrt(n)
            phase = 2 * math.pi * np.cumsum(f0) / sample_rate
            source = np.zeros(n)
            for k in range(1, 40):
                if k * f0.max() < 0.45 * sample_rate:
                    source += np.sin(k * phase) / k
            formants, bands = _VOWELS[int(rng.integers(len(_VOWELS)))]
            voiced = np.zeros(n)
            for f, b, g in zip(formants, bands, (1.0, 0.6, 0.3), strict=True):
                voiced += _resonator(source, f, b, sample_rate) * g
            seg = voiced / (np.abs(voiced).max() + 1e-9) * rng.uniform(0.3, 0.8)
            seg *= _envelope(n, int(0.02 * sample_rate), int(0.04 * sample_rate))
        elif kind == "fricative":
            b, a = butter(4, rng.uniform(2500, 4500) / (sample_rate / 2), btype="high")
            seg = lfilter(b, a, rng.standard_normal(n)) * rng.uniform(0.05, 0.2)
            seg *= _envelope(n, int(0.01 * sample_rate), int(0.02 * sample_rate))
        elif kind == "beep":
            seg = 0.3 * np.sin(2 * math.pi * 1000 * t) * _envelope(n, 80, 80)
            beep_done = True
        else:
            seg = np.zeros(n)
        out[pos:pos + n] += seg
        pos += n
    # room noise: pink-ish (one-pole low-passed white) at roughly -40 dB plus a faint 50 Hz hum
    noise = lfilter([0.05], [1, -0.95], rng.standard_normal(total))
    out += noise * 0.01 / (noise.std() + 1e-9) + 0.002 * np.sin(2 * math.pi * 50 * np.arange(total) / sample_rate)
    out *= 0.6 / (np.abs(out).max() + 1e-9)
    return out.astype(np.float32)


def to_int16(audio: np.ndarray) -> np.ndarray:
    """16-bit PCM sample values (as the int16 a microphone driver hands over)."""
    return np.clip(np.round(audio * 32767), -32768, 32767).astype(np.int16)


# --------------------------------------------------------------------------------------------- WordPiece


class WordPiece:
    """BERT's uncased tokenisation: basic split (lower case, accents, punctuation) then greedy WordPiece."""

    def __init__(self, vocab_file: Path, max_chars_per_word: int = 100) -> None:
        tokens = vocab_file.read_text(encoding="utf-8").splitlines()
        self.vocab = {token: index for index, token in enumerate(tokens)}
        self.max_chars_per_word = max_chars_per_word
        for special in ("[PAD]", "[UNK]", "[CLS]", "[SEP]"):
            if special not in self.vocab:
                raise ValueError(f"{vocab_file}: special token {special} missing; not a BERT vocabulary")

    @staticmethod
    def _is_punctuation(char: str) -> bool:
        code = ord(char)
        if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
            return True
        return unicodedata.category(char).startswith("P")

    def basic(self, text: str) -> list[str]:
        """Lower case, strip accents, split on white space and around every punctuation mark."""
        text = unicodedata.normalize("NFD", text.lower())
        text = "".join(c for c in text if unicodedata.category(c) != "Mn")
        words: list[str] = []
        for chunk in text.split():
            current = ""
            for char in chunk:
                if self._is_punctuation(char):
                    if current:
                        words.append(current)
                    words.append(char)
                    current = ""
                else:
                    current += char
            if current:
                words.append(current)
        return words

    def wordpiece(self, word: str) -> list[str]:
        """Greedy longest-match-first pieces; ``[UNK]`` when the word cannot be covered."""
        if len(word) > self.max_chars_per_word:
            return ["[UNK]"]
        pieces: list[str] = []
        start = 0
        while start < len(word):
            end = len(word)
            piece = None
            while start < end:
                candidate = word[start:end] if start == 0 else f"##{word[start:end]}"
                if candidate in self.vocab:
                    piece = candidate
                    break
                end -= 1
            if piece is None:
                return ["[UNK]"]
            pieces.append(piece)
            start = end
        return pieces

    def encode(self, text: str, length: int) -> tuple[np.ndarray, np.ndarray]:
        """``[CLS] pieces [SEP]`` truncated/padded to ``length``: (input_ids, attention_mask), int64, (1, length)."""
        pieces = [p for word in self.basic(text) for p in self.wordpiece(word)][: length - 2]
        ids = [self.vocab["[CLS]"], *(self.vocab[p] for p in pieces), self.vocab["[SEP]"]]
        mask = [1] * len(ids) + [0] * (length - len(ids))
        ids += [self.vocab["[PAD]"]] * (length - len(ids))
        return np.asarray([ids], dtype=np.int64), np.asarray([mask], dtype=np.int64)


def pick(rng: np.random.Generator, items: Sequence[str], count: int) -> list[str]:
    """``count`` distinct items (fewer if there are fewer), in a seeded order."""
    order = rng.permutation(len(items))[:count]
    return [items[int(i)] for i in order]
