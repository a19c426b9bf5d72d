"""The regimes section of docs/validation.md, rendered from the rows that
`python -m benchmarks.science_regimes` keeps in ROWS (git-ignored): a table per regime and pair,
a verdict under each, and the targets with their bounds. `benchmarks.science` keeps the
section when it rewrites the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vae.kl import ACTIVE_NATS

REPO = Path(__file__).resolve().parents[1]
ROWS = REPO / "benchmarks" / "science_regimes_rows.json"
BEGIN, END = "<!-- regimes:begin -->", "<!-- regimes:end -->"
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
PAIR_HEADING = "### Generator "
TM_START = "generator_tm_"  # a row of the generator started from the pooled TM's prediction


def strength_of(name: str) -> float:
    """The strength of a row started from the TM (its name is TM_START + strength)."""
    return float(name[len(TM_START) :])


def row_label(name: str) -> str:
    if name.startswith(TM_START):
        return f"generator started from the pooled TM's prediction, strength {strength_of(name):g}"
    return ROW_NAMES[name]


def tm_start_rows(reg: dict) -> list[str]:
    return [k for k in reg["rows"] if k.startswith(TM_START)]


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
            + remedies(
                r, few, "coverage", [(one + 0.10, "one-state TM + 0.10"), (pooled, "pooled TM")]
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
            + remedies(r, many, "energy", [(spread, "pooled TM with its spread")], lower=True)
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
            + regressor_note(r, letters, tm)
            + remedies(r, letters, "pcc", [(0.95, "0.95"), (tm - 0.03, "the TM − 0.03")])
        )
    return lines


def regressor_note(r: dict, regime: str, tm: float) -> str:
    """The pair's deterministic head (pattern → μ) against the same two bars."""
    v = _get(r, regime, "regressor", "pcc")
    if v is None:
        return ""
    return (
        f". The pair's regressor scores {_f(v)}: against 0.95 {_verdict(v - 0.95)}, within "
        f"0.03 of the TM {_verdict(v - tm + 0.03)}"
    )


def remedies(
    r: dict, regime: str, metric: str, bars: list[tuple[float, str]], lower: bool = False
) -> str:
    """The same target read from each row that starts the generator from the pooled TM's
    prediction ("" when the pair was measured without them)."""
    parts = []
    for name in tm_start_rows(r["regimes"][regime]):
        v = _get(r, regime, name, metric)
        checks = ", ".join(
            f"against {what}: {_verdict((b - v) if lower else (v - b))}" for b, what in bars
        )
        parts.append(f"at strength {strength_of(name):g}, {_f(v)} ({checks})")
    if not parts:
        return ""
    return ". Started from the pooled TM's prediction: " + "; ".join(parts)


def pca_note(r: dict) -> str:
    """Why PCA at the VAE's K scores about 1: how few components the frames need."""
    v = r.get("pca_variance")
    if not v:
        return ""
    return (
        f": the reference frames need {v['k_0.99']} components for 0.99 of their variance in the "
        f"core ({v['pixels']:,} pixels) and {v['k_0.999']} for 0.999, and K = {r['pca_k']} keeps "
        f"{v['at_k']:.5f}. PCA projects the true frame itself, so, like the VAE's row, it is a "
        "ceiling on compression, not a prediction from the pattern"
    )


def shown(path: str) -> str:
    """A model's path from its repository's models/ folder on (where the app finds it)."""
    p = Path(path).as_posix()
    if "models/" in p:
        return p[p.index("models/") :]
    run = Path(p).parent if Path(p).name == "checkpoint" else Path(p)  # a run's checkpoint
    return f"{run.name} (trained for this table, not shipped)"


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
    fitted TM, in PCC (coverage on a moving fibre) and in energy score. Where the generator was
    also started from the TM's prediction, its best start is read the same way."""
    rows = reg["rows"]
    moving = reg["states"] > 1
    what = "coverage" if moving else "mean_of_k"
    tm_name = max(("tm_one", "tm_pooled"), key=lambda k: rows[k]["pcc"]["mean"])
    tm = rows[tm_name]["pcc"]["mean"]
    tm_es = min(rows[k]["energy"]["mean"] for k in ("tm_one", "tm_pooled", "tm_pooled_spread"))
    out = []
    starts = tm_start_rows(reg)
    best = max(starts, key=lambda k: rows[k][what]["mean"]) if starts else None
    for name in ["generator"] + ([best] if best else []):
        mine, es = rows[name][what]["mean"], rows[name]["energy"]["mean"]
        who = "the generator's" if name == "generator" else f"the {row_label(name)}:"
        pcc_word = "wins" if mine >= tm else "loses"
        es_word = "wins" if es <= tm_es else "loses"
        out.append(
            f"{'Learning' if name == 'generator' else 'Started from the TM, learning'} "
            f"{pcc_word} in PCC: {who} "
            f"{'coverage' if moving else 'mean of samples'} {_f(mine)} against the "
            f"{ROW_NAMES[tm_name]} {_f(tm)} ({mine - tm:+.3f}); it {es_word} in energy score: "
            f"{_f(es)} against the best TM row's {_f(tm_es)} ({es - tm_es:+.3f})."
        )
    mine = rows["generator"][what]["mean"]
    return " ".join(out) + f" Why: {WHY[reg['letter']][0 if mine >= tm else 1]}."


def render_pair(r: dict, stamp: str) -> list[str]:
    st = r["settings"]
    lines = [
        f"{PAIR_HEADING}{shown(r['generator'])} with VAE {shown(r['vae'])}"
        + (f", sampled with {r['variant']}" if r.get("variant") else ""),
        "",
        f"{stamp}. The pair was trained on {r['train_n']} frames of {r['train_family']} through "
        f"a {r['train_fibre']}. Per regime: {st['patterns']} held-out patterns (test split of "
        f"their family), {st['states']} true states per pattern on a moving fibre (one on a "
        f"fixed one), {st['samples']} generator samples ({st['steps']} {st['sampler']} steps, "
        f"guidance {st['guidance']:g}, seed {st['seed']}). Reference pairs: {st['n_ref']:,} new "
        "placements of the training bases through the training fibre (the nearest pattern, PCA "
        f"and the residual spread); TMs fitted by `speckle.tm_fit` ({st['tm_steps']} Adam "
        f"steps, batch 512) on the same patterns through the regime's fibre. PCA keeps K = "
        f"{r['pca_k']} components (the VAE's active dims, KL > {ACTIVE_NATS} nats)"
        f"{pca_note(r)}. Intervals: {st['interval']}.",
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
                f"| {row_label(name)} | " + " | ".join(_cell(row, m) for m in METRICS) + " |"
            )
        lines += ["", verdict(reg), ""]
    return lines


def kept_pairs(kept: str) -> dict[str, str]:
    """The pairs' subsections of a rendered section, by their heading line, in its order."""
    out, head = {}, None
    for line in kept.replace(END, "").splitlines(keepends=True):
        if line.startswith(PAIR_HEADING):
            head = line.rstrip("\n")
            out[head] = ""
        if head is not None:
            out[head] += line
    return {k: v.rstrip("\n") for k, v in out.items()}


def render(saved: dict, kept: str = "") -> str:
    """The section: every pair in `saved`, and each pair of the `kept` section (as the file has
    it now) that `saved` does not hold, so that rows measured on another machine stay."""
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
        'the truth itself (PCC 1) but for camera noise. A row "generator started from the '
        "pooled TM's prediction\" starts each sample from that TM's prediction, encoded by the "
        "VAE and noised to the strength's fraction of the schedule, and runs that fraction of "
        "the steps (`diffusion.sampling.sample_latents`, `--tm-start`). A pair scored on some "
        "regimes only (`--regimes`) has only their tables, and a pair scored with another "
        "sampler (`--steps`, `--sampler`, `--guidance`) has its own.",
        "",
    ]
    fresh = {}
    for entry in saved.get("pairs", {}).values():
        block = render_pair(entry["result"], entry["stamp"])
        fresh[block[0]] = "\n".join(block).rstrip("\n")
    old = kept_pairs(kept)
    for head, text in old.items():
        lines += [fresh.pop(head, text), ""]
    for text in fresh.values():
        lines += [text, ""]
    lines.append(END)
    return "\n".join(lines)


def section(kept: str = "") -> str:
    """The saved section with the `kept` one's other pairs, for benchmarks.science; empty when
    nothing was measured on this machine."""
    if not ROWS.is_file():
        return ""
    return render(json.loads(ROWS.read_text()), kept)
