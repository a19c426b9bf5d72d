"""The references every generator figure is read against, computed in the same run: the nearest
training pattern's speckle (a lookup), a random training speckle (the floor), a digit classifier
trained on true speckle, and a transmission matrix fitted to the training pairs (the physics
baseline: on one fixed fibre, I = |T x|² holds exactly, so a well-fitted T can beat every learned
model; the matrix and its fit live in speckle.tm_fit, which the inverse package shares)."""

from __future__ import annotations

import numpy as np


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
