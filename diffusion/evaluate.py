"""Score a generator on held-out pairs: `python -m diffusion.evaluate --checkpoint RUN --data
HELD_OUT --json`.

Every figure is per image, inside the lit region, against the true speckle of the held-out
pattern, beside references computed in the same run: the VAE's reconstruction of the truth (the
ceiling through this latent space), the deterministic regressor, the nearest training pattern's
speckle, a random training speckle and a transmission matrix fitted to the training pairs. Also:
PCC against sampler steps and guidance weight, the mean of K samples beside a single sample, and,
on a set recorded through several fibre states, the diversity of samples beside the truth's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from common.atomic import atomic_write
from common.bootstrap import N_BOOT, bootstrap_mean
from diffusion import checkpoint as gck
from diffusion.data import dataset_patterns, open_dataset, recorded_frame
from diffusion.diversity import diversity
from diffusion.references import DigitClassifier, nearest_patterns
from diffusion.sampling import (
    GUIDANCE,
    SAMPLER,
    SAMPLES,
    STEPS,
    regress_latents,
    sample_latents,
)
from diffusion.schedulers import SAMPLERS
from diffusion.scoring import score, summary
from diffusion.train_set import training_set
from frames import ImageError, ImageFolder, Normalization, spaced_indices
from speckle.lit_region import dataset_region
from speckle.tm_fit import fit_transmission_matrix
from vae import checkpoint as vck
from vae.foreign import foreign_report, per_frame_neg_elbo, resize_notes
from vae.foreign import reference as vae_reference
from vae.inference import decode, encode_dataset

REFERENCES = ("vae_ceiling", "regressor", "nearest", "random", "tm_fit")
STEP_SWEEP = (5, 10, 20, 50)
GUIDANCE_SWEEP = (1.0, 1.5, 2.0, 3.0, 4.0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m diffusion.evaluate",
        description="Score a generator on held-out (pattern, speckle) pairs beside its references, "
        "with bootstrap 95% intervals over patterns and noise draws.",
    )
    p.add_argument("--checkpoint", required=True, help="The generator's directory (or its run).")
    p.add_argument(
        "--data",
        required=True,
        help="The held-out pairs: a folder, stack or recording with an input pattern per frame.",
    )
    p.add_argument(
        "--vae", default="", help="The VAE's checkpoint (default: the path the generator records)."
    )
    p.add_argument(
        "--train-data",
        default="",
        help="The training pairs for the nearest-pattern, random, classifier and transmission "
        "matrix references (default: the generator's own; simulated again from its record when "
        "that folder is not here).",
    )
    p.add_argument("--n-patterns", type=int, default=500, help="How many held-out pairs to score.")
    p.add_argument("--samples", type=int, default=SAMPLES, help="Samples drawn per pattern.")
    p.add_argument("--steps", type=int, default=STEPS, help="Sampler steps.")
    p.add_argument("--sampler", default=SAMPLER, choices=SAMPLERS, help="The sampler.")
    p.add_argument("--guidance", type=float, default=GUIDANCE, help="Classifier-free guidance.")
    p.add_argument("--seed", type=int, default=0, help="The seed of every noise draw.")
    p.add_argument(
        "--sweep-patterns",
        type=int,
        default=200,
        help="How many of the pairs the sweeps over steps, guidance and sampler use (each with "
        "every sample).",
    )
    p.add_argument(
        "--no-sweeps", dest="sweeps", action="store_false", help="Skip the sweeps (faster)."
    )
    p.add_argument(
        "--tm-steps",
        type=int,
        default=1500,
        help="Adam steps of the transmission matrix fit (0 skips that reference).",
    )
    p.add_argument("--threads", type=int, default=0, help="Torch threads (0: torch's default).")
    p.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="No progress bar while a missing training set is simulated again.",
    )
    p.add_argument("--json", action="store_true", help="Print the result as one line of JSON.")
    p.add_argument("--out", default="", help="Also write the JSON result to this file.")
    return p


def _images(dataset: ImageFolder, idx: np.ndarray) -> np.ndarray:
    return np.stack([dataset.image(int(i)) for i in idx]) if len(idx) else np.zeros((0, 1, 1))


def _ci(values: np.ndarray, seed: int) -> list[float]:
    return bootstrap_mean(values, seed=seed)["ci95"]


def evaluate(args: argparse.Namespace, log=print) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    gconf = gck.read_generator_config(args.checkpoint)
    vae_path = args.vae or gconf["vae"].get("path", "")
    vae = vck.load_checkpoint(vae_path)
    gen = gck.load_generator(args.checkpoint, vae.id, vae_path)
    model, size = gen.model, gen.denoiser_config.pattern_size
    # Before any sampling: a missing training set fails (or is simulated again) first.
    train_set = training_set(gconf, args.train_data, log=log, progress=args.progress)

    held = open_dataset(vae, args.data)
    idx = spaced_indices(len(held), args.n_patterns)
    patterns = dataset_patterns(held, size)[idx]
    truth = _images(held, idx)
    region = dataset_region(held.root, vae.model_config.image_size, truth)
    mask = region.mask
    log(f"scoring {len(idx)} held-out pairs of {args.data} in the lit region ({region.source})")

    result: dict = {
        "n_patterns": int(len(idx)),
        "samples": args.samples,
        "steps": args.steps,
        "sampler": args.sampler,
        "guidance": args.guidance,
        "seed": args.seed,
        "mask": region.source,
        "generator": str(gen.path),
        "generator_id": gen.id,
        "vae": str(vae_path),
        "vae_id": vae.id,
        "data": str(args.data),
        "train_data": str(train_set.path),
        "train_data_source": train_set.source,
        "train_data_check": train_set.check,
        "noise": "drawn per (pattern, sample) from the seed",
        "interval": f"bootstrap 95% percentile interval, {N_BOOT} resamples of patterns and, "
        "within each, of noise draws",
        "resized": resize_notes(held),
    }

    t = time.perf_counter()
    s = sample_latents(
        model, patterns, args.samples, args.steps, args.sampler, args.guidance, args.seed
    )
    result["sample_seconds"] = time.perf_counter() - t
    gen_imgs = decode(vae.model, s.latents.reshape(-1, s.latents.shape[-1])).reshape(
        len(idx), args.samples, *truth.shape[1:]
    )
    per = [score(truth, gen_imgs[:, j], mask) for j in range(args.samples)]
    singles = [summary(m) for m in per]
    for key in singles[0]:
        result[key] = float(np.mean([m[key] for m in singles]))
    pcc = np.stack([m["pcc"] for m in per], axis=1)  # (N, K)
    result["pcc_ci95"] = _ci(pcc, args.seed)
    result["pcc_per_sample"] = [m["pcc"] for m in singles]
    mean_scores = score(truth, gen_imgs.mean(axis=1), mask)
    result["mean_of_k"] = summary(mean_scores) | {"pcc_ci95": _ci(mean_scores["pcc"], args.seed)}

    refs: dict[str, dict] = {}

    def reference(name: str, pred: np.ndarray, **extra) -> None:
        m = score(truth, pred, mask)
        refs[name] = summary(m) | {"pcc_ci95": _ci(m["pcc"], args.seed)} | extra

    enc = encode_dataset(vae.model, torch.utils.data.Subset(held, idx.tolist()))
    ceiling = decode(vae.model, enc.mu)
    reference("vae_ceiling", ceiling)
    # How far the held-out frames are from the VAE (the −ELBO rule of vae.evaluate).
    values = per_frame_neg_elbo(vae, truth, enc.mu, enc.logvar, ceiling)
    result |= foreign_report(values, vae_reference(vae), str(args.data))
    if gen.regressor is not None:
        reference("regressor", decode(vae.model, regress_latents(gen.regressor, patterns)))

    train = open_dataset(vae, train_set.path)
    train_patterns = dataset_patterns(train, size)
    near, sim = nearest_patterns(train_patterns, patterns)
    reference("nearest", _images(train, near))
    result["nearest_cosine"] = float(np.mean(sim))
    rng = np.random.default_rng(args.seed)
    reference("random", _images(train, rng.integers(0, len(train), len(idx))))

    if args.tm_steps > 0:
        # Fitted to the recorded intensities (fixed range), not to per-image normalized frames.
        raw = ImageFolder(train_set.path, vae.model_config.image_size, Normalization(mode="fixed"))
        fit_idx = spaced_indices(len(raw), 8192)
        tm = fit_transmission_matrix(
            train_patterns[fit_idx], _images(raw, fit_idx), mask, steps=args.tm_steps
        )
        # The fit is in fixed-range units (counts / 65535): back to counts, then as recorded.
        pred = np.stack([recorded_frame(p * 65535.0, vae) for p in tm.predict(patterns)])
        reference("tm_fit", pred, seconds=tm.seconds)
    result["references"] = refs
    for name, m in refs.items():
        result[f"{name}_pcc"] = m["pcc"]
    log(
        f"single-sample PCC {result['pcc']:.3f}; "
        + ", ".join(f"{n} {m['pcc']:.3f}" for n, m in refs.items())
    )

    labels = held.labels
    if "digit" in labels.columns and "digit" in train.labels.columns:
        fit_idx = spaced_indices(len(train), 4000)
        clf = DigitClassifier().fit(
            _images(train, fit_idx), train.labels["digit"].to_numpy()[fit_idx], mask
        )
        y = labels["digit"].to_numpy()[idx]
        acc_true = clf.accuracy(truth, y)
        acc_gen = float(np.mean([clf.accuracy(gen_imgs[:, j], y) for j in range(args.samples)]))
        result["classifier_accuracy_true"] = acc_true
        result["classifier_accuracy_generated"] = acc_gen
        result["classifier_accuracy_ratio"] = acc_gen / acc_true if acc_true > 0 else float("nan")

    if args.sweeps:
        result["sweeps"] = sweeps(args, model, vae, patterns, truth, mask, idx)

    if "state" in labels.columns:
        result["diversity"] = diversity(model, vae, held, idx, patterns, gen_imgs, mask)
    result["seconds"] = time.perf_counter() - t_start
    return result


def sweeps(args, model, vae, patterns, truth, mask, idx) -> dict:
    """Single-sample PCC against steps, guidance and sampler, one factor at a time around the
    chosen settings, on `sweep_patterns` of the pairs with every one of the `samples` draws;
    each value with its interval (`<factor>_ci95`)."""
    sub = spaced_indices(len(idx), args.sweep_patterns)
    out: dict = {"patterns": int(len(sub)), "samples": args.samples}

    def single_pcc(steps: int, sampler: str, guidance: float) -> tuple[float, list[float]]:
        lat = sample_latents(
            model, patterns[sub], args.samples, steps, sampler, guidance, args.seed
        )
        imgs = decode(vae.model, lat.latents.reshape(-1, lat.latents.shape[-1]))
        imgs = imgs.reshape(len(sub), args.samples, *truth.shape[1:])
        pcc = np.stack([score(truth[sub], imgs[:, j], mask)["pcc"] for j in range(args.samples)], 1)
        return float(pcc.mean()), _ci(pcc, args.seed)

    grid = {
        "steps": [(str(n), (n, args.sampler, args.guidance)) for n in STEP_SWEEP],
        "guidance": [(str(w), (args.steps, args.sampler, w)) for w in GUIDANCE_SWEEP],
        "samplers": [(name, (args.steps, name, args.guidance)) for name in SAMPLERS],
    }
    for factor, points in grid.items():
        out[factor], out[f"{factor}_ci95"] = {}, {}
        for label, setting in points:
            out[factor][label], out[f"{factor}_ci95"][label] = single_pcc(*setting)
    return out


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    if args.out and not Path(args.out).resolve().parent.is_dir():
        print(f"error: {args.out}: its folder does not exist", file=sys.stderr)
        return 2
    try:
        result = evaluate(args, log=lambda m: print(m, file=sys.stderr))
    except (ImageError, vck.CheckpointError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for note in result["resized"]:
        print(f"note: {args.data}: {note}, the size the VAE was trained at", file=sys.stderr)
    if "foreign_note" in result:
        print(f"note: {result['foreign_note']}", file=sys.stderr)
    text = json.dumps(result)  # one line: a JSON Lines stream when several runs are appended
    if args.out:
        try:
            atomic_write(Path(args.out), text + "\n")
        except OSError as e:
            print(f"error: {args.out}: cannot write ({e.strerror or e})", file=sys.stderr)
            print(text)
            return 2
    if args.json:
        print(text)
    else:
        rows = [("generator (1 sample)", result)] + [
            (n, m) for n, m in result["references"].items()
        ]
        print(f"{'':24s} {'PCC':>6s} {'SSIM':>6s} {'K ratio':>8s} {'grain':>6s}")
        for name, m in rows:
            print(
                f"{name:24s} {m['pcc']:6.3f} {m['ssim']:6.3f} {m['contrast_ratio']:8.3f} {m['grain_ratio']:6.3f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
