"""Preprocessing exactly as in training: centre-crop to a square, resize to size×size (area
averaging when shrinking, like camera pixel binning; bilinear when enlarging), then normalize to
[0, 1]. The three normalizations and what each does to the speckle contrast K = σ/μ:

- ``max`` (per-image max; what many users do): x = I / max(I). A pure scale, so K is kept within
  each image, but a single hot pixel sets the scale: the mean brightness the network sees varies a
  lot between frames, and for fully developed speckle max(I) ≈ ⟨I⟩·ln(N) leaves most pixels dark.
- ``mean`` (per-image mean of the lit region): x = I / (mean_scale·⟨I⟩_lit), clipped to 1, where
  ⟨I⟩_lit is the mean over the frame's lit region (`frames.lit_mask` of the frame: a
  fibre's core, or the whole frame for speckle lit everywhere). Every frame has the same mean in
  its lit region, so frames are comparable; K is kept except that pixels above
  mean_scale·⟨I⟩_lit are clipped (for exponential statistics P(I > 5⟨I⟩) = e⁻⁵ ≈ 0.7% of the lit
  pixels). A mean over the whole frame would include a fibre's dark cladding and put the clip
  near 3⟨I⟩ of the core, clipping several percent of it.
- ``fixed`` (fixed range): x = (I − low)/(high − low), clipped; `high` defaults to the file's full
  scale (255, 65535, or the data max for float data). Keeps absolute intensities, including the
  overall power, comparable across frames, but dark frames use few grey levels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from frames.image import RawImage, image_from_array

NORMALIZATIONS = ("max", "mean", "fixed")


@dataclass(frozen=True)
class Normalization:
    """How intensities map to [0, 1]; see the module docstring for each mode's effect on K."""

    mode: str = "max"  # "max" | "mean" | "fixed"
    mean_scale: float = 5.0  # "mean": x = I / (mean_scale · ⟨I⟩), clipped to [0, 1]
    low: float = 0.0  # "fixed": x = (I − low) / (high − low), clipped
    high: float | None = None  # None ⇒ the file's full-scale value

    def __post_init__(self) -> None:
        if self.mode not in NORMALIZATIONS:
            raise ValueError(
                f"normalization mode must be one of {NORMALIZATIONS}, got {self.mode!r}"
            )
        for name in ("mean_scale", "low", "high"):
            value = getattr(self, name)
            if value is None and name == "high":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                raise ValueError(f"normalization {name} must be a number, got {value!r}")
            if not np.isfinite(value):
                raise ValueError(f"normalization {name} must be finite, got {value!r}")
            # Plain floats, so equal settings give equal to_dict() output and fingerprints.
            object.__setattr__(self, name, float(value))
        if self.mean_scale <= 0:
            raise ValueError(f"normalization mean_scale must be > 0, got {self.mean_scale}")
        if self.high is not None and self.high <= self.low:
            raise ValueError(
                f"normalization needs high > low, got low={self.low}, high={self.high}"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Normalization:
        if not isinstance(d, dict):
            raise ValueError(f"normalization must be a mapping, got {d!r}")
        unknown = set(d) - {"mode", "mean_scale", "low", "high"}
        if unknown:
            raise ValueError(f"unknown normalization keys {sorted(unknown)}")
        return cls(**d)


def preprocess(
    raw: RawImage | np.ndarray, size: int, norm: Normalization
) -> tuple[np.ndarray, list[str]]:
    """Centre-crop to a square, resize to size×size, normalize: ((size, size) float32 in [0, 1],
    notes). A bare array gets the full scale of its dtype, like a file would."""
    if not isinstance(raw, RawImage):
        raw = image_from_array(np.asarray(raw), "image")
    if int(size) < 1:
        raise ValueError(f"size must be ≥ 1, got {size}")
    size = int(size)
    img, notes = raw.pixels, list(raw.notes)
    if img.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {img.shape}")
    h, w = img.shape
    if h != w:
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        img = img[top : top + s, left : left + s]
        notes.append(f"cropped {w}×{h} → {s}×{s} (centre)")
    s = img.shape[0]
    if s != size:
        # Area averaging mimics camera pixel binning and keeps speckle statistics better than
        # bicubic (no ringing, no negative lobes) when shrinking.
        shrink = s > size
        method = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
        im = Image.fromarray(np.ascontiguousarray(img, np.float32))  # mode "F"
        img = np.asarray(im.resize((size, size), method))
        notes.append(f"resized {s}×{s} → {size}×{size} ({'area' if shrink else 'bilinear'})")
    return normalize(img, norm, raw.full_scale), notes


def normalize(img: np.ndarray, norm: Normalization, full_scale: float = 1.0) -> np.ndarray:
    """The intensity mapping alone (no crop or resize): float32 in [0, 1]."""
    img = np.asarray(img, np.float32)
    if norm.mode == "max":
        m = float(img.max())
        out = img / m if m > 0 else np.zeros_like(img)
    elif norm.mode == "mean":
        # Lazy: scipy.ndimage is 0.19 s of `import frames`, and only this mode needs it.
        from frames.lit_mask import lit_mask

        m = float(img[lit_mask(img)].mean())
        out = img / (norm.mean_scale * m) if m > 0 else np.zeros_like(img)
    else:
        high = norm.high if norm.high is not None else full_scale
        if high <= norm.low:
            raise ValueError(f"fixed range: low={norm.low} is not below high={high}")
        out = (img - norm.low) / (high - norm.low)
    return np.clip(out, 0.0, 1.0).astype(np.float32)
