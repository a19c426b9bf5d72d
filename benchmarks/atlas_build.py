"""Atlas build times, each in a fresh process with an empty cache (numba JIT included):

- the first atlas build for N samples (encode, then UMAP) against plain umap-learn on the same
  latents plus our encode alone: our overhead over encode + UMAP (target: at most 10%);
- a cached atlas opening in a new process (limit: 2 s), with and without its imports;
- a fresh clone's first start: the time to the first (PCA) map, and to the UMAP map.

    python -m benchmarks.atlas_build [--n 4096]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PRELUDE = """
import time, json, sys
t0 = time.perf_counter()
from pathlib import Path
from explorer import sources
from explorer.atlas import build_atlas, build_projection
from vae.checkpoint import load_checkpoint
from frames import ImageFolder, Normalization
t_imports = time.perf_counter()
# As the app opens it: the config and the weights' hash now, the model (and torch) on first use.
ck = load_checkpoint(sources.REPO / sources.DEMO_MODEL, lazy=True)
norm = Normalization.from_dict(ck.config["preprocessing"]["normalization"])
"""

OURS = (
    PRELUDE
    + """
data = sources.ensure_simulated()
t_data = time.perf_counter()
from common import cache
ds = ImageFolder(data, 64, norm, scan_record=cache.scan_record(data))  # as the app opens it
t_scanned = time.perf_counter()
atlas = build_atlas(ck, ds, defer_errors=True)  # as the app builds it: errors in the background
t_encoded = time.perf_counter()
pca, _ = build_projection(atlas, "pca")
t_pca = time.perf_counter()
umap_proj, hit = build_projection(atlas, "umap", seed=None)
t_umap = time.perf_counter()
atlas.recon_error  # waits for the background reconstruction errors, if still running
t_done = time.perf_counter()
import numpy as np
np.save(sys.argv[1], atlas.mu)
print(json.dumps({"data": t_data - t0, "encode": t_encoded - t_data, "first_map": t_pca - t0,
                  "umap": t_umap - t_pca, "total_after_data": t_done - t_data, "to_umap": t_umap - t0,
                  "after_imports": t_umap - t_imports, "scan": t_scanned - t_data,
                  "hits": [atlas.cache_hit, hit], "torch_imported": "torch" in sys.modules}))
"""
)

ENCODE_ONLY = (
    PRELUDE
    + """
from vae.inference import encode_dataset
ds = ImageFolder(sources.ensure_simulated(), 64, norm)
ck.model  # loaded before the clock: the reference is the encode alone
t1 = time.perf_counter()
encode_dataset(ck.model, ds, reconstruct=True, keep_images=True)
print(json.dumps({"encode": time.perf_counter() - t1}))
"""
)

PLAIN_UMAP = """
import time, json, sys
t0 = time.perf_counter()
import numpy as np, umap
mu = np.load(sys.argv[1])
umap.UMAP().fit(mu)
print(json.dumps({"umap": time.perf_counter() - t0}))
"""


def _run(code: str, env: dict, *args: str) -> dict:
    res = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if res.returncode:
        raise RuntimeError(res.stderr[-2000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def run(n: int = 4096) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = os.environ | {"PYTHONPATH": str(ROOT), "SPECKLE_VAE_SIM_N": str(n)}
        data_env = base | {
            "SPECKLE_VAE_CACHE": str(tmp / "data-cache"),
            "NUMBA_CACHE_DIR": str(tmp / "numba0"),
        }
        # Generate the data once, so every measurement below starts from the same files.
        _run(PRELUDE + "sources.ensure_simulated()\nprint('{}')", data_env)
        ours_env = data_env | {"NUMBA_CACHE_DIR": str(tmp / "numba1")}
        # The data is cached; remove the latents and maps so this is a first build.
        for sub in ("latents", "maps"):
            for f in (tmp / "data-cache" / sub).glob("*"):
                f.unlink()
        ours = _run(OURS, ours_env, str(tmp / "mu.npy"))
        enc = _run(ENCODE_ONLY, ours_env)
        plain = _run(
            PLAIN_UMAP, base | {"NUMBA_CACHE_DIR": str(tmp / "numba2")}, str(tmp / "mu.npy")
        )
        cached = _run(OURS, ours_env, str(tmp / "mu2.npy"))
        reference = enc["encode"] + plain["umap"]
        return [
            {
                "benchmark": f"atlas_first_build[n={n}]",
                "ours_seconds": ours["total_after_data"],
                "encode_seconds": enc["encode"],
                "plain_umap_seconds": plain["umap"],
                "reference_seconds": reference,
                "ratio": ours["total_after_data"] / reference,
            },
            # Imports (torch, Streamlit's stack, umap-learn) are paid once per server, not per open.
            {
                "benchmark": f"atlas_cached_open[n={n}]",
                "seconds": cached["to_umap"],
                "hits": cached["hits"],
                "seconds_after_imports": cached["after_imports"],
                "scan_seconds": cached["scan"],
                "torch_imported": cached["torch_imported"],
                "first_scan_seconds": ours["scan"],
                "limit_seconds": 2.0,
                "ratio": cached["to_umap"] / 2.0,
                "ratio_after_imports": cached["after_imports"] / 2.0,
            },
            {
                "benchmark": f"first_start[n={n}]",
                "first_map_seconds": ours["first_map"],
                "umap_map_seconds": ours["to_umap"],
                "data_seconds": ours["data"],
            },
        ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.atlas_build")
    p.add_argument("--n", type=int, default=4096)
    for r in run(p.parse_args(argv).n):
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
