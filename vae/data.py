"""TEMPORARY minimal loader (PNG folders) so the demo model can train; replaced by the full one."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image


class ImageError(ValueError):
    pass


@dataclass(frozen=True)
class Normalization:
    mode: str = "max"
    mean_scale: float = 5.0
    low: float = 0.0
    high: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Normalization:
        return cls(**d)


def split_indices(n: int, val_fraction: float, seed: int):
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * val_fraction))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


class ImageFolder(torch.utils.data.Dataset):
    def __init__(self, root, size, norm=Normalization(), *, log=None):
        self.root, self.size, self.norm = Path(root), size, norm
        if not self.root.is_dir():
            raise FileNotFoundError(f"{root}: no such folder")
        self.labels = pd.read_csv(self.root / "labels.csv")
        self.files = [(f, None) for f in self.labels["file"]]
        self.skipped, self.notes = [], []

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        a = np.asarray(Image.open(self.root / self.files[i][0]), np.float32)
        a = a / a.max()
        return torch.from_numpy(a)[None]

    def pattern(self, i):
        return np.asarray(Image.open(self.root / self.labels["pattern"][i]), np.float32) / 255

    def fingerprint(self):
        h = hashlib.sha256()
        for f, _ in self.files:
            p = self.root / f
            h.update(f"{f}:{p.stat().st_size}".encode())
        h.update(repr((self.size, self.norm.to_dict())).encode())
        return h.hexdigest()
