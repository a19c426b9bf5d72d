"""What a reconstructor reads from a frame: the lit pixels, or the VAE's μ.

Frames arrive as the VAE sees them (`frames.preprocess` with its size and normalization), (N, S, S)
in [0, 1]. The pixel features are the lit pixels on a grid of `stride` (the training frames'
lit region, stored in the reconstructor), each frame divided by its mean there: the overall scale
of a frame (laser power, exposure, a hot pixel under per-frame max normalization) carries no
information about the pattern's shape.
"""

from __future__ import annotations

import numpy as np
import torch

STRIDE = 1  # keep every lit pixel
LIT_FRACTION = 1e-3  # a pixel is lit when its mean over the training frames exceeds this × the peak


def lit_mask(frames: np.ndarray, stride: int = STRIDE) -> np.ndarray:
    """(S, S) bool: the pixels whose mean over `frames` is above LIT_FRACTION of the brightest
    pixel's, on every `stride`-th row and column."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    mean = np.asarray(frames, np.float64).mean(0)
    mask = mean > LIT_FRACTION * max(float(mean.max()), 1e-30)
    grid = np.zeros_like(mask)
    grid[::stride, ::stride] = True
    if not (mask & grid).any():
        raise ValueError("the training frames are dark: no lit pixel to read")
    return mask & grid


def pixel_features(frames: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(N, L) float32: each frame's lit pixels over their mean."""
    frames = np.asarray(frames, np.float32)
    if frames.ndim != 3 or frames.shape[1:] != mask.shape:
        raise ValueError(
            f"frames must be (N, {mask.shape[0]}, {mask.shape[1]}), got {frames.shape}"
        )
    x = frames[:, mask]
    return x / np.maximum(x.mean(1, keepdims=True), 1e-12)


@torch.inference_mode()
def encode_mu(model: torch.nn.Module, frames: np.ndarray, batch: int = 256) -> np.ndarray:
    """The VAE's μ (N, dz) of frames (N, S, S) preprocessed as it was trained."""
    device = next(model.parameters()).device
    model.eval()
    out = []
    for s in range(0, len(frames), batch):
        x = torch.from_numpy(np.asarray(frames[s : s + batch], np.float32))[:, None].to(device)
        out.append(model.encode(x).mean.float().cpu().numpy())
    if not out:
        return np.zeros((0, 0), np.float32)
    return np.concatenate(out)
