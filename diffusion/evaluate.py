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

from diffusion import checkpoint as gck
from diffusion.data import dataset_patterns, open_dataset, recorded_frame
from diffusion.sampling import GUIDANCE, SAMPLER, STEPS
from diffusion.schedulers import SAMPLERS
from diffusion.scoring import score, summary
from vae import checkpoint as vck
from vae.data import ImageError, ImageFolder, Normalization
from vae.lit_region import dataset_region

REFERENCES = ("vae_ceiling", "regressor", "nearest", "random", "tm_fit")
STEP_SWEEP = (5, 10, 20, 50)
GUIDANCE_SWEEP = (1.0, 1.5, 2.0, 3.0, 4.0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m diffusion.evaluate", description=__doc__.splitlines()[0]
    )
    p.add_argument("--checkpoint", required=True, help="generator directory (or its run)")
    p.add_argument("--data", required=True, help="held-out folder of (pattern, speckle) pairs")
    p.add_argument("--vae", default="", help="the VAE (default: the path the generator records)")
    p.add_argument("--train-data", default="", help="training pairs for the nearest-pattern, "
                   "random, classifier and TM references (default: the generator's own)")  # fmt: skip
    p.add_argument("--n-patterns", type=int, default=500, help="held-out pairs scored")
    p.add_argument("--samples", type=int, default=8, help="K samples per pattern")
    p.add_argument("--steps", type=int, default=STEPS)
    p.add_argument("--sampler", default=SAMPLER, choices=SAMPLERS)
    p.add_argument("--guidance", type=float, default=GUIDANCE)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sweep-patterns", type=int, default=200, help="pairs used by the sweeps")
    p.add_argument("--no-sweeps", dest="sweeps", action="store_false")
    p.add_argument("--tm-steps", type=int, default=1500, help="Adam steps of the TM fit (0 = skip)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--out", default="", help="also write the JSON here")
    return p


def _spaced(n: int, k: int) -> np.ndarray:
    return (
        np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(int)) if n else np.zeros(0, int)
    )


def _images(dataset: ImageFolder, idx: np.ndarray) -> np.ndarray:
    return np.stack([dataset.image(int(i)) for i in idx]) if len(idx) else np.zeros((0, 1, 1))


def evaluate(args: argparse.Namespace, log=print) -> dict:
    import torch

    from diffusion.references import DigitClassifier, fit_transmission_matrix, nearest_patterns
    from diffusion.sampling import regress_latents, sample_latents
    from vae.inference import decode, encode_dataset

    if args.threads:
        torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    gconf = gck.read_generator_config(args.checkpoint)
    vae_path = args.vae or gconf["vae"].get("path", "")
    vae = vck.load_checkpoint(vae_path)
    gen = gck.load_generator(args.checkpoint, vae.id, vae_path)
    model, size = gen.model, gen.denoiser_config.pattern_size

    held = open_dataset(vae, args.data)
    idx = _spaced(len(held), args.n_patterns)
    patterns = dataset_patterns(held, size)[idx]
    truth = _images(held, idx)
    region = dataset_region(held.root, vae.model_config.image_size, truth)
    mask = region.mask
    log(f"scoring {len(idx)} held-out pairs of {args.data} in the lit region ({region.source})")

    result: dict = {"n_patterns": int(len(idx)), "samples": args.samples, "steps": args.steps,
                    "sampler": args.sampler, "guidance": args.guidance, "seed": args.seed,
                    "mask": region.source, "generator": str(gen.path), "generator_id": gen.id,
                    "vae": str(vae_path), "vae_id": vae.id, "data": str(args.data)}  # fmt: skip

    t = time.perf_counter()
    s = sample_latents(
        model, patterns, args.samples, args.steps, args.sampler, args.guidance, args.seed
    )
    result["sample_seconds"] = time.perf_counter() - t
    gen_imgs = decode(vae.model, s.latents.reshape(-1, s.latents.shape[-1])).reshape(
        len(idx), args.samples, *truth.shape[1:]
    )
    singles = [summary(score(truth, gen_imgs[:, j], mask)) for j in range(args.samples)]
    for key in singles[0]:
        result[key] = float(np.mean([m[key] for m in singles]))
    result["pcc_per_sample"] = [m["pcc"] for m in singles]
    mean_img = gen_imgs.mean(axis=1)
    result["mean_of_k"] = summary(score(truth, mean_img, mask))

    refs: dict[str, dict] = {}
    enc = encode_dataset(vae.model, torch.utils.data.Subset(held, idx.tolist()))
    refs["vae_ceiling"] = summary(score(truth, decode(vae.model, enc.mu), mask))
    if gen.regressor is not None:
        refs["regressor"] = summary(
            score(truth, decode(vae.model, regress_latents(gen.regressor, patterns)), mask)
        )

    train_path = args.train_data or gconf["dataset"]["path"]
    train = open_dataset(vae, train_path)
    train_patterns = dataset_patterns(train, size)
    near, sim = nearest_patterns(train_patterns, patterns)
    refs["nearest"] = summary(score(truth, _images(train, near), mask))
    result["nearest_cosine"] = float(np.mean(sim))
    rng = np.random.default_rng(args.seed)
    refs["random"] = summary(
        score(truth, _images(train, rng.integers(0, len(train), len(idx))), mask)
    )

    if args.tm_steps > 0:
        # Fitted to the recorded intensities (fixed range), not to per-image normalized frames.
        raw = ImageFolder(train_path, vae.model_config.image_size, Normalization(mode="fixed"))
        fit_idx = _spaced(len(raw), 8192)
        tm = fit_transmission_matrix(
            train_patterns[fit_idx], _images(raw, fit_idx), mask, steps=args.tm_steps
        )
        # The fit is in fixed-range units (counts / 65535): back to counts, then as recorded.
        pred = np.stack([recorded_frame(p * 65535.0, vae) for p in tm.predict(patterns)])
        refs["tm_fit"] = summary(score(truth, pred, mask)) | {"seconds": tm.seconds}
    result["references"] = refs
    for name, m in refs.items():
        result[f"{name}_pcc"] = m["pcc"]
    log(
        f"single-sample PCC {result['pcc']:.3f}; "
        + ", ".join(f"{n} {m['pcc']:.3f}" for n, m in refs.items())
    )

    labels = held.labels
    if "digit" in labels.columns and "digit" in train.labels.columns:
        fit_idx = _spaced(len(train), 4000)
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
        sub = _spaced(len(idx), args.sweep_patterns)
        sweep = {"patterns": int(len(sub)), "steps": {}, "guidance": {}, "samplers": {}}

        def single_pcc(steps: int, sampler: str, guidance: float) -> float:
            lat = sample_latents(
                model, patterns[sub], 1, steps, sampler, guidance, args.seed
            ).latents[:, 0]
            return summary(score(truth[sub], decode(vae.model, lat), mask))["pcc"]

        for n_steps in STEP_SWEEP:
            sweep["steps"][str(n_steps)] = single_pcc(n_steps, args.sampler, args.guidance)
        for w in GUIDANCE_SWEEP:
            sweep["guidance"][str(w)] = single_pcc(args.steps, args.sampler, w)
        for name in SAMPLERS:
            sweep["samplers"][name] = single_pcc(args.steps, name, args.guidance)
        result["sweeps"] = sweep

    if "state" in labels.columns:
        from diffusion.diversity import diversity

        result["diversity"] = diversity(model, vae, held, idx, patterns, gen_imgs, mask)
    result["seconds"] = time.perf_counter() - t_start
    return result


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
    text = json.dumps(result)  # one line: a JSON Lines stream when several runs are appended
    if args.out:
        from vae.atomic import atomic_write

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
