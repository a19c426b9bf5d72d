"""Score a checkpoint on a data set: reconstruction, KL, speckle statistics, probes and PCA.

    python -m vae.evaluate --checkpoint DIR --data DIR [--probe-label COLUMN] [--pca auto|K|curve] --json

Reconstructions decode z = μ. `ev` is explained variance against the dataset's own mean image,
1 − MSE_model / MSE_mean: simulated fibre speckle shares a strong common component, so PCC alone
flatters any model that has learned only the mean. Speckle contrast is taken in the dataset's lit
region (`mask` says which), and every probe sits beside PCA of the speckle at the same K, on one
held-out split (`vae.probes`): K at most half the training split (`probe_k_capped` says when it
was capped), and a baseline below its chance level reported as failed (`failed_baselines`).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from common.cli import DATA_HELP, summary
from common.device import pick_device
from frames import ImageError, ImageFolder, Normalization
from speckle.lit_region import dataset_region
from speckle.stats import contrast_batch
from vae.checkpoint import CheckpointError, load_checkpoint
from vae.foreign import foreign_report, per_frame_neg_elbo, reference, resize_notes
from vae.inference import encode_dataset, kl_per_dim
from vae.kl import ACTIVE_NATS
from vae.metrics import pixel_metrics
from vae.probes import (
    GROUP_COLUMN,
    PCA,
    ROBUST_NATS,
    code_probes,
    curve_ks,
    explained_variance,
    holdout_split,
    pca_ev_curve,
)


def contrast_ratio(x: np.ndarray, x_hat: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean over images of K_rec / K_in, with K = σ/μ over the lit region `mask` (the same on
    both sides; the whole frame if None)."""
    k_in, k_rec = contrast_batch(x, mask), contrast_batch(x_hat, mask)
    ok = np.isfinite(k_in) & np.isfinite(k_rec) & (k_in > 0)
    return float(np.mean(k_rec[ok] / k_in[ok])) if ok.any() else float("nan")


def evaluate(
    checkpoint: str,
    data: str,
    probe_label: str | None = None,
    pca: str | None = None,
    max_samples: int = 0,
    device: str = "auto",
    seed: int = 0,
) -> dict:
    ck = load_checkpoint(checkpoint, device=pick_device(device))
    norm = Normalization.from_dict(ck.config["preprocessing"]["normalization"])
    dataset = ImageFolder(data, ck.model_config.image_size, norm)
    subset = dataset
    if max_samples and len(dataset) > max_samples:
        pick = np.sort(np.random.default_rng(seed).choice(len(dataset), max_samples, replace=False))
        subset = torch.utils.data.Subset(dataset, pick.tolist())
    else:
        pick = np.arange(len(dataset))
    enc = encode_dataset(ck.model, subset, keep_images=True, reconstruct=True)
    x, x_hat = enc.images, enc.recon
    region = dataset_region(getattr(dataset, "root", None), ck.model_config.image_size, x)
    pm = pixel_metrics(x, x_hat, data_range=1.0)
    kld = kl_per_dim(enc.mu, enc.logvar)
    mean_image = x.mean(0)
    result = {
        "checkpoint": str(ck.path),
        "checkpoint_id": ck.id,
        "data": str(data),
        "n": int(len(x)),
        "beta": ck.beta,
        "recon": ck.recon,
        "mse": float(np.mean(pm["mse"])),
        "psnr": float(np.mean(pm["psnr"][np.isfinite(pm["psnr"])]))
        if np.isfinite(pm["psnr"]).any()
        else float("inf"),
        "ssim": float(np.mean(pm["ssim"])),
        "pcc": float(np.nanmean(pm["pcc"])),
        "ev": explained_variance(x, x_hat, mean_image),
        "mean_image_pcc": float(
            np.nanmean(pixel_metrics(x, np.broadcast_to(mean_image, x.shape), 1.0)["pcc"])
        ),
        "kl": float(kld.sum()),
        "active_units": int((kld > ACTIVE_NATS).sum()),
        "active_units_robust": int((kld > ROBUST_NATS).sum()),
        "mask": region.source,
        "lit_fraction": region.fraction,
        "contrast_ratio": contrast_ratio(x, x_hat, region.mask),
        "mean_image_contrast_ratio": contrast_ratio(
            x, np.broadcast_to(mean_image, x.shape), region.mask
        ),
    }
    values = per_frame_neg_elbo(ck, x, enc.mu, enc.logvar, x_hat)
    result |= foreign_report(values, reference(ck), str(data))
    result["resized"] = resize_notes(dataset)
    labels = dataset.labels.iloc[pick] if hasattr(dataset, "labels") else None
    groups = None
    if labels is not None and GROUP_COLUMN in labels and labels[GROUP_COLUMN].notna().all():
        groups = labels[GROUP_COLUMN].to_numpy()
    split = holdout_split(len(x), groups, seed)
    result["probe_split"] = f"held-out {len(split.test)} of {len(x)}" + (
        f", grouped by {split.grouped_by}" if split.grouped_by else ""
    )
    if probe_label:
        if labels is None or probe_label not in labels.columns:
            have = [] if labels is None else list(labels.columns)
            raise ValueError(f"{data}: no label column {probe_label!r} (have {have})")
        patterns = [dataset.pattern(int(i)) for i in pick]
        pats = np.stack(patterns) if patterns and all(p is not None for p in patterns) else None
        result |= code_probes(enc.mu, kld, x, labels[probe_label].to_numpy(), pats, split, seed)
    if pca:
        k = result["active_units"] if pca in ("auto", "curve") else int(pca)
        k = int(max(1, min(k, len(split.train) - 1)))
        test, fit_mean = x[split.test], x[split.train].mean(0)
        rec = np.clip(PCA(x[split.train], k).reconstruct(test, k), 0, 1)
        result |= {
            "pca_components": k,
            "pca_ev": explained_variance(test, rec, fit_mean),
            "pca_contrast_ratio": contrast_ratio(test, rec, region.mask),
            "ev_test": explained_variance(test, x_hat[split.test], fit_mean),
        }
        if pca == "curve":
            ks = curve_ks(
                result["active_units"],
                result["active_units_robust"],
                top=min(256, len(split.train) - 1),
            )
            result["pca_ev_curve"] = {str(kk): v for kk, v in pca_ev_curve(x, split, ks).items()}
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vae.evaluate", description=summary(__doc__))
    p.add_argument("--checkpoint", required=True, help="checkpoint or run directory")
    p.add_argument("--data", required=True, help=DATA_HELP)
    p.add_argument("--probe-label", help="label column for held-out linear probes of the code")
    p.add_argument(
        "--pca",
        help="also score PCA with K components ('auto' = active units; 'curve' adds EV against K)",
    )
    p.add_argument("--max-samples", type=int, default=0, help="evaluate a random subset")
    p.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    p.add_argument("--seed", type=int, default=0, help="seed of the subset and the probes' split")
    p.add_argument(
        "--json", action="store_true", help="print one JSON object instead of a table of metrics"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = evaluate(
            args.checkpoint,
            args.data,
            args.probe_label,
            args.pca,
            args.max_samples,
            args.device,
            args.seed,
        )
    except (CheckpointError, ImageError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for note in result["resized"]:
        print(f"note: {args.data}: {note}, the size the model was trained at", file=sys.stderr)
    if "foreign_note" in result:
        print(f"note: {result['foreign_note']}", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>24}  {v:.4f}" if isinstance(v, float) else f"{k:>24}  {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
