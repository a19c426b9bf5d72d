"""Probes of a latent code against labels and input patterns, with the baselines they must beat.

What the numbers mean, and why they are computed this way:
- A label is either a class (non-numeric, or numeric with at most `MAX_CLASSES` distinct values:
  a digit, a pupil shape) or continuous (numeric with more: an angle, a frame index). `label_kind`
  is the one rule; classes get accuracy and normalized mutual information, continuous labels get
  R² and |Spearman ρ|.
- The probe reads the code, the active dims (`ACTIVE_NATS`), not all of μ: the decoder ignores
  inactive dims, yet they still vary a little and systematically with the input, and a
  standardized probe on all 512 reads that encoder residue. `all_mu` is reported beside it, named
  for what it is.
- Standardization and the regularization strength are fitted on the training split only (the
  strength by cross-validation), and the split keeps each source (`source_index`, one
  handwritten digit) on one side, so that a probe cannot score by recognizing the handwriting.
- Every probe has a baseline at the same K: PCA of the speckle itself, fitted on the training
  split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_CLASSES = 20  # numeric labels with more distinct values are continuous
ROBUST_NATS = 0.1  # an informative dim: above the noise floor of KL > 0.01 at high β
TEST_FRACTION = 0.25
GROUP_COLUMN = "source_index"
PROBE_CS = (0.01, 0.1, 1.0, 10.0)  # logistic regression strengths tried on the training split


def label_kind(values: np.ndarray) -> str | None:
    """ "class", "continuous", or None for a label with fewer than two distinct known values."""
    v = np.asarray(values)
    known = v[~missing(v)]
    distinct = (
        len(np.unique(known.astype(str))) if known.dtype.kind == "O" else len(np.unique(known))
    )
    if distinct < 2:
        return None
    numeric = known.dtype.kind in "iuf" or (
        known.dtype.kind == "O" and all(isinstance(x, int | float) for x in known)
    )
    return "continuous" if numeric and distinct > MAX_CLASSES else "class"


def missing(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values)
    if v.dtype.kind in "fc":
        return ~np.isfinite(v)
    if v.dtype.kind in "iub":
        return np.zeros(len(v), dtype=bool)
    return np.array([x is None or (isinstance(x, float) and np.isnan(x)) or x == "" for x in v])


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # indices
    test: np.ndarray
    grouped_by: str | None


def holdout_split(n: int, groups: np.ndarray | None = None, seed: int = 0) -> Split:
    """A held-out `TEST_FRACTION` of the samples; with `groups`, whole groups go to one side."""
    rng = np.random.default_rng(seed)
    if groups is None:
        order = rng.permutation(n)
        k = int(round(n * TEST_FRACTION))
        return Split(np.sort(order[k:]), np.sort(order[:k]), None)
    groups = np.asarray(groups)
    unique = rng.permutation(np.unique(groups))
    test_groups = set(unique[: max(1, int(round(len(unique) * TEST_FRACTION)))].tolist())
    is_test = np.array([g in test_groups for g in groups])
    return Split(np.flatnonzero(~is_test), np.flatnonzero(is_test), GROUP_COLUMN)


def probe(features: np.ndarray, labels: np.ndarray, split: Split, seed: int = 0) -> dict:
    """Held-out score of a linear model from `features` to `labels`: accuracy (classes) or R²
    (continuous), with standardization and regularization fitted on the training split."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.asarray(labels)
    kind = label_kind(y)
    known = ~missing(y)
    tr, te = split.train[known[split.train]], split.test[known[split.test]]
    if kind is None or len(tr) < 8 or len(te) < 2 or features.shape[1] == 0:
        return {"kind": "none", "score": float("nan"), "n": int(known.sum())}
    x_tr, x_te = features[tr], features[te]
    if kind == "class":
        y_tr, y_te = y[tr].astype(str), y[te].astype(str)
        if len(np.unique(y_tr)) < 2:
            return {"kind": "none", "score": float("nan"), "n": int(known.sum())}
        clf = _logistic(_choose_c(x_tr, y_tr, seed)).fit(x_tr, y_tr)
        _, counts = np.unique(y_te, return_counts=True)
        return {"kind": "accuracy", "score": float(clf.score(x_te, y_te)), "c": clf[-1].C,
                "chance": float(counts.max() / counts.sum()), "n": int(known.sum())}  # fmt: skip
    reg = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
    reg.fit(x_tr, y[tr].astype(float))
    return {"kind": "r2", "score": float(reg.score(x_te, y[te].astype(float))),
            "n": int(known.sum())}  # fmt: skip


def _logistic(c: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))


def _choose_c(x: np.ndarray, y: np.ndarray, seed: int) -> float:
    """The inverse regularization strength with the best accuracy on a third of the training
    split held out from the other two thirds (the test split is never looked at)."""
    order = np.random.default_rng(seed).permutation(len(x))
    cut = len(x) // 3
    val, fit = order[:cut], order[cut:]
    if len(np.unique(y[fit])) < 2 or cut < 2:
        return 1.0
    scores = {c: _logistic(c).fit(x[fit], y[fit]).score(x[val], y[val]) for c in PROBE_CS}
    return max(scores, key=lambda c: (scores[c], -c))  # ties: the stronger regularization


def readout_pcc(features: np.ndarray, targets: np.ndarray, split: Split) -> float:
    """Ridge regression from features to images (the input patterns), fitted on the training
    split; the mean Pearson correlation of prediction and truth over the held-out samples. The
    fibre-imaging question: does the code hold the input?"""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    t = targets.reshape(len(targets), -1).astype(np.float64)
    if features.shape[1] == 0:
        return float("nan")
    reg = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13)))
    reg.fit(features[split.train], t[split.train])
    pred, true = reg.predict(features[split.test]), t[split.test]
    pred = pred - pred.mean(1, keepdims=True)
    true = true - true.mean(1, keepdims=True)
    denom = np.linalg.norm(pred, axis=1) * np.linalg.norm(true, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (pred * true).sum(1) / denom
    return float(np.nanmean(r))


class PCA:
    """PCA by SVD in numpy, fitted on one split and applied to any data."""

    def __init__(self, x: np.ndarray, components: int) -> None:
        flat = x.reshape(len(x), -1).astype(np.float64)
        self.mean = flat.mean(0)
        _, s, vt = np.linalg.svd(flat - self.mean, full_matrices=False)
        self.components = vt[: max(0, int(components))]
        self.variance = s**2

    def transform(self, x: np.ndarray, k: int | None = None) -> np.ndarray:
        c = self.components if k is None else self.components[:k]
        return (x.reshape(len(x), -1) - self.mean) @ c.T

    def reconstruct(self, x: np.ndarray, k: int) -> np.ndarray:
        c = self.components[:k]
        return (self.transform(x, k) @ c + self.mean).reshape(x.shape)


def explained_variance(x: np.ndarray, x_hat: np.ndarray, mean_image: np.ndarray) -> float:
    """1 − MSE / MSE of the mean image: simulated fibre speckle shares a strong common component,
    so PCC alone flatters a model that has learned only the mean."""
    return float(1.0 - np.mean((x_hat - x) ** 2) / np.mean((x - mean_image) ** 2))


def pca_ev_curve(x: np.ndarray, split: Split, ks: list[int]) -> dict[int, float]:
    """Held-out explained variance of PCA with each K, fitted on the training split."""
    ks = sorted({int(k) for k in ks if k >= 1})
    pca = PCA(x[split.train], max(ks) if ks else 1)
    test, mean = x[split.test], x[split.train].mean(0)
    return {k: explained_variance(test, pca.reconstruct(test, k), mean) for k in ks}


def curve_ks(*extra: int, top: int = 256) -> list[int]:
    """Powers of two up to `top`, and the counts a table compares at (active, robust)."""
    return sorted({2**i for i in range(int(np.log2(top)) + 1)} | {int(k) for k in extra if k > 0})


def code_probes(mu: np.ndarray, kl_per_dim: np.ndarray, x: np.ndarray, labels: np.ndarray,
                patterns: np.ndarray | None, split: Split, seed: int = 0,
                readout: bool = True) -> dict:  # fmt: skip
    """The code's probes beside their baselines, on one held-out split, as `vae.evaluate` and the
    Model page report them. Keys, with `accuracy` or `r2` by the label's kind:
    probe_M (the active dims), pca_probe_M (PCA of the speckle `x` at the same K), probe_M_robust
    and pca_probe_M_robust (K = dims with KL > `ROBUST_NATS`), probe_M_all_mu (all of μ: encoder
    features), pattern_probe_M (the input patterns), pattern_readout_pcc and
    pca_pattern_readout_pcc, probe_chance."""
    from vae.kl import ACTIVE_NATS

    active, robust = kl_per_dim > ACTIVE_NATS, kl_per_dim > ROBUST_NATS
    k, k_robust = int(active.sum()), int(robust.sum())
    pca = PCA(x[split.train], max(k, k_robust, 1))
    runs = {
        "probe": mu[:, active],
        "probe_all_mu": mu,
        "pca_probe": pca.transform(x, k),
        "probe_robust": mu[:, robust],
        "pca_probe_robust": pca.transform(x, k_robust),
    }
    if patterns is not None:
        runs["pattern_probe"] = patterns.reshape(len(patterns), -1)
    out: dict = {}
    for name, features in runs.items():
        res = probe(features, labels, split, seed)
        metric = "accuracy" if res["kind"] == "accuracy" else "r2"
        prefix, _, suffix = name.partition("probe")
        out[f"{prefix}probe_{metric}{suffix}"] = res["score"]
        if name == "probe" and "chance" in res:
            out["probe_chance"] = res["chance"]
    if patterns is not None and readout:
        out["pattern_readout_pcc"] = readout_pcc(mu[:, active], patterns, split)
        out["pca_pattern_readout_pcc"] = readout_pcc(pca.transform(x, k), patterns, split)
    return out
