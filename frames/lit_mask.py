"""Where a set of speckle frames is lit: a fibre's core inside its dark cladding, or the whole
frame for speckle lit everywhere. Frame normalization ("mean") and every speckle statistic take
their means over this region.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

LIT_FRACTION = 0.1  # lit region: mean image above this fraction of its 99th percentile
MASK_MIN_FRAMES = 16  # fewer frames than this: the mean image is smoothed before thresholding
MASK_SMOOTH = 9  # px, the smoothing window then (a few grains)
SMOOTHED_FRACTION = 0.2  # threshold after smoothing: core IoU 0.92 on simulated fibre frames
DARK_MIN_AREA = 0.05  # smaller dark patches are speckle, not an unlit region


def lit_mask(images: np.ndarray, fraction: float = LIT_FRACTION) -> np.ndarray:
    """The lit region of a set of frames: where their mean image exceeds `fraction` of its
    99th percentile, with holes filled.

    A fibre's frames share a dark cladding around the core; their mean image is smooth (the
    speckle averages out) and drops to zero outside the core, so a low threshold finds the core.
    Frames lit everywhere (free-space speckle) give a mask of the whole frame. One frame alone
    works too, but its own speckle holds dark pixels: those are filled as holes, and the result is
    closed over a few pixels.
    """
    a = np.asarray(images, dtype=np.float64)
    mean = a if a.ndim == 2 else a.reshape(-1, *a.shape[-2:]).mean(axis=0)
    if a.ndim == 2 or len(a) < MASK_MIN_FRAMES:  # few frames: smooth their speckle away first
        mean = ndimage.uniform_filter(mean, size=MASK_SMOOTH, mode="nearest")
        # The box filter spreads the core's edge over its width and leaves the inside rough
        # (99th percentile about twice the mean): a higher threshold puts the edge back.
        fraction = max(fraction, SMOOTHED_FRACTION)
    top = np.percentile(mean, 99)
    if not (np.isfinite(top) and top > 0):
        return np.ones(mean.shape, dtype=bool)
    lit = ndimage.binary_fill_holes(mean > fraction * top)
    # Dark patches smaller than DARK_MIN_AREA of the frame are dim speckle that the smoothing
    # did not even out (on a frame lit everywhere), not an unlit region such as a cladding.
    dark, n = ndimage.label(~lit)
    if n:
        sizes = np.bincount(dark.ravel())[1:]
        small = np.flatnonzero(sizes < DARK_MIN_AREA * lit.size) + 1
        lit |= np.isin(dark, small)
    if not lit.any():
        return np.ones(mean.shape, dtype=bool)
    return lit
