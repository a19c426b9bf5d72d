"""Score reconstructors on held-out pairs: `python -m inverse.evaluate --checkpoint RECON ...
--data DIR --json`.

Per reconstructor: pattern PCC and SSIM against the true patterns, and the digit accuracy of a
classifier (logistic regression on true training patterns) applied to the reconstruction, each
with a bootstrap 95% interval over patterns; beside them, in the same run, the mean training
pattern (the floor) and the classifier on the true patterns (the ceiling). --photons puts the
test frames through speckle.free's camera first.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from common.checkpoint_files import CheckpointError
from common.cli import summary
from frames import Normalization
from inverse.checkpoint import Reconstructor
from inverse.data import Camera, load_pairs, with_camera
from inverse.features import lit_mask
from inverse.reconstruct import load_for_cli, reconstruct
from inverse.scoring import PatternClassifier, score

PROG = "python -m inverse.evaluate"
CLASS_LABEL = "digit"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=summary(__doc__))
    p.add_argument(
        "--checkpoint", action="append", required=True, help="a reconstructor (repeatable)"
    )
    p.add_argument("--data", required=True, help="held-out pairs (frames and their patterns)")
    p.add_argument(
        "--train-data",
        default="",
        help="the training pairs, for the mean pattern and the classifier (default: the first "
        "checkpoint's recorded data)",
    )
    p.add_argument("--vae", default="", help="the VAE the μ read-outs were trained on")
    p.add_argument("--n", type=int, default=0, help="score the first N pairs (0: all)")
    p.add_argument(
        "--photons", type=float, default=0.0, help="camera photo-electrons per lit pixel (0: none)"
    )
    p.add_argument("--read-noise", type=float, default=0.0, help="camera read noise, e- rms")
    p.add_argument("--bit-depth", type=int, default=0, help="camera ADC bits (0: none)")
    p.add_argument("--noise-seed", type=int, default=1, help="seed of the camera's noise")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return p


def evaluate_arrays(
    recs: dict[str, Reconstructor],
    frames: np.ndarray,
    patterns: np.ndarray,
    train_patterns: np.ndarray,
    labels: np.ndarray | None = None,
    train_labels: np.ndarray | None = None,
    vae_model=None,
) -> dict:
    """Every reconstructor's scores on (frames, patterns), and the references, in one run."""
    clf = None
    out: dict = {"n": int(len(patterns)), "methods": {}}
    if labels is not None and train_labels is not None:
        clf = PatternClassifier().fit(train_patterns, train_labels)
        out["classifier_on_truth"] = score(patterns, patterns, clf, labels)["digit_accuracy"]
    mean = np.broadcast_to(train_patterns.mean(0), patterns.shape)
    out["mean_pattern"] = score(mean, patterns, clf, labels)
    mu = None
    for name, rec in recs.items():
        t0 = time.perf_counter()
        if rec.reads_mu and mu is None and vae_model is not None:
            # Lazy: torch is only needed by the μ read-outs.
            from inverse.features import encode_mu

            mu = encode_mu(vae_model, frames)
        pred = reconstruct(rec, frames, vae_model, mu if rec.reads_mu else None)
        out["methods"][name] = score(pred, patterns, clf, labels) | {
            "seconds_per_frame": (time.perf_counter() - t0) / max(len(frames), 1),
            "checkpoint": str(rec.path) if rec.path else None,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        recs, vae = load_for_cli(args.checkpoint, args.vae)
        pre = {repr(r.config["preprocessing"]) for r in recs}
        if len(pre) > 1:
            raise ValueError(
                "the checkpoints read frames with different preprocessing; score them apart"
            )
        first = recs[0]
        norm = Normalization.from_dict(first.config["preprocessing"]["normalization"])
        train_data = args.train_data or (first.config.get("dataset") or {}).get("path", "")
        if not train_data or not Path(train_data).is_dir():
            raise ValueError(f"--train-data: {train_data or 'none recorded'}: no such folder")
        test = load_pairs(args.data, first.image_size, norm)
        train = load_pairs(train_data, first.image_size, norm)
        if args.n:
            keep = slice(0, args.n)
            test = type(test)(
                test.frames[keep],
                test.linear[keep],
                test.patterns[keep],
                test.labels.iloc[keep],
                test.fingerprint,
                test.simulation,
                test.root,
            )
        if args.photons:
            cam = Camera(args.photons, args.read_noise, args.bit_depth or None, args.noise_seed)
            test = with_camera(test, cam, norm, lit_mask(train.linear))
        has = CLASS_LABEL in test.labels.columns and CLASS_LABEL in train.labels.columns
        names = {}
        for r in recs:
            names[r.method if r.method not in names else f"{r.method} ({r.path})"] = r
        result = evaluate_arrays(
            names,
            test.frames,
            test.patterns,
            train.patterns,
            test.labels[CLASS_LABEL].to_numpy() if has else None,
            train.labels[CLASS_LABEL].to_numpy() if has else None,
            vae.model if vae is not None else None,
        )
    except (CheckpointError, ValueError, OSError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    result |= {
        "data": str(args.data),
        "train_data": str(train_data),
        "photons": args.photons or None,
    }
    if args.json:
        print(json.dumps(result))
    else:
        for name, m in result["methods"].items():
            print(
                f"{name:14s} PCC {m['pcc']:.3f} [{m['pcc_ci95'][0]:.3f}, {m['pcc_ci95'][1]:.3f}]  SSIM {m['ssim']:.3f}"
            )
        print(f"{'mean pattern':14s} PCC {result['mean_pattern']['pcc']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
