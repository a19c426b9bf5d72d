"""Decode latency of one latent with the demo model against the time its forward FLOPs would take
at this CPU's measured matmul rate (the issue's limit: within 3×).

    python -m benchmarks.decode
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.timing import median_time
from vae.checkpoint import load_checkpoint

DEMO = Path(__file__).resolve().parents[1] / "models" / "demo"


def matmul_rate(n: int = 1024) -> float:
    """FLOP/s of a square fp32 matmul on this machine, now."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / median_time(lambda: a @ b, 20)


def run() -> list[dict]:
    model = load_checkpoint(DEMO).model.eval()
    z = torch.randn(1, model.config.latent_dim)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model.decode(z)
    flops = counter.get_total_flops()

    def decode() -> None:
        with torch.inference_mode():
            model.decode(z)

    t = median_time(decode, 50, 5)
    rate = matmul_rate()
    bound = flops / rate
    return [{"benchmark": "decode_one_latent[demo,cpu]", "seconds": t, "flops": flops,
             "matmul_flop_per_s": rate, "flop_bound_seconds": bound, "ratio": t / bound}]  # fmt: skip


def main() -> int:
    for r in run():
        print(json.dumps(r))
        print(f"decode: {r['seconds'] * 1e3:.2f} ms for {r['flops'] / 1e6:.1f} MFLOP; at "
              f"{r['matmul_flop_per_s'] / 1e9:.1f} GFLOP/s that is {r['flop_bound_seconds'] * 1e3:.2f} ms; "
              f"ratio {r['ratio']:.2f} (limit 3)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
