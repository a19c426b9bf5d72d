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
from common.atomic import atomic_write
from common.bootstrap import N_BOOT, bootstrap_mean
from diffusion import checkpoint as gck
from diffusion.data import recorded_frame, simulated_counts
from diffusion.ensemble import coverage, energy_score, pcc_grid, unit_frames
from diffusion.references import nearest_patterns
from diffusion.sampling import GUIDANCE, SAMPLER, STEPS, regress_latents, sample_latents
from speckle.gaussian_fibre import core_mask
from vae import checkpoint as vck
from vae.inference import decode, encode_dataset
from vae.kl import ACTIVE_NATS, active_units, kl_per_dim

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "validation.md"
ROWS = REPO / "benchmarks" / "science_regimes_rows.json"
BEGIN, END = "<!-- regimes:begin -->", "<!-- regimes:end -->"
N_PATTERNS, STATES, SAMPLES, N_REF, TM_STEPS = 200, 8, 8, 8192, 1000
KL_FRAMES = 1024  # reference frames encoded for the VAE's K (active dims)
ROW_NAMES = {
    "generator": "generator",
    "regressor": "regressor (pattern → μ)",
    "vae_ceiling": "VAE reconstruction of the truth (ceiling)",
    "pca": "PCA of the speckle at the VAE's K (ceiling)",
    "nearest": "nearest reference pattern's frame",
    "tm_one": "TM fitted in one state",
    "tm_pooled": "TM fitted on all states pooled",
    "tm_pooled_spread": "pooled TM + its residual spread (K members)",
    "oracle_state": "per-state true matrix (oracle)",
    "oracle_sampler": "ideal sampler: K true states (oracle)",
}
METRICS = ("pcc", "mean_of_k", "coverage", "energy")


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
    if not pca:
        centre = ref_v[:, mask].mean(0)
        pca += [centre, np.linalg.svd(ref_v[:, mask] - centre, full_matrices=False)[2][:k]]
    centre, basis = pca
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
    regimes = rs.regimes(meta)
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

    for reg in regimes:
        tms(reg.fibre)
    if args.only == "physics":
        return None
    ref_frames = tms(train)[1][1]  # the training distribution: pooled over its states
    ref_v = as_seen(ref_frames, meta, vae)
    enc = encode_dataset(vae.model, torch.from_numpy(ref_v[:KL_FRAMES, None]))
    k = min(active_units(kl_per_dim(enc.mu, enc.logvar)), args.n_ref // 2)
    pca: list = []  # (centre, basis (K, L)), fitted when a regime first needs it

    out = {
        "vae": args.vae,
        "generator": args.generator,
        "vae_id": vae.id,
        "generator_id": None if gen is None else gen.id,
        "train_fibre": rs.describe(train),
        "train_family": family,
        "train_n": meta.get("n"),
        "pca_k": int(k),
        "recipe": recipe(meta, args.generator),
        "settings": {
            "patterns": args.n,
            "states": args.states,
            "samples": args.samples,
            "n_ref": args.n_ref,
            "tm_steps": args.tm_steps,
            "steps": STEPS,
            "sampler": SAMPLER,
            "guidance": GUIDANCE,
            "seed": args.seed,
            "interval": f"bootstrap 95% percentile, {N_BOOT} resamples of patterns (and of "
            "samples within a pattern for one-sample PCC)",
        },
        "regimes": {},
    }
    for i, reg in enumerate(regimes):
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
        n, s = truth_u.shape[:2]
        lat = sample_latents(gen.model, x, args.samples, STEPS, SAMPLER, GUIDANCE, args.seed)
        imgs = decode(vae.model, lat.latents.reshape(-1, lat.latents.shape[-1]))
        imgs = imgs.reshape(n, args.samples, *imgs.shape[-2:])
        rows["generator"] = ensemble(
            unit_frames(imgs, mask), truth_u, unit_frames(imgs.mean(1), mask)
        )
        if gen.regressor is not None:
            reg_img = decode(vae.model, regress_latents(gen.regressor, x))
            rows["regressor"] = ensemble(unit_frames(reg_img[:, None], mask), truth_u)
        rows = {name: rows[name] for name in ROW_NAMES if name in rows}
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


def _f(v: float) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{v:.3f}"


def _cell(row: dict, metric: str) -> str:
    m = row.get(metric)
    if m is None:
        return "–"
    lo, hi = m["ci95"]
    return f"{_f(m['mean'])} [{_f(lo)}, {_f(hi)}]"


def _get(r: dict, regime: str, row: str, metric: str) -> float | None:
    m = r["regimes"].get(regime, {}).get("rows", {}).get(row, {}).get(metric)
    return None if m is None else m["mean"]


def _find(r: dict, prefix: str) -> str | None:
    return next((k for k in r["regimes"] if k.startswith(prefix)), None)


def _verdict(gap: float) -> str:
    return "met" if gap >= 0 else f"**missed** (short by {-gap:.3f})"


def targets(r: dict) -> list[str]:
    """Each target of the regimes, met or missed, with the figures it is read from, and what
    bounds it: the VAE's ceiling (no decoded sample passes it) and the ideal sampler."""
    lines = []
    few = _find(r, "few-DoF")
    if few:
        cov = _get(r, few, "generator", "coverage")
        one, pooled = _get(r, few, "tm_one", "pcc"), _get(r, few, "tm_pooled", "pcc")
        g1, i1 = _get(r, few, "generator", "pcc"), _get(r, few, "oracle_sampler", "pcc")
        lines.append(
            f"(c) few-DoF perturbation, generator coverage {_f(cov)} ≥ one-state TM {_f(one)} + 0.10: "
            f"{_verdict(cov - one - 0.10)}; ≥ pooled TM {_f(pooled)}: {_verdict(cov - pooled)}. "
            f"Bounds: VAE ceiling {_f(_get(r, few, 'vae_ceiling', 'pcc'))}, ideal sampler's "
            f"coverage {_f(_get(r, few, 'oracle_sampler', 'coverage'))}. One sample's PCC: the "
            f"generator {_f(g1)}, an ideal sampler {_f(i1)}, so the samples spread "
            + (
                "less than the true states (closer to their mean)"
                if g1 > i1
                else "as the states do"
            )
            + (
                "; the pair was not trained on this fibre"
                if r["regimes"][few]["fibre"] != r["train_fibre"]
                else ""
            )
        )
    many = _find(r, "many-DoF")
    if many:
        unseen = r["regimes"][many]["fibre"] != r["train_fibre"]
        es = _get(r, many, "generator", "energy")
        spread = _get(r, many, "tm_pooled_spread", "energy")
        lines.append(
            f"(c) many-DoF perturbation, generator energy score {_f(es)} below the pooled TM "
            f"with its residual spread {_f(spread)} (lower is better): {_verdict(spread - es)}. "
            f"The pooled TM alone scores {_f(_get(r, many, 'tm_pooled', 'energy'))}, the ideal "
            f"sampler {_f(_get(r, many, 'oracle_sampler', 'energy'))}; the ideal sampler's "
            f"coverage {_f(_get(r, many, 'oracle_sampler', 'coverage'))} against the pooled TM's "
            f"PCC {_f(_get(r, many, 'tm_pooled', 'pcc'))}"
            + ("; the pair was not trained on this fibre" if unseen else "")
        )
    letters = _find(r, "letters")
    if letters:
        pcc = _get(r, letters, "generator", "pcc")
        tm = _get(r, letters, "tm_pooled", "pcc")
        ideal = _get(r, letters, "oracle_sampler", "pcc")
        mean = _get(r, letters, "generator", "mean_of_k")  # its deterministic prediction
        seen = "letters" in r["train_family"].split(",")
        lines.append(
            f"(b) letters, {'seen' if seen else 'never seen'} in training (families "
            f"{r['train_family']}), generator one sample {_f(pcc)} ≥ 0.95: {_verdict(pcc - 0.95)}; "
            f"its mean of samples {_f(mean)} within 0.03 of the TM fitted on pairs of the "
            f"training distribution {_f(tm)}: {_verdict(mean - tm + 0.03)}. Bounds: VAE ceiling "
            "on letters "
            f"{_f(_get(r, letters, 'vae_ceiling', 'pcc'))}, an ideal sampler's one sample "
            f"{_f(ideal)} (two true states' PCC"
            + (", so 0.95 is out of any sampler's reach on this fibre" if ideal < 0.95 else "")
            + "), its "
            f"coverage {_f(_get(r, letters, 'oracle_sampler', 'coverage'))}; the generator's "
            f"coverage {_f(_get(r, letters, 'generator', 'coverage'))}"
        )
    return lines


def shown(path: str) -> str:
    """A model's path from its repository's models/ folder on (where the app finds it)."""
    p = Path(path).as_posix()
    return p[p.index("models/") :] if "models/" in p else "trained for this table (not shipped)"


WHY = {  # the physics behind each regime's PCC verdict: (learning wins, learning loses)
    "a": (
        "the TM's fit (its steps and pairs, above) falls short of the exact physics, which the "
        "per-state oracle shows",
        "a fitted TM is the exact physics of a fixed fibre, short of 1 only by its fit",
    ),
    "b": (
        "this TM's shortfall is its fit, as in (a); the physics does not depend on the pattern",
        "a TM does not depend on what the SLM shows, while a learned model is fitted to its "
        "training families",
    ),
    "c": (
        "no single matrix holds every state: a deterministic predictor is bounded by the "
        "conditional mean, while samples can land near each state",
        "the samples do not cover the states as the truth spreads; the ideal sampler's row "
        "shows what spread can reach",
    ),
    "d": (
        "the TM's fit falls short, as in (a); the noise bounds both below the per-state oracle",
        "the TM predicts the noise-free frame, as the per-state oracle does, which bounds "
        "every predictor",
    ),
}


def verdict(reg: dict) -> str:
    """Learning against physics in one regime: the generator's best figure beside the better
    fitted TM, in PCC (coverage on a moving fibre) and in energy score."""
    rows = reg["rows"]
    g = rows["generator"]
    moving = reg["states"] > 1
    mine = g["coverage" if moving else "mean_of_k"]["mean"]
    tm_name = max(("tm_one", "tm_pooled"), key=lambda k: rows[k]["pcc"]["mean"])
    tm = rows[tm_name]["pcc"]["mean"]
    es = g["energy"]["mean"]
    tm_es = min(rows[k]["energy"]["mean"] for k in ("tm_one", "tm_pooled", "tm_pooled_spread"))
    what = "coverage" if moving else "mean of samples"
    pcc_word = "wins" if mine >= tm else "loses"
    es_word = "wins" if es <= tm_es else "loses"
    return (
        f"Learning {pcc_word} in PCC: the generator's {what} {_f(mine)} against the "
        f"{ROW_NAMES[tm_name]} {_f(tm)} ({mine - tm:+.3f}); it {es_word} in energy score: "
        f"{_f(es)} against the best TM row's {_f(tm_es)} ({es - tm_es:+.3f}). Why: "
        f"{WHY[reg['letter']][0 if mine >= tm else 1]}."
    )


def render_pair(r: dict, stamp: str) -> list[str]:
    st = r["settings"]
    lines = [
        f"### Generator {shown(r['generator'])} with VAE {shown(r['vae'])}",
        "",
        f"{stamp}. The pair was trained on {r['train_n']} frames of {r['train_family']} through "
        f"a {r['train_fibre']}. Per regime: {st['patterns']} held-out patterns (test split of "
        f"their family), {st['states']} true states per pattern on a moving fibre (one on a "
        f"fixed one), {st['samples']} generator samples ({st['steps']} {st['sampler']} steps, "
        f"guidance {st['guidance']:g}, seed {st['seed']}). Reference pairs: {st['n_ref']:,} new "
        "placements of the training bases through the training fibre (the nearest pattern, PCA "
        f"and the residual spread); TMs fitted by `speckle.tm_fit` ({st['tm_steps']} Adam "
        f"steps, batch 512) on the same patterns through the regime's fibre. PCA keeps K = "
        f"{r['pca_k']} components (the VAE's active dims, KL > {ACTIVE_NATS} nats). Intervals: "
        f"{st['interval']}.",
        "",
        "Recipe: " + "; ".join(f"`{c}`" for c in r.get("recipe", [])) + ".",
        "",
        "Targets: " + "; ".join(targets(r)) + ".",
        "",
    ]
    for key, reg in r["regimes"].items():
        seen = reg["fibre"].removesuffix(", one state") == r["train_fibre"]
        lines += [
            f"**({reg['letter']}) {key}**: {reg['fibre']} "
            f"({'the training fibre' if seen else '**not** the fibre the pair was trained on'}); "
            f"{reg['states']} true state{'s' if reg['states'] > 1 else ''} per pattern.",
            "",
            f"| | PCC, one sample | PCC, mean of {st['samples']} | coverage | energy score ↓ |",
            "|---|---|---|---|---|",
        ]
        for name, row in reg["rows"].items():
            lines.append(
                f"| {ROW_NAMES[name]} | " + " | ".join(_cell(row, m) for m in METRICS) + " |"
            )
        lines += ["", verdict(reg), ""]
    return lines


def render(saved: dict) -> str:
    lines = [
        BEGIN,
        "## Regimes: when a learned model of the fibre is worth having",
        "",
        "Written by `python -m benchmarks.science_regimes --vae VAE --generator GENERATOR` "
        "(`benchmarks/regime_sets.py` draws the regimes). Every figure is per frame inside the "
        "lit core, against each true state of a pattern. PCC, one sample: the mean over samples "
        "and true states. Coverage: over the true states, the mean of the best sample's PCC. "
        "Energy score (lower is better; `diffusion.ensemble`): E‖X − y‖ − ½E‖X − X′‖ on frames "
        "centred and scaled to norm 1 (‖u − v‖ = √(2(1 − PCC))), averaged over the true states; "
        "a proper scoring rule, so a sampler cannot gain by spreading or collapsing its samples. "
        "A deterministic row scores its mean distance; ceilings and oracles that see the truth "
        "have PCC only. On a fixed fibre the per-state true matrix and the ideal sampler are "
        "the truth itself (PCC 1) but for camera noise.",
        "",
    ]
    for entry in saved.get("pairs", {}).values():
        lines += render_pair(entry["result"], entry["stamp"])
    lines.append(END)
    return "\n".join(lines)


def section() -> str:
    """The saved section, for benchmarks.science; empty when nothing was measured."""
    if not ROWS.is_file():
        return ""
    return render(json.loads(ROWS.read_text()))


def write_section(text: str, path: Path = OUT) -> None:
    doc = path.read_text(encoding="utf-8") if path.is_file() else ""
    if BEGIN in doc and END in doc:
        doc = doc[: doc.index(BEGIN)] + text + doc[doc.index(END) + len(END) :]
    else:
        doc = doc.rstrip("\n") + "\n\n" + text + "\n"
    atomic_write(path, doc)


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
    p.add_argument("--seed", type=int, default=0)
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
        saved["pairs"][args.generator] = {"result": result, "stamp": stamp()}
        atomic_write(args.rows, json.dumps(saved))
    write_section(render(saved), args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
