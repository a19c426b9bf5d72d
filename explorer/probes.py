"""How well the latents carry each label: a linear probe from μ, and a dims × labels score matrix
with a MIG-style gap (Chen et al. 2018), on any partially labelled dataset.

disentanglement_lib computes MIG on complete synthetic factor grids; here a label may be missing
for some samples (those rows are dropped per label) and may be categorical or continuous.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from vae.evaluate import MAX_CLASSES, linear_probe

SKIP_COLUMNS = ("file", "pattern", "filename", "name", "source_index")


def label_columns(labels: pd.DataFrame) -> list[str]:
    """Columns worth probing: not file names, and with at least two distinct values."""
    cols = []
    for c in labels.columns:
        if c in SKIP_COLUMNS:
            continue
        values = labels[c].dropna()
        if values.nunique() >= 2 and (
            values.dtype.kind in "ifb" or values.nunique() <= MAX_CLASSES
        ):
            cols.append(c)
    return cols


def is_categorical(values: pd.Series) -> bool:
    return values.dtype.kind not in "fc" or values.nunique() <= min(MAX_CLASSES, 20)


def probe_scores(mu: np.ndarray, labels: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """One row per label: probe kind (accuracy or R²), held-out score, chance, samples used."""
    rows = []
    for c in label_columns(labels):
        res = linear_probe(mu, labels[c].to_numpy(), seed)
        rows.append({"label": c, "metric": res["kind"], "score": res["score"],
                     "chance": res.get("chance", 0.0 if res["kind"] == "r2" else np.nan), "n": res["n"]})  # fmt: skip
    return pd.DataFrame(rows, columns=["label", "metric", "score", "chance", "n"])


@dataclass
class DimLabelScores:
    dims: np.ndarray  # (K,) latent dims, most informative first
    labels: list[str]
    score: np.ndarray  # (K, L): normalized mutual information, or |Spearman ρ|
    gap: np.ndarray  # (L,): top − second score per label (MIG-style)
    method: str


def _discretize(x: np.ndarray, bins: int = 20) -> np.ndarray:
    edges = np.quantile(x, np.linspace(0, 1, bins + 1)[1:-1])
    return np.searchsorted(edges, x)


def _entropy(codes: np.ndarray) -> float:
    _, counts = np.unique(codes, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def _mutual_info(a: np.ndarray, b: np.ndarray) -> float:
    joint = a.astype(np.int64) * (b.max() + 1) + b
    return _entropy(a) + _entropy(b) - _entropy(joint)


def dim_label_scores(
    mu: np.ndarray, labels: pd.DataFrame, dims: np.ndarray, method: str = "mi", bins: int = 20
) -> DimLabelScores:
    """Score of each latent dim in `dims` against each label. "mi": mutual information of the
    binned dim and the (binned, if continuous) label, divided by the label's entropy, as in MIG;
    "spearman": |Spearman ρ|. The gap per label is the top score minus the second."""
    if method not in ("mi", "spearman"):
        raise ValueError(f"method must be 'mi' or 'spearman', got {method!r}")
    cols = label_columns(labels)
    score = np.zeros((len(dims), len(cols)))
    for j, c in enumerate(cols):
        series = labels[c]
        keep = series.notna().to_numpy()
        values = series[keep]
        z = mu[keep][:, dims]
        if method == "spearman":
            y = (
                pd.factorize(values)[0]
                if values.dtype.kind not in "ifb"
                else values.to_numpy(float)
            )
            for i in range(len(dims)):
                rho = spearmanr(z[:, i], y).statistic
                score[i, j] = 0.0 if not np.isfinite(rho) else abs(rho)
            continue
        if is_categorical(values):
            y = pd.factorize(values.astype(str))[0]
        else:
            y = _discretize(values.to_numpy(float), bins)
        h = _entropy(y)
        for i in range(len(dims)):
            score[i, j] = _mutual_info(_discretize(z[:, i], bins), y) / h if h > 0 else 0.0
    top2 = (
        -np.sort(-score, axis=0)[:2] if len(dims) >= 2 else np.vstack([score, np.zeros_like(score)])
    )
    return DimLabelScores(np.asarray(dims), cols, score, top2[0] - top2[1], method)
