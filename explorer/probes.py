"""How well the latents carry each label: held-out linear probes, and a dims × labels score matrix
with a MIG-style gap (Chen et al. 2018), on any partially labelled dataset.

disentanglement_lib computes MIG on complete synthetic factor grids; here a label may be missing
for some samples (those rows are dropped per label), and is a class or continuous by the one rule
of `vae.probes.label_kind`. A class is scored against a dim by normalized mutual information, with
the NMI of shuffled labels subtracted (the plug-in estimate's bias alone gives an unrelated dim
about 0.1 at N = 400); a continuous label by |Spearman ρ|, which is meaningless for nominal codes
(a dim that separates ten digits perfectly can have ρ ≈ 0.08).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from vae.probes import code_probes, figure_text, holdout_split, k_text, label_kind, probe

SKIP_COLUMNS = ("file", "pattern", "filename", "name", "source_index", "source_file")
BINS = 20
MEASURES = {"class": "NMI (bias-corrected)", "continuous": "|Spearman ρ|"}


def label_columns(labels: pd.DataFrame) -> list[str]:
    """Columns worth probing: not file names, and with at least two distinct known values."""
    return [
        c
        for c in labels.columns
        if c not in SKIP_COLUMNS and label_kind(labels[c].to_numpy()) is not None
    ]


def probe_scores(mu: np.ndarray, labels: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """One row per label: probe kind (accuracy or R²), held-out score, chance, samples used. The
    split keeps each `source_index` on one side when the labels have one."""
    groups = labels["source_index"].to_numpy() if "source_index" in labels else None
    split = holdout_split(len(mu), groups, seed)
    rows = []
    for c in label_columns(labels):
        res = probe(mu, labels[c].to_numpy(), split, seed)
        rows.append(
            {
                "label": c,
                "metric": res["kind"],
                "score": res["score"],
                "chance": res.get("chance", 0.0 if res["kind"] == "r2" else np.nan),
                "n": res["n"],
            }
        )
    return pd.DataFrame(rows, columns=["label", "metric", "score", "chance", "n"])


PROBE_COLUMNS = {  # code_probes' keys, without the metric, and what the Model page calls them
    "probe_{m}": "code (active dims)",
    "pca_probe_{m}": "PCA of the speckle, same K",
    "probe_{m}_robust": "code, robust dims",
    "pca_probe_{m}_robust": "PCA, robust K",
    "probe_{m}_all_mu": "all μ (encoder features)",
    "pattern_probe_{m}": "input patterns",
}
READOUT_KEYS = (  # what the Model page shows of the pattern read-out
    "pattern_readout_pcc",
    "pca_pattern_readout_pcc",
    "pixel_pattern_readout_pcc",
    "mean_pattern_pcc",
    "readout_k",
    "top_pattern_readout_pcc",
    "pca_top_pattern_readout_pcc",
    "pattern_readout_ratio",
)


def probe_table(
    mu: np.ndarray,
    kl_per_dim: np.ndarray,
    images: np.ndarray,
    labels: pd.DataFrame,
    patterns: np.ndarray | None = None,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict]:
    """The probes `python -m vae.evaluate --probe-label` reports, for every label column, with the
    same numbers, as the Model page prints them (`figure_text`: a baseline below chance reads
    "failed (s < chance c)"): one row per label, with the K its probes read, and the pattern
    read-out (`READOUT_KEYS`, with any failed baselines) when the dataset has input patterns."""
    groups = labels["source_index"].to_numpy() if "source_index" in labels else None
    split = holdout_split(len(mu), groups, seed)
    rows, readout = [], {}
    for i, c in enumerate(label_columns(labels)):
        res = code_probes(
            mu, kl_per_dim, images, labels[c].to_numpy(), patterns, split, seed, readout=i == 0
        )
        m = "accuracy" if "probe_accuracy" in res else "r2"
        row = {"label": c, "metric": m, "K / robust K": k_text(res)}
        row |= {name: figure_text(res, key.format(m=m)) for key, name in PROBE_COLUMNS.items()}
        row["chance"] = figure_text(res, "probe_chance") if m == "accuracy" else "0.000"
        rows.append(row)
        if i == 0 and patterns is not None:
            readout = {k: res[k] for k in READOUT_KEYS if k in res}
            failed = {k: v for k, v in res.get("failed_baselines", {}).items() if k in readout}
            if failed:
                readout["failed_baselines"] = failed
    columns = ["label", "metric", "K / robust K", *PROBE_COLUMNS.values(), "chance"]
    return pd.DataFrame(rows, columns=columns), readout


@dataclass
class DimLabelScores:
    dims: np.ndarray  # (K,) latent dims, most informative first
    labels: list[str]
    score: np.ndarray  # (K, L): the measure of each label's column
    gap: np.ndarray  # (L,): top − second score per label over `gap_dims` (MIG-style)
    measures: list[str]  # per label: which measure its column uses
    gap_dims: int  # how many dims the gap was taken over


def _discretize(x: np.ndarray, bins: int = BINS) -> np.ndarray:
    edges = np.quantile(x, np.linspace(0, 1, bins + 1)[1:-1])
    return np.searchsorted(edges, x)


def _entropy(codes: np.ndarray) -> float:
    _, counts = np.unique(codes, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def _mutual_info(a: np.ndarray, b: np.ndarray) -> float:
    joint = a.astype(np.int64) * (b.max() + 1) + b
    return _entropy(a) + _entropy(b) - _entropy(joint)


def corrected_nmi(codes: np.ndarray, y: np.ndarray, seed: int = 0) -> float:
    """(I(dim; y) − b) / (H(y) − b), b the same mutual information with y shuffled (the plug-in
    estimate's bias): about 0 for an unrelated dim, 1 for a dim that determines y."""
    h = _entropy(y)
    shuffled = np.random.default_rng(seed).permutation(y)
    bias = _mutual_info(codes, shuffled)
    return (_mutual_info(codes, y) - bias) / (h - bias) if h - bias > 0 else 0.0


def _abs_spearman(x: np.ndarray, y: np.ndarray) -> float:
    rx = pd.Series(x).rank().to_numpy()
    ry = pd.Series(y).rank().to_numpy()
    r = np.corrcoef(rx, ry)[0, 1]
    return 0.0 if not np.isfinite(r) else abs(float(r))


def _column(
    mu: np.ndarray, series: pd.Series, dims: np.ndarray, kind: str, seed: int
) -> np.ndarray:
    keep = series.notna().to_numpy()
    z = mu[keep][:, dims]
    if kind == "continuous":
        y = series[keep].to_numpy(float)
        return np.array([_abs_spearman(z[:, i], y) for i in range(len(dims))])
    y = pd.factorize(series[keep].astype(str))[0]
    return np.array([corrected_nmi(_discretize(z[:, i]), y, seed) for i in range(len(dims))])


def dim_label_scores(
    mu: np.ndarray,
    labels: pd.DataFrame,
    dims: np.ndarray,
    active: np.ndarray | None = None,
    seed: int = 0,
) -> DimLabelScores:
    """Score of each latent dim in `dims` (the heatmap's rows) against each label, by the label's
    measure (`MEASURES`). The gap per label, top score minus the second, is taken over all
    `active` dims (default: `dims`), so that a dim outside the heatmap can still close it."""
    cols = label_columns(labels)
    dims = np.asarray(dims)
    active = dims if active is None else np.asarray(active)
    score = np.zeros((len(dims), len(cols)))
    gap = np.zeros(len(cols))
    measures = []
    for j, c in enumerate(cols):
        kind = label_kind(labels[c].to_numpy())
        measures.append(MEASURES[kind])
        score[:, j] = _column(mu, labels[c], dims, kind, seed)
        over = _column(mu, labels[c], active, kind, seed) if len(active) else np.zeros(0)
        top2 = np.sort(over)[::-1][:2]
        gap[j] = float(top2[0] - (top2[1] if len(top2) > 1 else 0.0)) if len(top2) else 0.0
    return DimLabelScores(dims, cols, score, gap, measures, int(len(active)))
