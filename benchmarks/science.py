"""Writes docs/validation.md: every figure the explorer shows about the shipped models, beside
its baselines, on held-out handwriting through the training fibre.

    python -m benchmarks.science                 # about 8 minutes on 2 cores
    python -m benchmarks.science --n 500 --out quick-validation.md   # a quick look

Each model under models/ is scored by `vae.evaluate` (probes of the code, PCA of the speckle at
the same K, the input patterns, the mean image) on one simulated set drawn from the test split of
the bundled digits (`python -m speckle mmf --digits test`), which no model was trained on; the
demo also on the same handwriting through another fibre, as a model foreign to it.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vae.probes import READOUT_K, figure_text, k_text, pca_at_k

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "validation.md"
ROWS = REPO / "benchmarks" / "science_rows.json"  # the measured rows, for --render-only
HELD_OUT_SEED = 2026
FOREIGN_FIBRE_SEED = 7  # the same handwriting through a fibre no shipped model was trained on
FOREIGN_MODEL = REPO / "models" / "demo"
TABLE_FIGURES = (  # after the K column, each a figure or "failed (… < chance …)"
    "probe_accuracy",
    "pca_probe_accuracy",
    "probe_accuracy_robust",
    "pca_probe_accuracy_robust",
    "probe_accuracy_all_mu",
    "pattern_readout_pcc",
    "pca_pattern_readout_pcc",
    "pattern_readout_ratio",
)


def _above(r: dict, key: str, baseline: str) -> float | None:
    """How far `key` is above a baseline; None when the baseline failed (below its chance level)
    and so gives nothing to beat."""
    return None if r.get(baseline) is None else r[key] - r[baseline]


# The default demo's targets, on the held-out set (n >= 2000).
TARGETS = {
    "EV ≥ 0.85": lambda r: r["ev"] - 0.85,
    "core K ratio ≥ 0.9": lambda r: r["contrast_ratio"] - 0.9,
    "code probe ≥ PCA probe at the same K": lambda r: _above(
        r, "probe_accuracy", "pca_probe_accuracy"
    ),
    "pattern read-out ≥ PCA's": lambda r: _above(
        r, "pattern_readout_pcc", "pca_pattern_readout_pcc"
    ),
}


def shipped_models() -> list[Path]:
    root = REPO / "models"
    found = [p for p in sorted(root.iterdir()) if (p / "config.json").is_file()]
    return sorted(found, key=lambda p: json.loads((p / "config.json").read_text())["beta"])


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            text=True,
            capture_output=True,
            timeout=10,
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def _machine() -> str:
    import os

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores of {cpu}, Python {platform.python_version()}"


def evaluate_all(models: list[Path], data: Path) -> list[dict]:
    from vae.evaluate import evaluate

    rows = []
    for m in models:
        t = time.perf_counter()
        r = evaluate(str(m), str(data), probe_label="digit", pca="curve")
        r["model"] = m.relative_to(REPO).as_posix()
        r["steps"] = json.loads((m / "config.json").read_text()).get("step")
        r["seconds"] = round(time.perf_counter() - t, 1)
        print(
            json.dumps({k: r[k] for k in ("model", "beta", "ev", "probe_accuracy", "seconds")}),
            file=sys.stderr,
            flush=True,
        )
        rows.append(r)
    return rows


def evaluate_foreign(n: int, tmp: Path) -> dict:
    """`FOREIGN_MODEL` on the held-out handwriting through `FOREIGN_FIBRE_SEED`'s fibre."""
    from speckle.io import write_dataset
    from speckle.mmf import simulate_mmf
    from vae.evaluate import evaluate

    data = tmp / "foreign-fibre"
    write_dataset(
        simulate_mmf(n, HELD_OUT_SEED, digits="test", fibre_seed=FOREIGN_FIBRE_SEED), data
    )
    return evaluate(str(FOREIGN_MODEL), str(data), probe_label="digit")


def choose_default(rows: list[dict]) -> tuple[dict, list[tuple[str, float | None]]]:
    """The model that meets the most targets; among those, the smallest total shortfall. A target
    whose baseline failed is not met, and has no shortfall."""

    def shortfalls(r: dict) -> list[tuple[str, float | None]]:
        return [(name, f(r)) for name, f in TARGETS.items()]

    def key(r: dict) -> tuple:
        s = [v for _, v in shortfalls(r) if v is not None]
        return (sum(v >= 0 for v in s), sum(min(v, 0) for v in s))

    best = max(rows, key=key)
    return best, shortfalls(best)


def _f(v: float, digits: int = 3) -> str:
    return "–" if v is None or v != v else f"{v:.{digits}f}"


def _k(r: dict) -> str:
    """The K the probes read (rows measured before K was capped: the active dims)."""
    if "probe_k" in r:
        return k_text(r)
    return f"{r['active_units']} / {r['active_units_robust']}"


def _foreign(rows: list[dict], r: dict) -> str:
    """`FOREIGN_MODEL` on another fibre beside its row on its own."""
    own = next((x for x in rows if x["checkpoint_id"] == r["checkpoint_id"]), None)
    if own is None:
        return ""
    return (
        f"The same handwriting through another fibre (`--fibre-seed {FOREIGN_FIBRE_SEED}`), "
        f"which `{own['model']}` was not trained on: its pattern read-out PCC is "
        f"{figure_text(r, 'pattern_readout_pcc')} against {figure_text(own, 'pattern_readout_pcc')}"
        f" on its own fibre (all pixels {figure_text(r, 'pixel_pattern_readout_pcc')}, the mean "
        f"pattern {_f(r.get('mean_pattern_pcc'))}), and its read-out ratio "
        f"{figure_text(r, 'pattern_readout_ratio')} against "
        f"{figure_text(own, 'pattern_readout_ratio')}."
    )


def _stamp() -> str:
    return f"{time.strftime('%Y-%m-%d')}, commit {_commit()}, {_machine()}"


def _rename(rows: list[dict]) -> list[dict]:
    """Rows whose model has moved since it was measured point at its current folder."""
    by_id = {}
    for m in shipped_models():
        by_id[json.loads((m / "config.json").read_text()).get("weights_sha256")] = m
    for r in rows:
        if r["checkpoint_id"] in by_id:
            r["model"] = by_id[r["checkpoint_id"]].relative_to(REPO).as_posix()
    return sorted(rows, key=lambda r: r["beta"])


def atomic_write_text(path: Path, text: str) -> None:
    from common.atomic import atomic_write

    atomic_write(path, text)


def render(
    rows: list[dict],
    n: int,
    command: str,
    seconds: float,
    stamp: str,
    generator: dict | None = None,
    foreign: dict | None = None,
) -> str:
    best, short = choose_default(rows)
    lines = [
        "# Validation",
        "",
        "Generated by `python -m benchmarks.science`; do not edit by hand. Measured on "
        f"{stamp}, in {seconds:.0f} s.",
        "",
        f"Held-out set: {n} images, `python -m speckle mmf --n {n} --seed {HELD_OUT_SEED} "
        "--digits test`, through the training fibre; its handwriting (bundled digits i with "
        "i % 5 == 4) is in no training set. Each row is `" + command + "` on it.",
        "",
        "## The β ladder against its baselines",
        "",
        "Speckle contrast is taken in the fibre core (`simulation.json`'s core). Probes are "
        "logistic regressions predicting the digit, standardized and regularized on the "
        "training split only; the held-out split keeps each source digit on one side. K is the "
        "number of active dims (KL > 0.01 nats); the robust K counts dims with KL > 0.1; both at "
        "most half the training split.",
        "",
        "| model | β | steps | EV | core K ratio | dims KL>0.01 / >0.1 | probe K / robust K "
        "| code probe | PCA probe, same K | code probe, robust K | PCA probe, robust K "
        "| all-μ probe | pattern read-out PCC | PCA read-out PCC | read-out ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        dims = f"{r['active_units']} / {r['active_units_robust']}"
        cells = [f"`{r['model']}`", f"{r['beta']:g}", str(r.get("steps")), _f(r["ev"])]
        cells += [_f(r["contrast_ratio"]), dims, _k(r)]
        cells += [figure_text(r, key) for key in TABLE_FIGURES]
        lines.append("| " + " | ".join(cells) + " |")
    r0 = rows[0]
    top = r0.get("readout_k", READOUT_K)
    lines += [
        "",
        "Baselines measured in the same run, the same for every model: the probe on the raw "
        f"16×16 input patterns {figure_text(r0, 'pattern_probe_accuracy')}; chance (the commonest "
        f"digit) {_f(r0.get('probe_chance'))}; the pattern read-out from all the speckle's pixels "
        f"{figure_text(r0, 'pixel_pattern_readout_pcc')}, and from the training split's mean "
        f"pattern (the read-out's chance level) {_f(r0.get('mean_pattern_pcc'))}; the dataset's "
        f"mean image as a reconstruction, core K ratio {_f(r0['mean_image_contrast_ratio'])} and "
        f"PCC {_f(r0['mean_image_pcc'])}. A baseline below its chance level is shown as failed: "
        "it gives no number to beat.",
        "",
        "Probes and read-outs read at most half the training split's count of features (Cover "
        "1965: past that, a hyperplane can split the training samples any way); a capped K is "
        "shown as such, and the code then reads its K dims with the most KL.",
        "",
        "The read-out through all the code's dims is saturated: like all the pixels, or random "
        "projections of them, any code rich enough to reconstruct speckle holds the pattern "
        "linearly, whichever fibre it was trained on. The read-out ratio reads only the "
        f"{top} dims with the most KL: (code − mean pattern) / (PCA at {top} − mean pattern), "
        "about 1 for a model whose KL goes to the speckle that varies with the input through "
        "this fibre.",
        "",
    ]
    if foreign:
        lines += [_foreign(rows, foreign), ""]
    lines += [
        "The all-μ probe reads all 512 μ dims, active or not: it measures the encoder's "
        "features, which carry small systematic variation in dims the decoder ignores, not the "
        "latent code.",
        "",
        "## Explained variance at equal K",
        "",
        "PCA of the speckle, fitted on the training split, scored on the held-out split, beside "
        "each model's EV on the same split.",
        "",
    ]
    ks = sorted({int(k) for r in rows for k in r["pca_ev_curve"]})
    lines.append("| K | " + " | ".join(str(k) for k in ks) + " |")
    lines.append("|---|" + "---|" * len(ks))
    curve = {}  # the same held-out split for every model: one curve, at every model's K
    for r in rows:
        curve |= r["pca_ev_curve"]
    lines.append("| PCA EV | " + " | ".join(_f(curve.get(str(k))) for k in ks) + " |")
    lines.append("")
    for r in rows:
        k, kr = r["active_units"], r["active_units_robust"]
        lines.append(
            f"- `{r['model']}` (β {r['beta']:g}): EV {_f(r['ev_test'])} with {k} active dims "
            f"({kr} robust); PCA reaches {pca_at_k(curve, k)} and {pca_at_k(curve, kr)}."
        )
    met = [name for name, v in short if v is not None and v >= 0]
    missed = [
        f"{name} (its baseline failed)" if v is None else f"{name} (short by {-v:.3f})"
        for name, v in short
        if v is None or v < 0
    ]
    lines += [
        "",
        "## The default demo",
        "",
        "Targets on this set: " + "; ".join(TARGETS) + ". The default is the model that meets "
        "the most targets, and among those the one with the smallest total shortfall.",
        "",
        f"By that rule: `{best['model']}` (β {best['beta']:g}) meets {len(met)} of "
        f"{len(TARGETS)}"
        + (f": {', '.join(met)}." if met else ".")
        + (f" Missed: {'; '.join(missed)}." if missed else ""),
        "",
    ]
    if generator:
        from benchmarks.science_generator import render as render_generator

        lines.append(render_generator(generator))
    from benchmarks import regimes_doc, science_inverse

    # Measured apart (python -m benchmarks.science_inverse, .science_regimes) and kept here: from
    # their saved rows, else as the file has them now.
    inverse = science_inverse.section() or science_inverse.kept_section(OUT)
    if inverse:
        lines += ["", inverse]
    kept = science_inverse.kept_section(OUT, regimes_doc.BEGIN, regimes_doc.END)
    regimes = regimes_doc.section(kept) or kept
    if regimes:
        lines += ["", regimes]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.science", description=__doc__.split("\n")[0]
    )
    p.add_argument("--n", type=int, default=2000, help="held-out images")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument(
        "--model", action="append", type=Path, help="models to score (default: models/*)"
    )
    p.add_argument(
        "--no-generator",
        dest="generator",
        action="store_false",
        help="skip the shipped generator's section",
    )
    p.add_argument("--rows", type=Path, default=ROWS, help="where the measured rows are kept")
    p.add_argument(
        "--render-only",
        action="store_true",
        help="re-render --rows (models renamed since are found by their weights' id)",
    )
    args = p.parse_args(argv)
    if args.render_only:
        saved = json.loads(args.rows.read_text())
        text = render(
            _rename(saved["rows"]),
            saved["n"],
            saved["command"],
            saved["seconds"],
            saved["stamp"],
            saved.get("generator"),
            saved.get("foreign"),
        )
        atomic_write_text(args.out, text)
        print(f"wrote {args.out}")
        return 0
    from speckle.io import write_dataset
    from speckle.mmf import simulate_mmf

    t0 = time.perf_counter()
    models = [m.resolve() for m in args.model] if args.model else shipped_models()
    with tempfile.TemporaryDirectory(prefix="science-") as tmp:
        data = Path(tmp) / "held-out"
        write_dataset(simulate_mmf(args.n, HELD_OUT_SEED, digits="test"), data)
        rows = evaluate_all(models, data)
        foreign = evaluate_foreign(args.n, Path(tmp))
        from benchmarks import science_generator

        generator = science_generator.run(data) if args.generator else None
    command = "python -m vae.evaluate --checkpoint MODEL --data HELD_OUT --probe-label digit --pca curve --json"
    seconds, stamp = time.perf_counter() - t0, _stamp()
    atomic_write_text(
        args.rows,
        json.dumps(
            {
                "rows": rows,
                "n": args.n,
                "command": command,
                "seconds": seconds,
                "stamp": stamp,
                "generator": generator,
                "foreign": foreign,
            }
        ),
    )
    atomic_write_text(args.out, render(rows, args.n, command, seconds, stamp, generator, foreign))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
