"""How a reconstruction is scored against the true pattern: PCC and SSIM per pattern (over the
whole 16×16 SLM), a digit classifier's accuracy on it, bootstrap intervals over patterns."""

from __future__ import annotations

import numpy as np

from common.bootstrap import bootstrap_mean
from vae.metrics import ssim_batch


def pcc_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each pair of patterns (N,); 0 where either is flat."""
    a = np.asarray(a, np.float64).reshape(len(a), -1)
    b = np.asarray(b, np.float64).reshape(len(b), -1)
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    den = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    return np.where(den > 0, (a * b).sum(1) / np.maximum(den, 1e-30), 0.0)


def ssim_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SSIM of each pair of patterns in [0, 1] (N,)."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    whole = np.ones(a.shape[-2:], bool)  # every SLM pixel, border included
    return np.asarray(ssim_batch(a, b, mask=whole), np.float64)


class PatternClassifier:
    """Logistic regression on the 256 pattern pixels, fitted on true training patterns: its
    accuracy on a reconstruction, beside its accuracy on the true pattern, says whether the
    reconstruction keeps the class (the digit) of the input."""

    def __init__(self, seed: int = 0) -> None:
        # Lazy: scikit-learn's import (1.4 s) is for the evaluation only; the app's Inverse page
        # imports this module for its PCC.
        from sklearn.linear_model import LogisticRegression

        self.model = LogisticRegression(max_iter=2000, C=1.0, random_state=seed)

    def fit(self, patterns: np.ndarray, labels: np.ndarray) -> PatternClassifier:
        self.model.fit(np.asarray(patterns).reshape(len(patterns), -1), np.asarray(labels))
        return self

    def correct(self, patterns: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """(N,) 1.0 where the predicted class is the label."""
        pred = self.model.predict(np.asarray(patterns).reshape(len(patterns), -1))
        return (pred == np.asarray(labels)).astype(np.float64)


def score(
    pred: np.ndarray,
    truth: np.ndarray,
    classifier: PatternClassifier | None = None,
    labels: np.ndarray | None = None,
) -> dict:
    """PCC and SSIM (means with bootstrap 95% intervals over patterns), and the classifier's
    accuracy on the reconstructions when given one and the labels."""
    pcc, ssim = pcc_rows(pred, truth), ssim_rows(pred, truth)
    b_pcc, b_ssim = bootstrap_mean(pcc), bootstrap_mean(ssim)
    out = {
        "pcc": b_pcc["mean"],
        "pcc_ci95": b_pcc["ci95"],
        "ssim": b_ssim["mean"],
        "ssim_ci95": b_ssim["ci95"],
        "n": b_pcc["n"],
    }
    if classifier is not None and labels is not None:
        acc = bootstrap_mean(classifier.correct(pred, labels))
        out |= {"digit_accuracy": acc["mean"], "digit_accuracy_ci95": acc["ci95"]}
    return out
