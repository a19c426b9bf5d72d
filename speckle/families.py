"""Pattern families for the fibre simulator besides the bundled digits: letters, dots and bars,
as 16x16 SLM amplitudes in [0, 1], each with a fixed held-out split.

- letters: the 26 capitals and 26 small letters of DejaVu Sans Bold (the font matplotlib ships;
  nothing is downloaded), drawn white on black at 64x64, centred, and area-resampled to 16x16.
- dots: 1 to 4 Gaussian spots (sigma 0.8 to 1.4 px) at random places in the central 12x12.
- bars: 1 to 3 straight strokes (1 to 2 px wide) at random angles and offsets.
- random: binary pixels in the central 12x12, each on with a probability drawn per base in
  0.1 to 0.4: no shape at all, as the random patterns a transmission matrix is calibrated on.

Dots and bars come from a fixed pool of POOL_SIZE bases each, and random from one of
RANDOM_POOL, each drawn from its own seeded stream, so a base's index names the same pattern
everywhere. The split of every family follows
the digits' rule: base i is a test base when i % TEST_EVERY == TEST_EVERY - 1. The simulator
then shifts, rotates and scales a drawn base exactly as it does a digit.
"""

from __future__ import annotations

import importlib.util
import string
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from speckle.simulated import PATTERN_SIZE

FAMILIES = ("digits", "letters", "dots", "bars", "random")
TEST_EVERY = 5  # base i is held out when i % 5 == 4: 359 of the 1797 bundled digits (20%)
POOL_SIZE = 1000  # bases of the dots and bars families
RANDOM_POOL = 2000  # bases of the random family
RANDOM_FILL = (0.1, 0.4)  # the range of a random base's fraction of pixels on
LETTERS = string.ascii_uppercase + string.ascii_lowercase
FONT_FILE = "DejaVuSans-Bold.ttf"
RENDER = 64  # letters are drawn at 64x64, then area-resampled to 16x16
FAMILY_TAG = 0xFA31
# What each family's labels.csv calls the class of its base (digits: "digit").
CLASS_LABEL = {
    "digits": "digit",
    "letters": "letter",
    "dots": "dots",
    "bars": "bars",
    "random": "pixels",
}


def split_pool(n: int, split: str) -> np.ndarray:
    """Indices of a family's n bases in a split: train, test or all."""
    i = np.arange(n)
    if split == "all":
        return i
    if split == "train":
        return i[i % TEST_EVERY != TEST_EVERY - 1]
    if split == "test":
        return i[i % TEST_EVERY == TEST_EVERY - 1]
    raise ValueError(f"split must be one of train, test, all, got {split!r}")


def font_path() -> Path:
    """matplotlib's bundled DejaVu Sans Bold, found without importing matplotlib."""
    spec = importlib.util.find_spec("matplotlib")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / "mpl-data" / "fonts" / "ttf" / FONT_FILE
        if path.is_file():
            return path
    raise ValueError(f"the letters family needs matplotlib's {FONT_FILE}; install matplotlib")


def _downsample(img: np.ndarray) -> np.ndarray:
    small = Image.fromarray(img.astype(np.float32), mode="F").resize(
        (PATTERN_SIZE, PATTERN_SIZE), Image.Resampling.BOX
    )
    a = np.asarray(small, np.float32)
    return np.clip(a / max(float(a.max()), 1e-12), 0.0, 1.0)


@lru_cache(maxsize=1)
def letters() -> np.ndarray:
    """(52, 16, 16) letters A-Z, a-z; each glyph's box scaled to 13 of the 16 pixels."""
    font = ImageFont.truetype(str(font_path()), size=RENDER)
    out = []
    for ch in LETTERS:
        canvas = Image.new("L", (2 * RENDER, 2 * RENDER), 0)
        ImageDraw.Draw(canvas).text((RENDER // 2, RENDER // 4), ch, fill=255, font=font)
        box = canvas.getbbox()
        glyph = canvas.crop(box)
        w, h = glyph.size
        side = max(w, h)
        fit = RENDER * 13 // PATTERN_SIZE
        glyph = glyph.resize(
            (max(1, round(w * fit / side)), max(1, round(h * fit / side))),
            Image.Resampling.LANCZOS,
        )
        square = Image.new("L", (RENDER, RENDER), 0)
        square.paste(glyph, ((RENDER - glyph.size[0]) // 2, (RENDER - glyph.size[1]) // 2))
        out.append(_downsample(np.asarray(square, np.float32) / 255.0))
    a = np.stack(out)
    a.flags.writeable = False
    return a


def _grid() -> tuple[np.ndarray, np.ndarray]:
    y, x = np.indices((PATTERN_SIZE, PATTERN_SIZE), dtype=np.float64)
    return y, x


@lru_cache(maxsize=1)
def dots() -> tuple[np.ndarray, np.ndarray]:
    """(POOL_SIZE, 16, 16) dot patterns and their dot counts."""
    rng = np.random.default_rng([FAMILY_TAG, 1])
    y, x = _grid()
    out = np.zeros((POOL_SIZE, PATTERN_SIZE, PATTERN_SIZE), np.float32)
    counts = rng.integers(1, 5, POOL_SIZE)
    for i, k in enumerate(counts):
        img = np.zeros_like(y)
        for _ in range(k):
            cy, cx = rng.uniform(2, PATTERN_SIZE - 3, 2)
            s = rng.uniform(0.8, 1.4)
            img = np.maximum(img, np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * s * s)))
        out[i] = img / img.max()
    out.flags.writeable = False
    return out, counts


@lru_cache(maxsize=1)
def bars() -> tuple[np.ndarray, np.ndarray]:
    """(POOL_SIZE, 16, 16) stroke patterns and their stroke counts."""
    rng = np.random.default_rng([FAMILY_TAG, 2])
    y, x = _grid()
    c = (PATTERN_SIZE - 1) / 2
    out = np.zeros((POOL_SIZE, PATTERN_SIZE, PATTERN_SIZE), np.float32)
    counts = rng.integers(1, 4, POOL_SIZE)
    for i, k in enumerate(counts):
        img = np.zeros_like(y)
        for _ in range(k):
            th = rng.uniform(0, np.pi)
            offset = rng.uniform(-4, 4)
            half = rng.uniform(0.5, 1.0)  # half width, px
            length = rng.uniform(4, 6.5)  # half length, px
            along = (x - c) * np.cos(th) + (y - c) * np.sin(th)
            across = -(x - c) * np.sin(th) + (y - c) * np.cos(th) - offset
            inside = np.clip(half + 0.5 - np.abs(across), 0, 1)
            inside *= np.clip(length + 0.5 - np.abs(along), 0, 1)
            img = np.maximum(img, inside)
        out[i] = img / max(img.max(), 1e-12)
    out.flags.writeable = False
    return out, counts


@lru_cache(maxsize=1)
def random_pixels() -> tuple[np.ndarray, np.ndarray]:
    """(RANDOM_POOL, 16, 16) binary random patterns and their counts of pixels on."""
    rng = np.random.default_rng([FAMILY_TAG, 3])
    out = np.zeros((RANDOM_POOL, PATTERN_SIZE, PATTERN_SIZE), np.float32)
    fill = rng.uniform(*RANDOM_FILL, RANDOM_POOL)
    on = rng.random((RANDOM_POOL, PATTERN_SIZE - 4, PATTERN_SIZE - 4)) < fill[:, None, None]
    out[:, 2:-2, 2:-2] = on
    counts = on.sum((1, 2))
    empty = counts == 0  # a base with no pixel on would be a dark SLM: light its centre
    out[empty, PATTERN_SIZE // 2, PATTERN_SIZE // 2] = 1.0
    out.flags.writeable = False
    return out, np.maximum(counts, 1)


def family_bases(family: str) -> tuple[np.ndarray, np.ndarray]:
    """A non-digit family's bases (k, 16, 16) and each base's class (letter index, dot or bar
    count). The digits are speckle.slm_patterns' own."""
    if family == "letters":
        bases = letters()
        return bases, np.arange(len(bases))
    if family == "dots":
        return dots()
    if family == "bars":
        return bars()
    if family == "random":
        return random_pixels()
    raise ValueError(
        f"pattern family must be one of {', '.join(FAMILIES[1:])} here, got {family!r}"
    )
