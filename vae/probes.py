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
  split. K is capped at half the labelled training split (`max_probe_k`), for the code and PCA
  alike, and the output says when it was.
- A baseline below its chance level (the commonest class; R² 0; the mean pattern's PCC for a
  read-out) has failed: it is reported as failed, never as a number a model can beat.
- The pattern read-out through all the code's dims is saturated: on 400 images the codes of
  models trained on this fibre (0.96–0.97) and on another (0.94–0.95), all the speckle's pixels
  and 512 random projections of them (0.97) score alike. `pattern_readout_ratio` reads only the
  `READOUT_K` dims with the most KL, against PCA at that K and above the mean pattern, and tells
  them apart (0.88–0.92 against 0.64–0.70; docs/training.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vae.kl import ACTIVE_NATS

MAX_CLASSES = 20  # numeric labels with more distinct values are continuous
ROBUST_NATS = 0.1  # an informative dim: above the noise floor of KL > 0.01 at high β
TEST_FRACTION = 0.25
GROUP_COLUMN = "source_index"
PROBE_CS = (0.01, 0.1, 1.0, 10.0)  # logistic regression strengths tried on the training split
# The read-out ratio's K: few enough dims that the ridge is not saturated (PCA of the speckle
# reaches the all-pixel read-out by K = 64, and so would any rich features), so it asks whether
# the dims a model spends its KL on are the ones that carry the input.
READOUT_K = 16
PCA_FIT = "the probe's training split"  # where the PCA baselines are fitted


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
    # Lazy: scikit-learn's import (1.4 s) stays off the first map (docs/architecture.md).
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
        return {
            "kind": "accuracy",
            "score": float(clf.score(x_te, y_te)),
            "c": clf[-1].C,
            "chance": float(counts.max() / counts.sum()),
            "n": int(known.sum()),
        }
    reg = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
    reg.fit(x_tr, y[tr].astype(float))
    return {
        "kind": "r2",
        "score": float(reg.score(x_te, y[te].astype(float))),
        "n": int(known.sum()),
    }


def _logistic(c: float):
    # Lazy: scikit-learn's import (1.4 s) stays off the first map (docs/architecture.md).
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
    # Lazy: scikit-learn's import (1.4 s) stays off the first map (docs/architecture.md).
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    t = targets.reshape(len(targets), -1).astype(np.float64)
    if features.shape[1] == 0:
        return float("nan")
    reg = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13)))
    reg.fit(features[split.train], t[split.train])
    return mean_pcc(reg.predict(features[split.test]), t[split.test])


def mean_pattern_pcc(targets: np.ndarray, split: Split) -> float:
    """The read-out's chance level: the training split's mean pattern as the prediction for every
    held-out sample. Handwritten digits share much of their strokes, so this is far above 0."""
    t = targets.reshape(len(targets), -1).astype(np.float64)
    mean = t[split.train].mean(0)
    return mean_pcc(np.broadcast_to(mean, t[split.test].shape), t[split.test])


def mean_pcc(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean over rows of the Pearson correlation of `pred` and `true` (N, D)."""
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
    """Held-out explained variance of PCA with each K, fitted on the training split. A K past the
    n − 1 components that n training images support is scored at n − 1, under that name."""
    rank = min(len(split.train) - 1, int(np.prod(x.shape[1:])))
    ks = sorted({min(int(k), rank) for k in ks if k >= 1})
    pca = PCA(x[split.train], max(ks) if ks else 1)
    test, mean = x[split.test], x[split.train].mean(0)
    return {k: explained_variance(test, pca.reconstruct(test, k), mean) for k in ks}


def pca_at_k(curve: dict, k: int) -> str:
    """What `pca_ev_curve` says of PCA at K = `k`: "0.962 at K = 146", or, for a K past what the
    training split supports, its figure at the most components the split supports, saying so."""
    c = {int(kk): v for kk, v in curve.items()}
    if k in c:
        return f"{c[k]:.3f} at K = {k}"
    top = max(c)
    return f"{c[top]:.3f} at K = {top} (K = {k} is past what the training split supports)"


def curve_ks(*extra: int, top: int = 256) -> list[int]:
    """Powers of two up to `top`, and the counts a table compares at (active, robust)."""
    return sorted({2**i for i in range(int(np.log2(top)) + 1)} | {int(k) for k in extra if k > 0})


def max_probe_k(n_train: int) -> int:
    """The most features a probe fitted on `n_train` samples reads: half of them. Past n/2
    features, n points in general position can be split every way by a hyperplane (Cover 1965),
    so the fit follows noise; and PCA of n samples has at most n − 1 components, the trailing ones
    nearly empty, which standardization blows up (at 400 images, K = 512 put the PCA probe at
    0.05 against chance 0.20)."""
    return max(1, int(n_train) // 2)


def top_dims(kl_per_dim: np.ndarray, k: int) -> np.ndarray:
    """The `k` dims with the most KL, in index order: the active dims when k is their count."""
    return np.sort(np.argsort(kl_per_dim, kind="stable")[::-1][: max(0, int(k))])


def mark_failed(out: dict, key: str, chance: float) -> None:
    """A baseline below its chance level has failed, not scored: its number would be one any
    model beats. `out[key]` becomes None, and `out["failed_baselines"][key]` keeps the score and
    the chance level for the report."""
    score = out.get(key)
    if score is None or not np.isfinite(score) or not np.isfinite(chance) or score >= chance:
        return
    out[key] = None
    out.setdefault("failed_baselines", {})[key] = {"score": float(score), "chance": float(chance)}


def figure_text(result: dict, key: str, digits: int = 3) -> str:
    """A figure as the docs and the Model page print it: the number, "failed (s < chance c)" for
    a baseline below its chance level, or "–" when it was not measured."""
    failed = result.get("failed_baselines", {}).get(key)
    if failed:
        return f"failed ({failed['score']:.{digits}f} < chance {failed['chance']:.{digits}f})"
    v = result.get(key)
    return "–" if v is None or v != v else f"{v:.{digits}f}"


def k_text(result: dict) -> str:
    """The K a result's probes read, code and PCA alike: "148 (capped from 512) / 144"."""
    parts = []
    for key in ("probe_k", "probe_k_robust"):
        k, asked = result[key], result[f"{key}_requested"]
        parts.append(f"{k}" + (f" (capped from {asked})" if k < asked else ""))
    return " / ".join(parts)


def code_probes(
    mu: np.ndarray,
    kl_per_dim: np.ndarray,
    x: np.ndarray,
    labels: np.ndarray,
    patterns: np.ndarray | None,
    split: Split,
    seed: int = 0,
    readout: bool = True,
) -> dict:
    """The code's probes beside their baselines, on one held-out split, as `vae.evaluate` and the
    Model page report them. Keys, with `accuracy` or `r2` by the label's kind:

    - probe_M: the code, the active dims (KL > `ACTIVE_NATS`); pca_probe_M: PCA of the speckle `x`
      at the same K, fitted on the training split (`pca_fit`). probe_M_robust and
      pca_probe_M_robust: K = dims with KL > `ROBUST_NATS`. K is capped at `max_probe_k` of the
      labelled training split, for the code (its K dims with the most KL) and PCA alike:
      probe_k, probe_k_robust, their requested counts, probe_k_max and probe_k_capped say so.
    - probe_M_all_mu: all of μ (encoder features); pattern_probe_M: the input patterns;
      probe_chance: the commonest held-out class (R²'s chance is 0).
    - With patterns: pattern_readout_pcc (the code at K) beside pca_pattern_readout_pcc (PCA at
      K), pixel_pattern_readout_pcc (all speckle pixels) and mean_pattern_pcc (the training
      split's mean pattern: the read-out's chance level). top_pattern_readout_pcc reads only the
      `readout_k` = `READOUT_K` dims with the most KL, pca_top_pattern_readout_pcc PCA at the
      same K, and pattern_readout_ratio is (code − mean) / (PCA − mean) at that K.
    - failed_baselines: each baseline that scored below its chance level (`mark_failed`); its
      key is None.
    """
    y = np.asarray(labels)
    k_max = max_probe_k(int((~missing(y[split.train])).sum()))
    k_asked, kr_asked = int((kl_per_dim > ACTIVE_NATS).sum()), int((kl_per_dim > ROBUST_NATS).sum())
    k, k_robust = min(k_asked, k_max), min(kr_asked, k_max)
    k_top = min(READOUT_K, k)
    pca = PCA(x[split.train], max(k, 1))
    runs = {
        "probe": mu[:, top_dims(kl_per_dim, k)],
        "probe_all_mu": mu,
        "pca_probe": pca.transform(x, k),
        "probe_robust": mu[:, top_dims(kl_per_dim, k_robust)],
        "pca_probe_robust": pca.transform(x, k_robust),
    }
    if patterns is not None:
        runs["pattern_probe"] = patterns.reshape(len(patterns), -1)
    out: dict = {
        "probe_k": k,
        "probe_k_requested": k_asked,
        "probe_k_robust": k_robust,
        "probe_k_robust_requested": kr_asked,
        "probe_k_max": k_max,
        "probe_k_capped": k < k_asked or k_robust < kr_asked,
        "pca_fit": PCA_FIT,
    }
    chance, scored = float("nan"), {}
    for name, features in runs.items():
        res = probe(features, y, split, seed)
        metric = "accuracy" if res["kind"] == "accuracy" else "r2"
        prefix, _, suffix = name.partition("probe")
        scored[name] = key = f"{prefix}probe_{metric}{suffix}"
        out[key] = res["score"]
        if res["kind"] != "none":  # the same labels and split for every run
            chance = res.get("chance", 0.0)  # R² of the training mean is about 0
        if name == "probe" and "chance" in res:
            out["probe_chance"] = res["chance"]
    for name in ("pca_probe", "pca_probe_robust", "pattern_probe"):
        if name in scored:
            mark_failed(out, scored[name], chance)
    if patterns is not None and readout:
        readouts = pattern_readouts(mu, kl_per_dim, x, patterns, split, pca, k, k_top)
        failed = out.get("failed_baselines", {}) | readouts.pop("failed_baselines", {})
        out |= readouts | ({"failed_baselines": failed} if failed else {})
    return out


def pattern_readouts(
    mu: np.ndarray,
    kl_per_dim: np.ndarray,
    x: np.ndarray,
    patterns: np.ndarray,
    split: Split,
    pca: PCA,
    k: int,
    k_top: int,
) -> dict:
    """The read-outs of `code_probes` (see there), each baseline marked failed below the mean
    pattern's PCC."""
    mean = mean_pattern_pcc(patterns, split)
    code_top = readout_pcc(mu[:, top_dims(kl_per_dim, k_top)], patterns, split)
    out = {
        "mean_pattern_pcc": mean,
        "pixel_pattern_readout_pcc": readout_pcc(x.reshape(len(x), -1), patterns, split),
        "pattern_readout_pcc": readout_pcc(mu[:, top_dims(kl_per_dim, k)], patterns, split),
        "pca_pattern_readout_pcc": readout_pcc(pca.transform(x, k), patterns, split),
        "readout_k": k_top,
        "top_pattern_readout_pcc": code_top,
        "pca_top_pattern_readout_pcc": readout_pcc(pca.transform(x, k_top), patterns, split),
    }
    for key in (
        "pixel_pattern_readout_pcc",
        "pca_pattern_readout_pcc",
        "pca_top_pattern_readout_pcc",
    ):
        mark_failed(out, key, mean)
    reference = out["pca_top_pattern_readout_pcc"]
    out["pattern_readout_ratio"] = (
        (code_top - mean) / (reference - mean) if reference is not None else None
    )
    return out
