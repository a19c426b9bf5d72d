"""A map of 50,000 latents: UMAP fitted on all of them against UMAP fitted on a random sample of
SAMPLE (20,000) with the rest placed by `transform` (the app's method above
explorer.projection.MAX_FIT), in the same run; PCA beside them. Each map's trustworthiness (k = 15) is estimated from 2,000 random query
points against all 50,000 (explorer.map_quality), with its standard error; the times are the
fits' wall-clock seconds on this machine.

The latents are the demo model's μ of simulated frames of the default fibre.

    python -m benchmarks.map_scale [--n 50000]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.load import progress

SAMPLE = 20_000  # the sample UMAP is fitted on before transform places the rest


def latents(n: int, folder: Path) -> np.ndarray:
    """μ of n simulated frames, read from an HDF5 recording as the app reads one."""
    from explorer import sources
    from frames import ImageFolder, Normalization
    from speckle.io import write_dataset
    from speckle.mmf import simulate_mmf
    from vae.checkpoint import load_checkpoint
    from vae.latents import encode_latents

    write_dataset(simulate_mmf(n, seed=11), folder, file_format="h5")
    ck = load_checkpoint(sources.REPO / sources.DEMO_MODEL)
    norm = Normalization.from_dict(ck.config["preprocessing"]["normalization"])
    dataset = ImageFolder(folder, ck.model_config.image_size, norm)
    progress(f"map_scale: {n} frames simulated; encoding")
    return encode_latents(ck, dataset, errors=False)["mu"]


def run(n: int = 50_000) -> list[dict]:
    os.environ.setdefault("SPECKLE_VAE_CACHE", tempfile.mkdtemp(prefix="bench-cache-"))
    from explorer.map_quality import trustworthiness
    from explorer.projection import fit_projection

    mu = latents(n, Path(os.environ["SPECKLE_VAE_CACHE"]) / "rec")
    # numba's compile of the fit and of transform, once, outside the timed fits
    fit_projection(mu[:600], "umap", max_fit=300)
    rows = []
    for name, kw in (
        ("pca", {"method": "pca"}),
        (f"umap, fitted on {SAMPLE} + transform", {"method": "umap", "max_fit": SAMPLE}),
        ("umap, fitted on all", {"method": "umap", "max_fit": n}),
    ):
        t0 = time.perf_counter()
        proj = fit_projection(mu, **kw)
        seconds = time.perf_counter() - t0
        trust, err = trustworthiness(mu, proj.coords, k=15)
        rows.append(
            {
                "benchmark": f"map_scale[n={n}, {name}]",
                "seconds": round(seconds, 1),
                "trustworthiness": round(trust, 4),
                "standard_error": round(err, 4),
            }
        )
        progress(f"map_scale: {json.dumps(rows[-1])}")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.map_scale")
    p.add_argument("--n", type=int, default=50_000)
    args = p.parse_args(argv)
    for row in run(args.n):
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
