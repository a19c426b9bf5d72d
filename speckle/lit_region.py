"""The lit region of a dataset's frames, where speckle statistics are taken.

A fibre's frames are speckle inside the core and dark cladding around it; statistics over the
whole frame mix the two (contrast 1.4 instead of 1). The mask comes from the dataset itself, in
this order:
1. `mask.png` at the folder's root (non-zero = lit), resized to the model's image size;
2. the simulator's `simulation.json`, which records the core's diameter as a fraction of the frame;
3. the thresholded mean image of the frames (`frames.lit_mask`), which is the whole frame
   for speckle lit everywhere.
A single upload uses its dataset's mask when the sizes match, otherwise a threshold of its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from frames import read_image

MASK_FILE = "mask.png"


@dataclass(frozen=True)
class LitRegion:
    mask: np.ndarray  # (H, W) bool
    source: str  # what it came from, shown next to every statistic that used it

    @property
    def fraction(self) -> float:
        return float(self.mask.mean())


def dataset_region(root: str | Path | None, size: int, images: np.ndarray | None) -> LitRegion:
    """The lit region of the dataset at `root` at the model's `size` (see the module docstring)."""
    # Lazy: scipy.ndimage stays off `import views.state` (cached open, docs/architecture.md).
    from frames.lit_mask import lit_mask

    root = Path(root) if root is not None else None
    if root is not None and (root / MASK_FILE).is_file():
        return LitRegion(_read_mask(root / MASK_FILE, size), MASK_FILE)
    core = simulated_core(root) if root is not None else None
    if core is not None:
        # Lazy: the fibre model (scipy.fft) stays off the cached open.
        from speckle.gaussian_fibre import core_mask

        return LitRegion(core_mask(size, core), f"simulation.json core ({core:g} of the width)")
    if images is not None and len(images):
        mask = lit_mask(images)
        return LitRegion(mask, "whole frame" if mask.all() else "thresholded mean image")
    return LitRegion(np.ones((size, size), dtype=bool), "whole frame")


def simulated_core(folder: Path) -> float | None:
    """The fibre core's diameter, as a fraction of the frame, that a simulated set's
    `simulation.json` in `folder` records; None for any other folder."""
    try:
        meta = json.loads((folder / "simulation.json").read_text())
    except (OSError, ValueError):
        return None
    core = meta.get("core") if isinstance(meta, dict) and meta.get("kind") == "mmf" else None
    return float(core) if isinstance(core, int | float) else None


def upload_region(image: np.ndarray, dataset: LitRegion | None) -> LitRegion:
    """A single frame's lit region: its dataset's when the sizes match, else its own threshold."""
    # Lazy: scipy.ndimage stays off `import views.state` (cached open, docs/architecture.md).
    from frames.lit_mask import lit_mask

    if dataset is not None and dataset.mask.shape == image.shape:
        return dataset
    mask = lit_mask(image)
    return LitRegion(mask, "whole frame" if mask.all() else "thresholded upload")


def _read_mask(path: Path, size: int) -> np.ndarray:
    pixels = read_image(path).pixels
    h, w = pixels.shape
    side = min(h, w)  # centre-cropped to a square, as ImageFolder does with the frames
    top, left = (h - side) // 2, (w - side) // 2
    pixels = pixels[top : top + side, left : left + side]
    img = Image.fromarray((pixels > 0).astype(np.uint8) * 255)
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.NEAREST)
    mask = np.asarray(img) > 127
    if not mask.any():
        raise ValueError(f"{path}: the mask has no lit pixel")
    return mask
