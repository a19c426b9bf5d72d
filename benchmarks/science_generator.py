"""The shipped generator's section of docs/validation.md: `python -m diffusion.evaluate` on the
held-out set of benchmarks.science, every reference beside it, and the demo generator's targets."""

from __future__ import annotations

import argparse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GENERATOR = REPO / "models" / "generators" / "demo"
N_PATTERNS = 500
# The shipped generator's targets on held-out handwriting.
TARGETS = {
    "single-sample PCC above the nearest training pattern's": lambda r: r["pcc"] - r["nearest_pcc"],
    "single-sample PCC ≥ 0.9 × the VAE ceiling": lambda r: r["pcc"] - 0.9 * r["vae_ceiling_pcc"],
    "mean of 8 ≥ the regressor − 0.02": lambda r: (
        r["mean_of_k"]["pcc"] - (r["regressor_pcc"] - 0.02)
    ),
}


def run(held_out: Path, n_patterns: int = N_PATTERNS) -> dict:
    """`diffusion.evaluate` on the held-out set; the generator's training set is its recorded
    folder, or simulated again from the whole record in its config (evaluate's own path)."""
    from diffusion.evaluate import build_parser, evaluate

    argv = [
        "--checkpoint",
        str(GENERATOR),
        "--data",
        str(held_out),
        "--vae",
        str(REPO / "models" / "demo"),
        "--n-patterns",
        str(n_patterns),
    ]
    result = evaluate(build_parser().parse_args(argv), log=lambda m: print(m, flush=True))
    result["generator_config"] = _config_of(str(GENERATOR))
    return result


def _config_of(path: str) -> dict:
    from diffusion.checkpoint import read_generator_config

    config = read_generator_config(path)
    return {k: config.get(k) for k in ("denoiser", "step", "recipe", "train")}


def _f(v: float) -> str:
    return f"{v:.3f}"


def _train_data(r: dict) -> str:
    source = r.get("train_data_source", "recorded")
    if source.startswith("simulated"):
        return f"{source}, {r.get('train_data_check', 'not checked')}"
    return f"{source} ({r.get('train_data', '')})"


def _ci(m: dict, key: str = "pcc") -> str:
    """A value with its 95% interval, when it has one."""
    ci = m.get(f"{key}_ci95")
    return f"{_f(m[key])} [{_f(ci[0])}, {_f(ci[1])}]" if ci else _f(m[key])


def render(r: dict) -> str:
    cfg = r.get("generator_config") or _config_of(r["generator"])
    den, train = cfg["denoiser"], cfg.get("train") or {}
    refs = r["references"]
    rows = [("generator, one sample", r), (f"generator, mean of {r['samples']}", r["mean_of_k"])]
    names = {
        "vae_ceiling": "VAE reconstruction of the truth (ceiling)",
        "regressor": "regressor pattern → μ (same network, no noise)",
        "nearest": "nearest training pattern's speckle",
        "random": "random training speckle (floor)",
        "tm_fit": "transmission matrix fitted to the training pairs",
    }
    rows += [(names[k], refs[k]) for k in names if k in refs]
    lines = [
        "## The demo generator against its references",
        "",
        f"`models/generators/demo`: `{den['arch']}`, {den['prediction']}, trained "
        f"{cfg['step']} steps of batch {train.get('batch_size', '?')} on CPU for `models/demo`. "
        f"Scored on {r['n_patterns']} held-out pairs of the set above by "
        "`python -m diffusion.evaluate --checkpoint models/generators/demo --data HELD_OUT --json`: "
        f"{r['samples']} samples per pattern, {r['steps']} {r['sampler']} steps, guidance "
        f"{r['guidance']:g}, seed {r['seed']}. Every figure is per image inside the lit region "
        f"({r['mask']}), averaged over images; a sample's frame is the VAE's decoding of its latent.",
        "",
        f"Noise is drawn per (pattern, sample). PCC intervals: {r.get('interval', 'bootstrap 95%')}. "
        f"The references' training pairs: {_train_data(r)}.",
        "",
        "| | PCC [95% interval] | SSIM | contrast ratio | grain ratio | histogram distance |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in rows:
        lines.append(
            f"| {name} | {_ci(m)} | {_f(m['ssim'])} | {_f(m['contrast_ratio'])} | "
            f"{_f(m['grain_ratio'])} | {_f(m['histogram_distance'])} |"
        )
    lines += [
        "",
        f"Single samples' PCC by sample index: {', '.join(_f(v) for v in r['pcc_per_sample'])}. "
        f"The nearest training pattern has cosine similarity {_f(r['nearest_cosine'])} on average.",
    ]
    if "classifier_accuracy_ratio" in r:
        lines.append(
            f"A digit classifier (PCA 50 + logistic regression on true training speckle) reads "
            f"{_f(r['classifier_accuracy_true'])} of the true held-out speckle right and "
            f"{_f(r['classifier_accuracy_generated'])} of the generated: ratio "
            f"{_f(r['classifier_accuracy_ratio'])}."
        )
    if "tm_fit" in refs:
        better = refs["tm_fit"]["pcc"] > max(refs["vae_ceiling"]["pcc"], r["pcc"])
        lines.append(
            f"The transmission matrix took {refs['tm_fit']['seconds']:.0f} s to fit"
            + (
                ": on this fixed fibre the physics baseline beats every learned model here, "
                "the VAE's ceiling included."
                if better
                else "."
            )
        )
    sw = r.get("sweeps")
    if sw:
        draws = sw.get("samples", 1)
        lines += [
            "",
            f"Single-sample PCC on {sw['patterns']} of the pairs, over {draws} noise draws each, "
            f"against sampler steps ({r['sampler']}, guidance {r['guidance']:g}), guidance weight "
            f"({r['steps']} steps) and sampler, with 95% intervals.",
        ]
        for factor, title in (
            ("steps", "steps"),
            ("guidance", "guidance"),
            ("samplers", "sampler"),
        ):
            cis = sw.get(f"{factor}_ci95", {})
            cells = [
                f"{_f(v)} [{_f(cis[k][0])}, {_f(cis[k][1])}]" if k in cis else _f(v)
                for k, v in sw[factor].items()
            ]
            lines += [
                "",
                f"| {title} | " + " | ".join(sw[factor]) + " |",
                "|---|" + "---|" * len(sw[factor]),
                "| PCC | " + " | ".join(cells) + " |",
            ]
    short = [(name, f(r)) for name, f in TARGETS.items()]
    met = [n for n, v in short if v >= 0]
    missed = [f"{n} (short by {-v:.3f})" for n, v in short if v < 0]
    lines += [
        "",
        f"Targets: {len(met)} of {len(TARGETS)} met"
        + (f": {'; '.join(met)}." if met else ".")
        + (f" Missed: {'; '.join(missed)}." if missed else ""),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the section for a saved `diffusion.evaluate --json` result (for a quick look)."""
    import json

    p = argparse.ArgumentParser(prog="python -m benchmarks.science_generator")
    p.add_argument("result", type=Path)
    print(render(json.loads(p.parse_args(argv).result.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
