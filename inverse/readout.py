"""The learned reconstructors as one pure module: features (lit pixels or μ) → pattern.

- `linear`: a ridge read-out, solved in closed form (`fit_ridge`); its output is clipped to
  [0, 1] when read.
- `dense`: one hidden layer of ReLUs and a sigmoid output, the dense network with which Zhu et
  al. (Opt. Express 29, 2021) read images through multimode fibres; here on the lit pixels.
- `mlp`: two hidden layers, the read-out from the VAE's μ.

Inputs are standardized by the training features' mean and spread, held as buffers, so a
checkpoint rebuilds the whole map from its config alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

KINDS = ("linear", "dense", "mlp")
RIDGE_ALPHA = 1.0  # per standardized feature and sample: the penalty is alpha · n · ||W||²


@dataclass(frozen=True)
class ReadoutConfig:
    kind: str
    n_in: int
    n_out: int
    hidden: int = 0  # dense and mlp: hidden width

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"readout kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.n_in < 1 or self.n_out < 1:
            raise ValueError("readout needs n_in and n_out >= 1")
        if self.kind != "linear" and self.hidden < 1:
            raise ValueError(f"a {self.kind} readout needs hidden >= 1")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: object) -> ReadoutConfig:
        if not isinstance(d, dict) or set(d) - {"kind", "n_in", "n_out", "hidden"}:
            raise ValueError(f"bad readout config {d!r}")
        return cls(**d)


class Readout(nn.Module):
    def __init__(self, config: ReadoutConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.register_buffer("in_mean", torch.zeros(c.n_in))
        self.register_buffer("in_std", torch.ones(c.n_in))
        if c.kind == "linear":
            self.net = nn.Linear(c.n_in, c.n_out)
        elif c.kind == "dense":
            self.net = nn.Sequential(
                nn.Linear(c.n_in, c.hidden), nn.ReLU(), nn.Linear(c.hidden, c.n_out), nn.Sigmoid()
            )
        else:
            self.net = nn.Sequential(
                nn.Linear(c.n_in, c.hidden),
                nn.ReLU(),
                nn.Linear(c.hidden, c.hidden),
                nn.ReLU(),
                nn.Linear(c.hidden, c.n_out),
                nn.Sigmoid(),
            )

    def set_input_stats(self, features: np.ndarray) -> None:
        x = torch.from_numpy(np.asarray(features, np.float32))
        self.in_mean.copy_(x.mean(0))
        self.in_std.copy_(x.std(0).clamp_min(1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n_in) features → (B, n_out) pattern pixels."""
        return self.net((x - self.in_mean) / self.in_std)


def fit_ridge(model: Readout, features: np.ndarray, targets: np.ndarray, alpha: float) -> None:
    """Closed-form ridge on standardized features into a linear Readout: W = (XᵀX + αnI)⁻¹ XᵀY
    on centred X and Y (or its dual form when there are fewer samples than features), in float64."""
    if model.config.kind != "linear":
        raise ValueError("fit_ridge needs a linear readout")
    if alpha <= 0:
        raise ValueError(f"ridge alpha must be > 0, got {alpha}")
    model.set_input_stats(features)
    x = (np.asarray(features, np.float64) - model.in_mean.numpy()) / model.in_std.numpy()
    y = np.asarray(targets, np.float64).reshape(len(targets), -1)
    y_mean = y.mean(0)
    yc = y - y_mean
    n, d = x.shape
    lam = alpha * n
    if n >= d:
        w = np.linalg.solve(x.T @ x + lam * np.eye(d), x.T @ yc)  # (d, out)
    else:
        w = x.T @ np.linalg.solve(x @ x.T + lam * np.eye(n), yc)
    with torch.no_grad():
        model.net.weight.copy_(torch.from_numpy(w.T.astype(np.float32)))
        model.net.bias.copy_(torch.from_numpy(y_mean.astype(np.float32)))


@torch.inference_mode()
def predict(model: Readout, features: np.ndarray, batch: int = 1024) -> np.ndarray:
    """(N, n_out) in [0, 1]."""
    model.eval()
    out = [
        model(torch.from_numpy(np.asarray(features[s : s + batch], np.float32))).clamp(0, 1).numpy()
        for s in range(0, len(features), batch)
    ]
    return np.concatenate(out) if out else np.zeros((0, model.config.n_out), np.float32)
