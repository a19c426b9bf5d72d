"""One frame through every shipped reconstructor (models/inverse/demo) on the CPU, as the Inverse
page runs it (explorer.inverse.reconstruct_frame, the frame's μ known from the atlas), against
the demo VAE encoding that same frame, measured in the same run, on one thread as the app's
interactive worker runs them. Target: every learned method
under 100 ms a frame. The transmission matrix's inversion (gradient descent from several starts)
is reported beside them.

    python -m benchmarks.inverse
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from benchmarks.timing import median_time
from explorer import inverse
from inverse.features import encode_mu
from speckle.mmf import simulate_mmf
from vae.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "models" / "demo"
TARGET_MS = 100.0


def run(repeats: int = 20) -> list[dict]:
    # One intra-op thread, as on the app's interactive worker (explorer/serving.py).
    torch.set_num_threads(1)
    vae = load_checkpoint(DEMO)
    shipped = REPO / "models" / inverse.INVERSE_DIR / "demo"
    recs = inverse.load([p for p in inverse.matching(vae) if p.is_relative_to(shipped)])
    sim = simulate_mmf(1, 4242, digits="test")
    frame = (sim.images[0] / sim.images[0].max()).astype(np.float32)
    mu = encode_mu(vae.model, frame[None])[0]
    encode = median_time(lambda: encode_mu(vae.model, frame[None]), repeats, 3)
    rows = []
    for label, rec in recs.items():
        one = {label: rec}
        n = 3 if rec.tm is not None else repeats
        t = median_time(lambda one=one: inverse.reconstruct_frame(one, frame, vae, mu), n, 1)
        rows.append(
            {
                "benchmark": f"inverse_one_frame[{label},cpu]",
                "seconds": t,
                "reference_vae_encode_seconds": encode,
                "ratio": t / encode,
                "target_ms": None if rec.tm is not None else TARGET_MS,
                "met": None if rec.tm is not None else t * 1000 < TARGET_MS,
            }
        )
    learned = [r for r in rows if r["target_ms"] is not None]
    total = sum(r["seconds"] for r in learned)
    rows.append(
        {
            "benchmark": "inverse_one_frame[all learned,cpu]",
            "seconds": total,
            "reference_vae_encode_seconds": encode,
            "ratio": total / encode,
            "target_ms": TARGET_MS,
            "met": total * 1000 < TARGET_MS,
        }
    )
    return rows


def main() -> int:
    for r in run():
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
