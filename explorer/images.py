"""Pictures the app sends: lossless PNGs of model-sized images and the traversal grid.

PNG rather than JPEG: JPEG's blocking artefacts look like speckle."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from explorer.latent_ops import tile, traverse

if TYPE_CHECKING:
    from vae.model import VAE

GRID_WIDTH = 900
GRID_HEIGHT = 1200


def to_png(img: np.ndarray, scale: int = 1) -> bytes:
    """Lossless PNG of a [0, 1] gray (H, W) image, enlarged `scale`× with nearest-neighbour so
    that speckle grains stay sharp. Fast compression: these are made on every slider move and
    sent over loopback or a LAN."""
    im = Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8))
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def palette_png(indices: np.ndarray, palette: list[int]) -> bytes:
    """A PNG of palette indices: a sixth of the encode time of the same picture in RGB."""
    im = Image.fromarray(indices, "P")
    im.putpalette(palette)
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def traversal_grid(
    model: VAE, z0: np.ndarray, dims: tuple[int, ...], steps: int, scale: np.ndarray
) -> bytes:
    """The dims × steps traversal grid from z0, each dim moved from −3σ to +3σ (σ = `scale`, the
    spread of μ per dim), as a PNG enlarged by a whole factor to about GRID_WIDTH pixels wide but
    never past GRID_HEIGHT tall (64 dims × 3 steps would otherwise make a 16k-pixel-tall image),
    and never below the model's size."""
    # Lazy: a cached atlas opens without torch (docs/architecture.md).
    from vae.inference import decode

    values = np.linspace(-3, 3, steps)
    frames = decode(model, traverse(z0, list(dims), values, "sigma", scale))  # (dims·steps, H, W)
    h, w = frames.shape[-2:]
    enlarge = max(1, min(GRID_WIDTH // (steps * w), GRID_HEIGHT // (len(dims) * h)))
    return to_png(tile(frames, len(dims), steps), scale=enlarge)
