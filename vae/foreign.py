"""Is this data far from the model? The share of frames whose −ELBO lies beyond the 99th
percentile of the model's −ELBO on its own training data, the rule the Reconstruct page applies
to an upload. The reference frames are the training folder the checkpoint records when it is
there, else the first frames of its training set simulated again from the checkpoint's
simulation record (sets are prefix-stable), else there is no reference and the report says so.

A reconstruction's figures (EV, PCC, a probe) on data the model never resembled say little about
the model; over half the frames beyond the threshold earns a one-line note.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from frames import ArrayDataset, ImageError, ImageFolder, Normalization, preprocess, spaced_indices
from speckle.mmf import rebuildable, simulate_from_record
from vae.checkpoint import Checkpoint
from vae.inference import encode_dataset
from vae.kl import kl_terms, neg_elbo

PERCENTILE = 99.0  # the Reconstruct page's out-of-distribution rule
N_REFERENCE = 1000  # reference frames: the 99th percentile from 1,000 is within about ±0.4%
NOTE_SHARE = 0.5  # over half the frames beyond it: say so


@dataclass(frozen=True)
class Reference:
    neg_elbo: np.ndarray  # (N,) the model's −ELBO on its own training frames
    source: str

    @property
    def threshold(self) -> float:
        return float(np.percentile(self.neg_elbo, PERCENTILE))


def normalization_of(checkpoint: Checkpoint) -> Normalization:
    pre = checkpoint.config.get("preprocessing", {})
    return Normalization.from_dict(pre.get("normalization", {"mode": "max"}))


def frame_from_counts(counts: np.ndarray, image_size: int, norm: Normalization) -> np.ndarray:
    """An intensity in 16-bit camera counts (H, W) as the model sees a recorded frame: rounded
    and clipped to uint16, as the simulator writes its PNGs, then resized and normalized like
    every image of a dataset."""
    png = np.clip(np.round(np.asarray(counts, np.float64)), 0, 65535).astype(np.uint16)
    return preprocess(png, image_size, norm)[0]


def per_frame_neg_elbo(
    checkpoint: Checkpoint, images: np.ndarray, mu: np.ndarray, logvar: np.ndarray, recon
) -> np.ndarray:
    """−ELBO (β = 1, the checkpoint's reconstruction convention) of each frame: (N,)."""
    mse = ((np.asarray(recon) - np.asarray(images)) ** 2).reshape(len(images), -1).mean(1)
    kl = kl_terms(mu, logvar).sum(1)
    return np.asarray(neg_elbo(checkpoint.recon, checkpoint.model_config.image_size, mse, kl))


def reference_frames(checkpoint: Checkpoint) -> tuple[object, str] | None:
    """A dataset of the model's own training frames and where they came from, or None."""
    size, norm = checkpoint.model_config.image_size, normalization_of(checkpoint)
    data = checkpoint.config.get("dataset") or {}
    path = Path(str(data.get("path") or ""))
    if str(path) not in ("", ".") and path.exists():
        try:
            folder = ImageFolder(path, size, norm)
        except (ImageError, OSError, ValueError):
            folder = None
        if folder is not None and len(folder):
            pick = spaced_indices(len(folder), N_REFERENCE).tolist()
            return torch.utils.data.Subset(folder, pick), f"{len(pick)} frames of {path}"
    record = data.get("simulation")
    if rebuildable(record) and isinstance(record.get("intensity_scale"), int | float):
        sim = simulate_from_record(record, n=N_REFERENCE)
        counts = sim.images.astype(np.float64) * float(record["intensity_scale"])
        frames = np.stack([frame_from_counts(c, size, norm) for c in counts])
        return ArrayDataset(frames), (
            f"the first {len(frames)} frames of its training set, simulated again from its record"
        )
    return None


def reference(checkpoint: Checkpoint) -> Reference | None:
    found = reference_frames(checkpoint)
    if found is None:
        return None
    dataset, source = found
    enc = encode_dataset(checkpoint.model, dataset, keep_images=True, reconstruct=True)
    values = per_frame_neg_elbo(checkpoint, enc.images, enc.mu, enc.logvar, enc.recon)
    return Reference(values, source)


def foreign_report(values: np.ndarray, ref: Reference | None, data: str) -> dict:
    """The share of `values` (the data's per-frame −ELBO) beyond the reference's threshold, and
    a note when it is over half."""
    if ref is None:
        return {
            "foreign_share": None,
            "foreign_reference": "none: the checkpoint's training data is not here and its "
            "record cannot rebuild it",
        }
    thr = ref.threshold
    share = float(np.mean(np.asarray(values) > thr)) if len(values) else float("nan")
    out = {
        "foreign_share": share,
        "foreign_threshold_neg_elbo": thr,
        "foreign_reference": ref.source,
    }
    if share > NOTE_SHARE:
        out["foreign_note"] = (
            f"{share:.0%} of {data}'s frames lie beyond the {PERCENTILE:g}th percentile of the "
            f"model's −ELBO on its own training data ({thr:.4g}): this data is far from the "
            "model, and its figures here say little about it"
        )
    return out


def resize_notes(dataset: object) -> list[str]:
    """The dataset's notes that say frames were cropped or resized (from what size)."""
    return [n for n in getattr(dataset, "notes", []) if "resized" in n or "cropped" in n]
