"""A complex transmission matrix fitted to (pattern, intensity) pairs: the physics model
I = |T x|² of one fixed fibre, learned from recordings alone. The generator's evaluation uses it
as its physics reference (pattern → speckle), the inverse package inverts it (speckle → pattern).

T is fitted as two real matrices (T = re + i im) on the lit pixels by gradient descent on the
mean of (I − |T x|²)², normalized by the mean I²: the intensity-only analogue of the measured
TM of Popoff et al. (PRL 104, 100601, 2010), whose phases a camera cannot see. T is identified
up to a phase and a conjugation per row, neither of which changes |T x|² for a real x.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import numpy as np
import torch

TM_STEPS = 1500
TM_BATCH = 1024
TM_LR = 0.02


@dataclass
class TransmissionMatrix:
    """A fitted complex T on the lit pixels: I = |T x|² with T = re + i im, (L, n_in) each."""

    re: np.ndarray
    im: np.ndarray
    mask: np.ndarray  # (H, W) bool: where the L rows go
    final_loss: float
    seconds: float

    def predict(self, patterns: np.ndarray) -> np.ndarray:
        """Intensities (N, H, W), zero outside the mask."""
        x = patterns.reshape(len(patterns), -1).astype(np.float32)
        lit = (x @ self.re.T) ** 2 + (x @ self.im.T) ** 2
        out = np.zeros((len(x),) + self.mask.shape, np.float32)
        out[:, self.mask] = lit
        return out

    def sha256(self) -> str:
        """The matrix's identity: a hash of its mask and both parts, as float32."""
        h = hashlib.sha256()
        for a in (
            self.mask.astype(np.uint8),
            self.re.astype(np.float32),
            self.im.astype(np.float32),
        ):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()


def initial_tm(
    x: torch.Tensor, y: torch.Tensor, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """A random complex Gaussian start (re, im) for x (M, n_in) and y (M, L), scaled to the mean
    intensity, and the σ of its entries (the unit of the learning rate)."""
    scale = float(y.mean()) / max(float((x * x).sum(1).mean()), 1e-30)  # E|Tx|² = 2σ²|x|², iid
    sigma = (scale / 2) ** 0.5
    re = torch.randn(y.shape[1], x.shape[1], generator=g) * sigma
    im = torch.randn(y.shape[1], x.shape[1], generator=g) * sigma
    return re, im, sigma


def tm_loss(
    re: torch.Tensor, im: torch.Tensor, x: torch.Tensor, y: torch.Tensor, norm: float
) -> torch.Tensor:
    """Mean of (I − |T x|²)² over a batch's lit pixels, over `norm` (the whole set's mean I²):
    x (B, n_in), y (B, L)."""
    pred = (x @ re.T) ** 2 + (x @ im.T) ** 2  # (B, L)
    return (pred - y).pow(2).mean() / norm


def fit_transmission_matrix(
    patterns: np.ndarray,
    intensities: np.ndarray,
    mask: np.ndarray,
    steps: int = TM_STEPS,
    batch: int = TM_BATCH,
    lr: float = TM_LR,
    seed: int = 0,
) -> TransmissionMatrix:
    """Adam with a cosine schedule on `tm_loss`, from `initial_tm`. patterns (M, P, P)
    amplitudes, intensities (M, H, W) in the recording's linear units (not per-image normalized:
    the fit is of the physics, whose output power follows the input's)."""
    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(patterns.reshape(len(patterns), -1).astype(np.float32))  # (M, n_in)
    y = torch.from_numpy(intensities[:, mask].astype(np.float32))  # (M, L)
    re, im, sigma = initial_tm(x, y, g)
    re.requires_grad_()
    im.requires_grad_()
    norm = float(y.pow(2).mean())
    opt = torch.optim.Adam([re, im], lr=lr * sigma)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        idx = torch.randint(0, len(x), (min(batch, len(x)),), generator=g)
        loss = tm_loss(re, im, x[idx], y[idx], norm)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return TransmissionMatrix(
        re.detach().numpy(),
        im.detach().numpy(),
        mask,
        float(loss.detach()),
        time.perf_counter() - t0,
    )
