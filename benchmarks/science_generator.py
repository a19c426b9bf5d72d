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


def training_set(config: dict, tmp: Path) -> Path:
    """The generator's training pairs: the recorded folder, or the same set simulated again from
    the simulation record its config keeps (a fresh clone has no data/)."""
    path = Path(config["dataset"]["path"])
    path = path if path.is_absolute() else REPO / path
    if (path / "labels.csv").is_file():
        return path
    from speckle.io import write_dataset
    from speckle.mmf import simulate_mmf

    sim = config["dataset"]["simulation"]
    out = tmp / "generator-train"
    write_dataset(simulate_mmf(sim["n"], sim["seed"], digits=sim["digits"]), out)
    return out


def run(held_out: Path, tmp: Path, n_patterns: int = N_PATTERNS) -> dict:
    from diffusion.checkpoint import read_generator_config
    from diffusion.evaluate import build_parser, evaluate

    config = read_generator_config(GENERATOR)
    argv = ["--checkpoint", str(GENERATOR), "--data", str(held_out), "--vae", str(REPO / "models" / "demo"),
            "--train-data", str(training_set(config, tmp)), "--n-patterns", str(n_patterns)]  # fmt: skip
    result = evaluate(build_parser().parse_args(argv), log=lambda m: print(m, flush=True))
    result["generator_config"] = _config_of(str(GENERATOR))
    return result


def _config_of(path: str) -> dict:
    from diffusion.checkpoint import read_generator_config

    config = read_generator_config(path)
    return {k: config.get(k) for k in ("denoiser", "step", "recipe", "train")}


def _f(v: float) -> str:
    return f"{v:.3f}"


def render(r: dict) -> str:
    cfg = r.get("generator_config") or _config_of(r["generator"])
    den, train = cfg["denoiser"], cfg.get("train") or {}
    refs = r["references"]
    rows = [("generator, one sample", r), (f"generator, mean of {r['samples']}", r["mean_of_k"])]
    names = {"vae_ceiling": "VAE reconstruction of the truth (ceiling)",
             "regressor": "regressor pattern → μ (same network, no noise)",
             "nearest": "nearest training pattern's speckle", "random": "random training speckle (floor)",
             "tm_fit": "transmission matrix fitted to the training pairs"}  # fmt: skip
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
        "| | PCC | SSIM | contrast ratio | grain ratio | histogram distance |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in rows:
        lines.append(f"| {name} | {_f(m['pcc'])} | {_f(m['ssim'])} | {_f(m['contrast_ratio'])} | "
                     f"{_f(m['grain_ratio'])} | {_f(m['histogram_distance'])} |")  # fmt: skip
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
            )  # fmt: skip
        )
    sw = r.get("sweeps")
    if sw:
        lines += [
            "",
            f"One sample per pattern on {sw['patterns']} of the pairs: PCC against sampler steps "
            f"({r['sampler']}, guidance {r['guidance']:g}), guidance weight ({r['steps']} steps) "
            "and sampler.",
            "",
            "| steps | " + " | ".join(sw["steps"]) + " |",
            "|---|" + "---|" * len(sw["steps"]),
            "| PCC | " + " | ".join(_f(v) for v in sw["steps"].values()) + " |",
            "",
            "| guidance | " + " | ".join(sw["guidance"]) + " |",
            "|---|" + "---|" * len(sw["guidance"]),
            "| PCC | " + " | ".join(_f(v) for v in sw["guidance"].values()) + " |",
            "",
            "| sampler | " + " | ".join(sw["samplers"]) + " |",
            "|---|" + "---|" * len(sw["samplers"]),
            "| PCC | " + " | ".join(_f(v) for v in sw["samplers"].values()) + " |",
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
