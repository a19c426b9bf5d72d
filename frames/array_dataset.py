"""`ArrayDataset`: in-memory images with the `ImageFolder` interface."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from frames.image import RawImage

if TYPE_CHECKING:
    # Lazy: frames/ opens a cached atlas without torch (docs/architecture.md).
    import torch


class ArrayDataset:
    """In-memory images (N, H, W) already in [0, 1] (tests, and callers of explorer.atlas with
    arrays of their own), with the ImageFolder interface: `labels`, `files`, `skipped`, `notes`,
    `read_raw`, `image`, `pattern`, `fingerprint`. The images are a read-only copy, so that the
    fingerprint, a cache key, is computed once and cannot go stale if the caller's array changes."""

    def __init__(
        self,
        images: np.ndarray,
        labels: pd.DataFrame | None = None,
        patterns: np.ndarray | None = None,
        *,
        name: str = "array",
    ) -> None:
        # A read-only copy of our own (these sets are small): the fingerprint, computed once,
        # stays true whatever the caller does with its array.
        self.images = np.array(images, np.float32, order="C", copy=True)
        self.images.flags.writeable = False
        self._fingerprint: str | None = None
        if self.images.ndim != 3:
            raise ValueError(f"expected (N, H, W) images, got shape {self.images.shape}")
        if not np.isfinite(self.images).all():
            raise ValueError("images contain NaN or Inf")
        if self.images.size and (self.images.min() < 0 or self.images.max() > 1):
            raise ValueError(
                f"images must be in [0, 1], got {self.images.min():g}..{self.images.max():g}"
            )
        n = len(self.images)
        if patterns is not None and len(patterns) != n:
            raise ValueError(f"{len(patterns)} patterns for {n} images")
        self.size = self.images.shape[-1]
        self.files: list[tuple[str, int | None]] = [(name, i) for i in range(n)]
        names = pd.DataFrame({"file": [f"{name}#{i}" for i in range(n)]})
        if labels is None:
            self.labels = names
        else:
            if len(labels) != n:
                raise ValueError(f"{len(labels)} label rows for {n} images")
            labels = labels.reset_index(drop=True)
            self.labels = labels if "file" in labels.columns else pd.concat([names, labels], axis=1)
        self.patterns = patterns
        self.skipped: list[str] = []
        self.notes: list[str] = []

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        # Lazy: frames/ opens a cached atlas without torch (docs/architecture.md).
        import torch

        return torch.from_numpy(self.images[int(i)].copy())[None]  # torch wants writable memory

    def image(self, i: int) -> np.ndarray:
        return self.images[i]

    def read_raw(self, i: int) -> RawImage:
        return RawImage(self.images[i].copy(), 1.0, [], "array float32")

    def pattern(self, i: int) -> np.ndarray | None:
        if self.patterns is None:
            return None
        return np.asarray(self.patterns[i], np.float32)

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            h = hashlib.sha256(f"vae.data.ArrayDataset/1 {self.images.shape}\n".encode())
            h.update(self.images.data)
            self._fingerprint = h.hexdigest()
        return self._fingerprint
