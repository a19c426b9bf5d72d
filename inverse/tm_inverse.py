"""The physical inverse: given a transmission matrix T and one speckle frame I, find the SLM
pattern x >= 0 that minimizes ||(|T x|^2 - I)||^2 over the lit pixels.

Phase retrieval of a real, non-negative signal from intensity-only measurements through a known
complex matrix. For a real x, |t_i x|^2 = (a_i . x)^2 + (b_i . x)^2 with t_i = a_i + i b_i, so the
problem is real. The starts: the spectral start of Wirtinger flow (Candes, Li & Soltanolkotabi,
IEEE Trans. Inf. Theory 61, 1985, 2015): the leading eigenvector of
sum_i (I_i - mean I) (a_i a_i^T + b_i b_i^T), by power iteration, with the sign that makes its sum
positive, scaled so that sum |T x|^2 = sum I; and a few random non-negative starts. From each,
projected gradient descent (Adam, then x clipped at 0). The start with the lowest loss wins, per
frame. A frame's overall scale is free (x scales as sqrt(I)), so frames are compared in any units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from speckle.tm_fit import TransmissionMatrix

STARTS = 3  # the spectral start and two random ones
STEPS = 300
LR = 0.05  # Adam's step, in units of the start's rms amplitude
POWER_ITERATIONS = 40


@dataclass(frozen=True)
class Inversion:
    patterns: np.ndarray  # (N, P, P) float32, each scaled to a maximum of 1
    loss: np.ndarray  # (N,) the final relative loss, mean (|Tx|^2 - I)^2 / mean I^2


def _spectral(re: torch.Tensor, im: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Leading eigenvectors (N, n_in) of sum_i w_i (a_i a_i^T + b_i b_i^T), w = y - mean y."""
    w = y - y.mean(1, keepdim=True)  # (N, L)
    g = torch.Generator().manual_seed(0)
    v = torch.rand(y.shape[0], re.shape[1], generator=g) + 0.5  # (N, n_in)
    for _ in range(POWER_ITERATIONS):
        v = ((v @ re.T) * w) @ re + ((v @ im.T) * w) @ im
        v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-30)
    return v * torch.sign(v.sum(1, keepdim=True) + 1e-30)


def _scaled(x: torch.Tensor, re: torch.Tensor, im: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x scaled per frame so that sum |T x|^2 = sum I."""
    power = ((x @ re.T) ** 2 + (x @ im.T) ** 2).sum(1, keepdim=True)
    return x * (y.sum(1, keepdim=True) / power.clamp_min(1e-30)).sqrt()


def invert(
    tm: TransmissionMatrix,
    frames: np.ndarray,
    starts: int = STARTS,
    steps: int = STEPS,
    lr: float = LR,
    seed: int = 0,
) -> Inversion:
    """Patterns (N, P, P) for frames (N, H, W) shaped as the matrix's mask; see the module
    docstring. P is the side of T's input (sqrt of its columns)."""
    frames = np.asarray(frames, np.float32)
    if frames.ndim != 3 or frames.shape[1:] != tm.mask.shape:
        raise ValueError(
            f"frames must be (N, {tm.mask.shape[0]}, {tm.mask.shape[1]}) to match the matrix, "
            f"got {frames.shape}"
        )
    if starts < 1 or steps < 0:
        raise ValueError("invert needs starts >= 1 and steps >= 0")
    side = int(round(tm.re.shape[1] ** 0.5))
    re = torch.from_numpy(np.asarray(tm.re, np.float32))
    im = torch.from_numpy(np.asarray(tm.im, np.float32))
    y = torch.from_numpy(frames[:, tm.mask])  # (N, L)
    y = y / y.mean(1, keepdim=True).clamp_min(1e-30)  # scale-free: mean lit intensity 1
    n = len(y)
    norm = y.pow(2).mean(1)  # (N,)
    g = torch.Generator().manual_seed(seed)
    best_x = torch.zeros(n, re.shape[1])
    best_loss = torch.full((n,), float("inf"))
    for s in range(starts):
        if s == 0:
            x0 = _spectral(re, im, y).clamp_min(0)
        else:
            x0 = torch.rand(n, re.shape[1], generator=g)
        x0 = _scaled(x0 + 1e-6, re, im, y)
        # x = rms * u: Adam's steps on u are in each frame's own amplitude units. One Adam over
        # the whole batch: each frame's loss touches only its own row, and Adam's update is per
        # element, so the frames descend independently.
        rms = x0.pow(2).mean(1, keepdim=True).sqrt()
        u = (x0 / rms).requires_grad_()
        opt = torch.optim.Adam([u], lr=lr)
        for _ in range(steps):
            x = u * rms
            pred = (x @ re.T) ** 2 + (x @ im.T) ** 2
            loss = ((pred - y) ** 2).mean(1) / norm  # (N,)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            opt.step()
            with torch.no_grad():
                u.clamp_(min=0)
        with torch.no_grad():
            x = u * rms
            pred = (x @ re.T) ** 2 + (x @ im.T) ** 2
            loss = ((pred - y) ** 2).mean(1) / norm
            better = loss < best_loss
            best_x[better], best_loss[better] = x.detach()[better], loss[better]
    out = best_x.numpy()
    out = out / np.maximum(out.max(1, keepdims=True), 1e-30)
    return Inversion(out.reshape(n, side, side).astype(np.float32), best_loss.numpy())
