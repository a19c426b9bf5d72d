"""Metrics of a checkpoint on a dataset, as one JSON object:

    python -m vae.evaluate --checkpoint DIR --data DIR [--probe-label COLUMN] [--pca auto] --json

Reconstructions decode z = μ. `ev` is explained variance against the dataset's own mean image,
1 − MSE_model / MSE_mean: simulated fibre speckle shares a strong common component, so PCC alone
flatters any model that has learned only the mean.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from speckle.stats import contrast_batch
from vae.checkpoint import CheckpointError, load_checkpoint
from vae.data import ImageError, ImageFolder, Normalization
from vae.device import pick_device
from vae.inference import encode_dataset, kl_per_dim
from vae.loss import active_units
from vae.metrics import pixel_metrics

PROBE_TEST_FRACTION = 0.25
MAX_CLASSES = 50  # a label column with more distinct values is treated as continuous


def explained_variance(x: np.ndarray, x_hat: np.ndarray, mean_image: np.ndarray) -> float:
    return float(1.0 - np.mean((x_hat - x) ** 2) / np.mean((x - mean_image) ** 2))


def contrast_ratio(x: np.ndarray, x_hat: np.ndarray) -> float:
    """Mean over images of K_rec / K_in, with K = σ/μ over the whole frame (same on both sides)."""
    k_in, k_rec = contrast_batch(x), contrast_batch(x_hat)
    ok = np.isfinite(k_in) & np.isfinite(k_rec) & (k_in > 0)
    return float(np.mean(k_rec[ok] / k_in[ok])) if ok.any() else float("nan")


def linear_probe(features: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict:
    """Held-out score of a linear model predicting `labels` from `features`: accuracy for a
    categorical label, R² for a continuous one."""
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    values = np.asarray(labels)
    keep = ~_missing(values)
    features, values = features[keep], values[keep]
    categorical = values.dtype.kind not in "fc" or len(np.unique(values)) <= MAX_CLASSES
    if len(values) < 8 or len(np.unique(values)) < 2:
        return {"kind": "none", "score": float("nan"), "n": int(len(values))}
    strat = (
        values if categorical and np.min(np.unique(values, return_counts=True)[1]) >= 2 else None
    )
    f_tr, f_te, y_tr, y_te = train_test_split(
        features, values, test_size=PROBE_TEST_FRACTION, random_state=seed, stratify=strat
    )
    if categorical:
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        clf.fit(f_tr, y_tr.astype(str))
        score = float(clf.score(f_te, y_te.astype(str)))
        _, counts = np.unique(values.astype(str), return_counts=True)
        return {"kind": "accuracy", "score": score, "chance": float(counts.max() / counts.sum()),
                "n": int(len(values))}  # fmt: skip
    reg = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
    reg.fit(f_tr, y_tr.astype(float))
    return {
        "kind": "r2",
        "score": float(reg.score(f_te, y_te.astype(float))),
        "n": int(len(values)),
    }


def _missing(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind in "fc":
        return ~np.isfinite(values)
    return np.array(
        [v is None or (isinstance(v, float) and np.isnan(v)) or v == "" for v in values]
    )


def pca_baseline(x: np.ndarray, components: int, seed: int = 0) -> dict:
    """PCA fitted on one half of the data and scored on the other, as the model is scored on data
    it did not see."""
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    fit, test = order[: len(x) // 2], order[len(x) // 2 :]
    flat = x.reshape(len(x), -1)
    components = int(max(1, min(components, len(fit) - 1, flat.shape[1])))
    pca = PCA(n_components=components, random_state=seed).fit(flat[fit])
    rec = pca.inverse_transform(pca.transform(flat[test])).reshape(x[test].shape)
    mean_image = x[fit].mean(0)
    return {
        "pca_components": components,
        "pca_ev": explained_variance(x[test], rec, mean_image),
        "pca_contrast_ratio": contrast_ratio(x[test], np.clip(rec, 0, 1)),
    }


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
        import torch

        pick = np.sort(np.random.default_rng(seed).choice(len(dataset), max_samples, replace=False))
        subset = torch.utils.data.Subset(dataset, pick.tolist())
    else:
        pick = np.arange(len(dataset))
    enc = encode_dataset(ck.model, subset, keep_images=True, reconstruct=True)
    x, x_hat = enc.images, enc.recon
    pm = pixel_metrics(x, x_hat, data_range=1.0)
    kld = kl_per_dim(enc.mu, enc.logvar)
    result = {
        "checkpoint": str(ck.path), "checkpoint_id": ck.id, "data": str(data), "n": int(len(x)),
        "beta": ck.beta, "recon": ck.recon,
        "mse": float(np.mean(pm["mse"])),
        "psnr": float(np.mean(pm["psnr"][np.isfinite(pm["psnr"])])) if np.isfinite(pm["psnr"]).any() else float("inf"),
        "ssim": float(np.mean(pm["ssim"])), "pcc": float(np.nanmean(pm["pcc"])),
        "ev": explained_variance(x, x_hat, x.mean(0)),
        "mean_image_pcc": float(np.nanmean(pixel_metrics(x, np.broadcast_to(x.mean(0), x.shape), 1.0)["pcc"])),
        "kl": float(kld.sum()), "active_units": active_units(kld),
        "contrast_ratio": contrast_ratio(x, x_hat),
    }  # fmt: skip
    if probe_label:
        if probe_label not in dataset.labels.columns:
            raise ValueError(
                f"{data}: no label column {probe_label!r} (have {list(dataset.labels.columns)})"
            )
        labels = dataset.labels[probe_label].to_numpy()[pick]
        probe = linear_probe(enc.mu, labels, seed)
        key = "probe_accuracy" if probe["kind"] == "accuracy" else "probe_r2"
        result[key] = probe["score"]
        if "chance" in probe:
            result["probe_chance"] = probe["chance"]
        patterns = [dataset.pattern(int(i)) for i in pick]
        if all(p is not None for p in patterns) and patterns:
            flat = np.stack(patterns).reshape(len(patterns), -1)
            result["pattern_" + key] = linear_probe(flat, labels, seed)["score"]
    if pca:
        k = result["active_units"] if pca == "auto" else int(pca)
        result |= pca_baseline(x, k, seed)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vae.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, help="checkpoint or run directory")
    p.add_argument("--data", required=True, help="folder of images")
    p.add_argument("--probe-label", help="label column for a held-out linear probe on μ")
    p.add_argument("--pca", help="also score PCA with K components ('auto' = active units)")
    p.add_argument("--max-samples", type=int, default=0, help="evaluate a random subset")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    try:
        result = evaluate(args.checkpoint, args.data, args.probe_label, args.pca,
                          args.max_samples, args.device, args.seed)  # fmt: skip
    except (CheckpointError, ImageError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>24}  {v:.4f}" if isinstance(v, float) else f"{k:>24}  {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
