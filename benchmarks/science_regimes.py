"""The regimes section of docs/validation.md: when a learned model of a fibre is worth having. A
VAE and its generator are scored beside physics baselines and oracles in four regimes
(`benchmarks.regime_sets`): (a) held-out handwriting through the fibre in one state, (b) pattern
families, (c) a moving fibre, (d) camera noise.

    python -m benchmarks.science_regimes --vae models/demo --generator models/generators/demo
    python -m benchmarks.science_regimes --vae V --generator G --work DIR --only physics
    python -m benchmarks.science_regimes --render-only

Each pattern has S true states (one in a fixed fibre) and the generator K samples. Rows: the
generator (one sample, the mean of K, coverage, energy score: `diffusion.ensemble`), the
regressor, the VAE's reconstruction of the truth (ceiling), the nearest reference pattern's
frame, a TM fitted in one state, a TM fitted on pairs pooled over the states (alone, and with
its residual spread as an ensemble), PCA of the speckle at the VAE's K (a ceiling like the
VAE's), and two oracles: the per-state true matrix and an ideal sampler (K frames through states
drawn from the truth's distribution). The rows of each measured pair are kept in ROWS (git
ignores it), keyed by the generator, and every pair's tables are rendered between the markers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks import regime_sets as rs
from benchmarks.regimes_doc import BEGIN, END, ROW_NAMES, ROWS, TM_START, render, shown
from benchmarks.science_inverse import kept_section, write_section
from common.atomic import atomic_write
from common.bootstrap import N_BOOT, bootstrap_mean
from diffusion import checkpoint as gck
from diffusion.data import recorded_frame, simulated_counts
from diffusion.ensemble import coverage, energy_score, pcc_grid, unit_frames
from diffusion.references import nearest_patterns
from diffusion.sampling import GUIDANCE, SAMPLER, STEPS, regress_latents, sample_latents
from diffusion.schedulers import SAMPLERS
from speckle.gaussian_fibre import core_mask
from vae import checkpoint as vck
from vae.inference import decode, encode_dataset
from vae.kl import active_units, kl_per_dim

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "validation.md"
N_PATTERNS, STATES, SAMPLES, N_REF, TM_STEPS = 200, 8, 8, 8192, 1000
TM_STRENGTHS = (0.4, 0.8)  # --tm-start: 2 and 4 of the 5 steps
PCA_KEPT = (0.99, 0.999)  # variance fractions whose component counts the table states
KL_FRAMES = 1024  # reference frames encoded for the VAE's K (active dims)


def fit_pca(frames: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The centre, the first k components (k, L) of frames (n, L), and the fraction of their
    variance kept at each number of components."""
    centre = frames.mean(0)
    _, sv, vt = np.linalg.svd(frames - centre, full_matrices=False)
    power = sv.astype(np.float64) ** 2
    return centre, vt[:k], np.cumsum(power) / power.sum()


def as_seen(intensity: np.ndarray, meta: dict, vae) -> np.ndarray:
    """Intensities (..., H, W) as the VAE sees a recorded frame of the training set."""
    flat = intensity.reshape(-1, *intensity.shape[-2:])
    counts = simulated_counts(flat, meta)
    out = np.stack([recorded_frame(c, vae) for c in counts])
    return out.reshape(*intensity.shape[:-2], *out.shape[-2:])


def paired(pred_u: np.ndarray, truth_u: np.ndarray) -> dict:
    """A prediction per true state (N, S, L): its PCC with that state."""
    return {"pcc": (pred_u * truth_u).sum(-1).mean(1)}


def ensemble(pred_u: np.ndarray, truth_u: np.ndarray, mean_u: np.ndarray | None = None) -> dict:
    """K predictions (N, K, L) against the S true states (N, S, L); one prediction is a
    deterministic predictor (its PCC and energy score)."""
    grid = pcc_grid(pred_u, truth_u)
    row = {"pcc": grid.mean(2), "energy": energy_score(pred_u, truth_u)}
    if pred_u.shape[1] > 1:
        row["coverage"] = coverage(grid)
        if mean_u is not None:
            row["mean_of_k"] = pcc_grid(mean_u[:, None], truth_u).mean((1, 2))
    return row


def renormed(u: np.ndarray) -> np.ndarray:
    u = u - u.mean(-1, keepdims=True)
    return u / np.maximum(np.linalg.norm(u, axis=-1, keepdims=True), 1e-30)


def load_pair(vae_path: str, generator_path: str):
    vae = vck.load_checkpoint(vae_path)
    gen = gck.load_generator(generator_path, vae.id, vae_path)
    meta = gck.read_generator_config(generator_path).get("dataset", {}).get("simulation")
    if not meta or meta.get("kind") != "mmf":
        raise ValueError(f"{generator_path}: its config records no simulated training set")
    return vae, gen, meta


def references(reg, x, seed, meta, vae, mask, ref_x, ref_v, k, pca, tms, args):
    """A regime's true states (unit frames (N, S, L)) and every row that does not read the
    generator: the VAE's ceiling, PCA, the nearest pattern, the TMs and the oracles."""
    observed, clean = rs.truth_frames(reg, x, 1 if reg.fixed else args.states, seed + 1)
    ideal, _ = rs.truth_frames(reg, x, args.samples, seed + 2)
    truth_v = as_seen(observed, meta, vae)  # (N, S, H, W)
    truth_u = unit_frames(truth_v, mask)
    n, s = truth_v.shape[:2]
    rows: dict[str, dict] = {}
    flat = torch.from_numpy(truth_v.reshape(n * s, 1, *truth_v.shape[-2:]))
    recon = encode_dataset(vae.model, flat, reconstruct=True).recon.reshape(truth_v.shape)
    rows["vae_ceiling"] = paired(unit_frames(recon, mask), truth_u)
    centre, basis, _ = pca
    z = truth_v[..., mask] - centre
    rows["pca"] = paired(renormed(centre + (z @ basis.T) @ basis), truth_u)
    near, _ = nearest_patterns(ref_x, x)
    rows["nearest"] = ensemble(unit_frames(ref_v[near][:, None], mask), truth_u)
    one, pooled = tms(reg.fibre)
    rows["tm_one"] = ensemble(unit_frames(one[0].predict(x)[:, None], mask), truth_u)
    pred_u = unit_frames(pooled[0].predict(x), mask)
    rows["tm_pooled"] = ensemble(pred_u[:, None], truth_u)
    # The pooled TM as a probabilistic forecast: its prediction plus residuals it left on
    # K reference pairs drawn at random (standardized frames, so powers need no matching).
    ref_pred_u = unit_frames(pooled[0].predict(ref_x[:2048]), mask)
    resid = unit_frames(pooled[1][:2048], mask) - ref_pred_u
    pick = np.random.default_rng(args.seed).integers(0, len(resid), (n, args.samples))
    members = renormed(pred_u[:, None] + resid[pick])
    rows["tm_pooled_spread"] = ensemble(members, truth_u, renormed(members.mean(1)))
    rows["oracle_state"] = paired(unit_frames(clean, mask), truth_u)
    ideal_v = as_seen(ideal, meta, vae)
    rows["oracle_sampler"] = ensemble(
        unit_frames(ideal_v, mask), truth_u, unit_frames(ideal_v.mean(1), mask)
    )
    return truth_u, rows


def sampled(gen, vae, x, mask, truth_u, args, start=None, strength: float = 1.0) -> dict:
    """The generator's ensemble row: K samples per pattern, decoded, against the true states."""
    lat = sample_latents(
        gen.model,
        x,
        args.samples,
        args.steps,
        args.sampler,
        args.guidance,
        args.seed,
        start=start,
        strength=strength,
    )
    imgs = decode(vae.model, lat.latents.reshape(-1, lat.latents.shape[-1]))
    imgs = imgs.reshape(len(x), args.samples, *imgs.shape[-2:])
    return ensemble(unit_frames(imgs, mask), truth_u, unit_frames(imgs.mean(1), mask))


def tm_starts(reg, x, gen, vae, meta, mask, truth_u, tms, args) -> dict[str, dict]:
    """The generator started from the pooled TM's prediction (encoded by the VAE), at each
    strength of `--tm-start`: the TM carries what does not depend on the pattern family, and
    the generator's last steps add the spread of the fibre's states."""
    if not args.tm_start:
        return {}
    pooled = tms(reg.fibre)[1][0]
    seen = as_seen(pooled.predict(x), meta, vae)
    start = np.asarray(encode_dataset(vae.model, torch.from_numpy(seen[:, None])).mu, np.float32)
    return {
        f"{TM_START}{strength:g}": sampled(gen, vae, x, mask, truth_u, args, start, strength)
        for strength in args.tm_start
    }


def recipe(meta: dict, generator: str | None) -> list[str]:
    """The commands that made the training set and the generator, as recorded, with absolute
    paths cut to models/... or their last part."""

    def clean(cmd) -> str:
        words = cmd if isinstance(cmd, list) else str(cmd).split()
        out = [w for w in words if w]
        out = [
            shown(w) if "models/" in w else Path(w).name if w.startswith("/") else w for w in out
        ]
        return " ".join(out)

    cmds = [clean(meta["command"])] if meta.get("command") else []
    config = gck.read_generator_config(generator) if generator else {}
    return cmds + ([clean(config["command"])] if config.get("command") else [])


def run(args: argparse.Namespace, log=print) -> dict | None:
    t0 = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    gen = None
    if args.record is not None:
        meta = json.loads(args.record.read_text())
        vae = None if args.only == "physics" else vck.load_checkpoint(args.vae)
    else:
        vae, gen, meta = load_pair(args.vae, args.generator)
    if gen is None and args.only is None:
        raise ValueError("scoring needs the generator's config, not --record")
    train = rs.record_fibre(meta)
    mask = core_mask(train.size, train.core)
    family = str(meta.get("family", "digits"))
    ref_x = rs.family_patterns(family, "train", args.n_ref, rs.REF_SEED, meta)
    ref_digest = hashlib.sha256(ref_x.tobytes()).hexdigest()[:16]  # the training families
    work = args.work
    every = list(enumerate(rs.regimes(meta)))  # a regime's seed is its place among them all
    regimes = [(i, r) for i, r in every if r.letter in args.regimes]
    fits: dict = {}

    def tms(f):
        key = rs.fibre_key(f)
        if key not in fits:
            one = rs.fitted_tm(f, "one", ref_x, args.tm_steps, work, log)
            pooled = (
                one
                if not f.perturbed
                else rs.fitted_tm(f, "pooled", ref_x, args.tm_steps, work, log)
            )
            fits[key] = (one, pooled)
        return fits[key]

    for _, reg in regimes:
        tms(reg.fibre)
    if args.only == "physics":
        return None
    ref_frames = tms(train)[1][1]  # the training distribution: pooled over its states
    ref_v = as_seen(ref_frames, meta, vae)
    enc = encode_dataset(vae.model, torch.from_numpy(ref_v[:KL_FRAMES, None]))
    k = min(active_units(kl_per_dim(enc.mu, enc.logvar)), args.n_ref // 2)
    pca = fit_pca(ref_v[:, mask], k)

    out = {
        "vae": args.vae,
        "generator": args.generator,
        "vae_id": vae.id,
        "generator_id": None if gen is None else gen.id,
        "train_fibre": rs.describe(train),
        "train_family": family,
        "train_n": meta.get("n"),
        "pca_k": int(k),
        # A sampler other than the CLIs' default names its own table.
        "variant": ""
        if (args.sampler, args.steps, args.guidance) == (SAMPLER, STEPS, GUIDANCE)
        else f"{args.steps} {args.sampler} steps, guidance {args.guidance:g}",
        # How many components the reference frames need: why PCA at K keeps them whole.
        "pca_variance": {
            "at_k": float(pca[2][k - 1]),
            **{f"k_{q:g}": int(np.searchsorted(pca[2], q)) + 1 for q in PCA_KEPT},
            "pixels": int(mask.sum()),
        },
        "recipe": recipe(meta, args.generator),
        "settings": {
            "patterns": args.n,
            "states": args.states,
            "samples": args.samples,
            "n_ref": args.n_ref,
            "tm_steps": args.tm_steps,
            "steps": args.steps,
            "sampler": args.sampler,
            "guidance": args.guidance,
            "seed": args.seed,
            "tm_start": list(args.tm_start),
            "interval": f"bootstrap 95% percentile, {N_BOOT} resamples of patterns (and of "
            "samples within a pattern for one-sample PCC)",
        },
        "regimes": {},
    }
    for i, reg in regimes:
        t = time.perf_counter()
        seed = rs.HELD_OUT_SEED + 10 * i
        x = rs.family_patterns(reg.family, "test", args.n, seed, meta)
        settings = [vae.id, reg.key, rs.fibre_key(reg.fibre), args.n, args.states, args.samples]
        settings += [args.seed, args.n_ref, args.tm_steps, seed, ref_digest]
        digest = hashlib.sha256(json.dumps(settings).encode()).hexdigest()[:16]
        kept = None if work is None else work / f"regime-{digest}.npz"
        if kept is not None and kept.is_file():
            z = np.load(kept)
            truth_u = z["truth_u"].astype(np.float64)
            rows = {}
            for name in z.files:
                if "/" in name:
                    row, metric = name.split("/")
                    rows.setdefault(row, {})[metric] = z[name]
        else:
            truth_u, rows = references(
                reg, x, seed, meta, vae, mask, ref_x, ref_v, k, pca, tms, args
            )
            if kept is not None:
                flat = {f"{r}/{m}": v for r, row in rows.items() for m, v in row.items()}
                np.savez(kept.with_suffix(".tmp.npz"), truth_u=truth_u.astype(np.float32), **flat)
                kept.with_suffix(".tmp.npz").replace(kept)
        if args.only == "references":
            log(f"{reg.key}: references kept ({time.perf_counter() - t:.0f} s)")
            continue
        s = truth_u.shape[1]
        generator = sampled(gen, vae, x, mask, truth_u, args)
        starts = tm_starts(reg, x, gen, vae, meta, mask, truth_u, tms, args)
        if gen.regressor is not None:
            reg_img = decode(vae.model, regress_latents(gen.regressor, x))
            rows["regressor"] = ensemble(unit_frames(reg_img[:, None], mask), truth_u)
        rows = {
            "generator": generator,
            **starts,
            **{name: rows[name] for name in ROW_NAMES if name in rows},
        }
        summary = {
            name: {m: bootstrap_mean(v, seed=args.seed) for m, v in row.items()}
            for name, row in rows.items()
        }
        out["regimes"][reg.key] = {
            "letter": reg.letter,
            "family": reg.family,
            "fibre": rs.describe(reg.fibre) + (", one state" if reg.fixed else ""),
            "camera": None if reg.camera is None else reg.camera.photons,
            "states": int(s),
            "rows": summary,
            "seconds": time.perf_counter() - t,
        }
        g = summary["generator"]
        log(
            f"{reg.key}: generator {g['pcc']['mean']:.3f}, "
            + ", ".join(
                f"{k} {v['pcc']['mean']:.3f}" for k, v in summary.items() if k != "generator"
            )
        )
    if args.only:
        return None
    out["seconds"] = time.perf_counter() - t0
    return out


def main(argv: list[str] | None = None) -> int:
    from benchmarks.science_inverse import stamp

    p = argparse.ArgumentParser(
        prog="python -m benchmarks.science_regimes", description=__doc__.split("\n")[0]
    )
    p.add_argument("--vae", default=str(REPO / "models" / "demo"))
    p.add_argument("--generator", default=str(REPO / "models" / "generators" / "demo"))
    p.add_argument("--n", type=int, default=N_PATTERNS, help="held-out patterns per regime")
    p.add_argument("--states", type=int, default=STATES, help="true states per pattern")
    p.add_argument("--samples", type=int, default=SAMPLES, help="generator samples per pattern")
    p.add_argument("--n-ref", type=int, default=N_REF, help="reference pairs (TM fits, nearest)")
    p.add_argument("--tm-steps", type=int, default=TM_STEPS, help="Adam steps of each TM fit")
    p.add_argument("--steps", type=int, default=STEPS, help="sampler steps")
    p.add_argument("--sampler", choices=SAMPLERS, default=SAMPLER)
    p.add_argument("--guidance", type=float, default=GUIDANCE)
    p.add_argument(
        "--regimes", default="abcd", help="the regimes to score, by letter (default: all four)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--tm-start",
        type=lambda v: [float(s) for s in v.split(",") if s.strip()],
        default=list(TM_STRENGTHS),
        help="strengths (comma list; empty: none) at which the generator also starts from the "
        "pooled TM's prediction (diffusion.sampling.sample_latents)",
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--work", type=Path, default=None, help="keep and reuse the fitted TMs here")
    p.add_argument(
        "--only",
        choices=("physics", "references"),
        default=None,
        help="into --work, then stop: fit the TMs (physics), or also score every row but the "
        "generator's (references, with --vae)",
    )
    p.add_argument(
        "--record",
        type=Path,
        default=None,
        help="with --only: the training set's simulation.json, for a generator not there yet",
    )
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--rows", type=Path, default=ROWS, help="where the measured rows are kept")
    p.add_argument("--render-only", action="store_true", help="re-render the saved rows")
    args = p.parse_args(argv)
    if not args.regimes or set(args.regimes) - set("abcd"):
        p.error(f"--regimes takes letters of a, b, c and d, got {args.regimes!r}")
    saved = json.loads(args.rows.read_text()) if args.rows.is_file() else {"pairs": {}}
    if not args.render_only:
        if args.only and args.work is None:
            p.error("--only needs --work")
        try:
            result = run(args, log=lambda m: print(m, flush=True))
        except (vck.CheckpointError, ValueError, OSError) as e:
            print(f"error: {e}")
            return 2
        if result is None:
            print(f"kept the {args.only} stage in {args.work}")
            return 0
        key = args.generator + (f" ({result['variant']})" if result.get("variant") else "")
        saved["pairs"][key] = {"result": result, "stamp": stamp()}
        atomic_write(args.rows, json.dumps(saved))
    write_section(render(saved, kept_section(args.out, BEGIN, END)), args.out, BEGIN, END)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
