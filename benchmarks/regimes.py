"""The oracle rows of each perturbed-fibre regime (`speckle/oracles.py`) on the modal fibre: what
a one-state TM, the pooled conditional mean and an ideal generator's best-of-8 reach against a
frame, for held-out bundled digits, with bootstrap 95% intervals over patterns. A model scored on
a regime is read beside its row.

    python -m benchmarks.regimes [--patterns 30] [--draws 64] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from speckle.gaussian_fibre import core_mask
from speckle.mmf import simulate_mmf
from speckle.modal_fibre import ModalFibre
from speckle.oracles import ORACLES, oracle_pccs, oracle_table

HELD_OUT_SEED = 2026
# name -> the default 1 m step-index fibre (within-group coupling) with one factor moving
REGIMES = {
    "fixed fibre": ModalFibre(),
    "temperature 0-30 K": ModalFibre(temperature=(0.0, 30.0)),
    "temperature 0-100 K": ModalFibre(temperature=(0.0, 100.0)),
    "strain 0-1e-4": ModalFibre(strain=(0.0, 1e-4)),
    "detuning 0-0.3 nm": ModalFibre(detuning=(0.0, 0.3)),
    "detuning 0-1 nm": ModalFibre(detuning=(0.0, 1.0)),
    "detuning 0-1 nm, GRIN": ModalFibre(profile="grin", detuning=(0.0, 1.0)),
    "bend 0-5 /m": ModalFibre(bend=(0.0, 5.0)),
    "8 conformations, 0-5 /m, twist 30°": ModalFibre(conformations=8, bend=(0.0, 5.0), twist=30.0),
    "64 conformations, 0-20 /m, twist 180°": ModalFibre(
        conformations=64, bend=(0.0, 20.0), twist=180.0
    ),
}


def run(patterns: int = 30, draws: int = 64, size: int = 64) -> dict:
    x = simulate_mmf(patterns, HELD_OUT_SEED, size=size, digits="test").patterns
    mask = core_mask(size, 0.9)
    out = {}
    for name, fibre in REGIMES.items():
        t0 = time.perf_counter()
        row = oracle_table(oracle_pccs(x, fibre, mask, size=size, draws=draws))
        row["seconds"] = time.perf_counter() - t0
        out[name] = row
    return out


def markdown(results: dict) -> str:
    lines = [
        "| regime | one-state TM | pooled mean | ideal best-of-8 |",
        "|---|---|---|---|",
    ]
    for name, row in results.items():
        cells = [
            f"{row[k]['mean']:.3f} [{row[k]['ci95'][0]:.3f}, {row[k]['ci95'][1]:.3f}]"
            for k in ORACLES
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.regimes", description=__doc__)
    p.add_argument("--patterns", type=int, default=30)
    p.add_argument("--draws", type=int, default=64)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_args(argv)
    results = run(args.patterns, args.draws)
    print(json.dumps(results, indent=2) if args.json else markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
