"""The references every generator figure is read against, computed in the same run: the nearest
training pattern's speckle (a lookup), a random training speckle (the floor), a digit classifier
trained on true speckle, and a transmission matrix fitted to the training pairs (the physics
baseline: on one fixed fibre, I = |T x|² holds exactly, so a well-fitted T can beat every learned
model)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch


def nearest_patterns(train: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query pattern, the index of the training pattern of highest cosine similarity,
    and that similarity: ((N,), (N,))."""
    a = train.reshape(len(train), -1).astype(np.float32)
    b = query.reshape(len(query), -1).astype(np.float32)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    best, sim = np.zeros(len(b), np.int64), np.full(len(b), -np.inf, np.float32)
    for s in range(0, len(a), 4096):  # bounded memory for big training sets
        c = b @ a[s : s + 4096].T
        j = c.argmax(1)
        better = c[np.arange(len(b)), j] > sim
        best[better], sim[better] = j[better] + s, c[np.arange(len(b)), j][better]
    return best, sim


@dataclass
class TransmissionMatrix:
    """A fitted complex T on the lit pixels: I = |T x|² with T = re + i im, (L, 256) each."""

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


def fit_transmission_matrix(
    patterns: np.ndarray,
    intensities: np.ndarray,
    mask: np.ndarray,
    steps: int = 1500,
    batch: int = 1024,
    lr: float = 0.02,
    seed: int = 0,
) -> TransmissionMatrix:
    """Gradient descent (Adam) on the mean of (I − |T x|²)² over the lit pixels, from a random
    complex Gaussian start scaled to the mean intensity. patterns (M, P, P) amplitudes,
    intensities (M, H, W) in the recording's linear units (not per-image normalized: the fit is
    of the physics, whose output power follows the input's)."""
    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(patterns.reshape(len(patterns), -1).astype(np.float32))  # (M, n_in)
    y = torch.from_numpy(intensities[:, mask].astype(np.float32))  # (M, L)
    scale = float(y.mean()) / float((x * x).sum(1).mean())  # E|Tx|² = σ² |x|² for iid T entries
    sigma = (scale / 2) ** 0.5
    re = (torch.randn(y.shape[1], x.shape[1], generator=g) * sigma).requires_grad_()
    im = (torch.randn(y.shape[1], x.shape[1], generator=g) * sigma).requires_grad_()
    opt = torch.optim.Adam([re, im], lr=lr * sigma)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    norm = float(y.pow(2).mean())
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        idx = torch.randint(0, len(x), (min(batch, len(x)),), generator=g)
        xb, yb = x[idx], y[idx]
        pred = (xb @ re.T) ** 2 + (xb @ im.T) ** 2
        loss = (pred - yb).pow(2).mean() / norm
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


class DigitClassifier:
    """PCA + logistic regression on the lit pixels of true speckle: its accuracy on generated
    speckle, over its accuracy on true speckle, says whether the generated frames carry the
    input's class."""

    def __init__(self, components: int = 50, seed: int = 0) -> None:
        # Lazy: scikit-learn's import (1.4 s) is for the evaluation's classifier only; the Generate
        # page imports this module for nearest_patterns.
        from sklearn.decomposition import PCA
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        self.pipe = make_pipeline(
            PCA(components, random_state=seed), StandardScaler(), LogisticRegression(max_iter=2000)
        )

    def fit(self, images: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> DigitClassifier:
        self.mask = mask
        self.pipe.fit(images[:, mask], labels)
        return self

    def accuracy(self, images: np.ndarray, labels: np.ndarray) -> float:
        return float((self.pipe.predict(images[:, self.mask]) == np.asarray(labels)).mean())
