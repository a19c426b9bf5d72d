"""Simulating through the modal fibre: 10,000 frames (64×64, bundled digits) once the modes are
cached, against the Gaussian-TM fibre's 10,000 frames measured in the same run; and the pyMMF
solve that fills the cache (the default fibre: step index, a = 15 µm, NA 0.2, λ = 1 µm, 64 grid).
Target: 10,000 modal frames in under 60 s.

    python -m benchmarks.modal_fibre [--n 10000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

from speckle.mmf import simulate_mmf
from speckle.modal_fibre import ModalFibre, operators
from speckle.modes import solve_modes


def _timed(fn, repeats: int) -> dict:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}


def run(n: int = 10_000, repeats: int = 3, n_bend: int = 2_000) -> dict:
    out: dict = {"n": n, "repeats": repeats}
    with tempfile.TemporaryDirectory() as cache:
        os.environ["SPECKLE_VAE_CACHE"] = cache  # a cold cache: the solve is measured
        spec = ModalFibre().spec(64, 0.9)
        t0 = time.perf_counter()
        modes = solve_modes(spec)
        out["solve_s"] = time.perf_counter() - t0
        out["pymmf_solve_s"] = modes.seconds
        out["modes"] = modes.count
        t0 = time.perf_counter()
        solve_modes(spec)
        out["cache_hit_s"] = time.perf_counter() - t0
        cases = {
            "gaussian (reference)": {},
            "modes, one polarization": {"fibre": "modes", "modal": ModalFibre()},
            "modes, two polarizations": {
                "fibre": "modes",
                "modal": ModalFibre(polarization="both"),
            },
            "modes, temperature drift": {
                "fibre": "modes",
                "modal": ModalFibre(temperature=(0.0, 5.0), drift=0.01),
            },
        }
        for name, kwargs in cases.items():
            if "modal" in kwargs:  # T's operators once, outside the timing, as in a session
                operators(kwargs["modal"], 64, 0.9, 1234)
            simulate_mmf(16, 0, **kwargs)  # warm-up
            out[name] = _timed(lambda k=kwargs: simulate_mmf(n, 0, **k), repeats)
        bend = {"fibre": "modes", "modal": ModalFibre(bend=(0.0, 1.0))}
        simulate_mmf(16, 0, **bend)
        out[f"modes, bend per frame ({n_bend} frames)"] = _timed(
            lambda: simulate_mmf(n_bend, 0, **bend), 1
        )
    ref = out["gaussian (reference)"]["median_s"]
    for name in cases:
        out[name]["ratio_to_gaussian"] = out[name]["median_s"] / ref
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.modal_fibre", description=__doc__)
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    print(json.dumps(run(args.n, args.repeats), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
