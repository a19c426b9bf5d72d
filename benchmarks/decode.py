"""Decode latency of one latent with the demo model against the time its forward FLOPs would take
at this CPU's measured matmul rate (target: within 3×).

The figure is the app's one-latent path: `explorer.serving.decode_interactive`, torch on the
interactive thread's one intra-op thread (what a slider move waits for). Beside it, in the same
run: `vae.inference.decode` in the calling thread, and the module's forward, eager. The bound
uses the matmul rate on all cores; the rate on one core is reported too, since the decode runs
on one.

    python -m benchmarks.decode
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.timing import median_time
from explorer import serving
from vae import inference
from vae.checkpoint import load_checkpoint

DEMO = Path(__file__).resolve().parents[1] / "models" / "demo"


def matmul_rate(n: int = 1024, threads: int | None = None) -> float:
    """FLOP/s of a square fp32 matmul on the machine running it, now (on `threads` threads if given)."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        return 2 * n**3 / median_time(lambda: a @ b, 20)
    finally:
        torch.set_num_threads(before)


def run(repeats: int = 200) -> list[dict]:
    plain = load_checkpoint(DEMO).model.eval()
    z = torch.randn(1, plain.config.latent_dim)
    zn = z.numpy()
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        plain.decode(z)
    flops = counter.get_total_flops()

    def eager() -> None:
        with torch.inference_mode():
            plain.decode(z)

    # Alternated, so that a busy neighbour on the machine slows all three alike.
    times: dict[str, list[float]] = {"app": [], "caller": [], "eager": []}
    for _ in range(3):
        times["app"].append(median_time(lambda: serving.decode_interactive(plain, zn), repeats, 10))
        times["caller"].append(median_time(lambda: inference.decode(plain, zn), repeats, 10))
        times["eager"].append(median_time(eager, repeats // 4, 5))
    t = {k: sorted(v)[1] for k, v in times.items()}
    rate, rate_one = matmul_rate(), matmul_rate(threads=1)
    bound = flops / rate
    return [
        {
            "benchmark": "decode_one_latent[demo,cpu]",
            "seconds": t["app"],
            "seconds_calling_thread": t["caller"],
            "seconds_torch_eager": t["eager"],
            "flops": flops,
            "matmul_flop_per_s": rate,
            "matmul_flop_per_s_one_thread": rate_one,
            "flop_bound_seconds": bound,
            "ratio": t["app"] / bound,
            "ratio_calling_thread": t["caller"] / bound,
            "ratio_torch_eager": t["eager"] / bound,
        }
    ]


def main() -> int:
    for r in run():
        print(json.dumps(r))
        print(
            f"decode (interactive thread): {r['seconds'] * 1e3:.2f} ms for {r['flops'] / 1e6:.1f} MFLOP; "
            f"at {r['matmul_flop_per_s'] / 1e9:.1f} GFLOP/s that is {r['flop_bound_seconds'] * 1e3:.2f} ms; "
            f"ratio {r['ratio']:.2f} (target 3). In the calling thread "
            f"{r['seconds_calling_thread'] * 1e3:.2f} ms ({r['ratio_calling_thread']:.2f}); "
            f"torch eager {r['seconds_torch_eager'] * 1e3:.2f} ms ({r['ratio_torch_eager']:.2f}); "
            f"one-thread matmul {r['matmul_flop_per_s_one_thread'] / 1e9:.1f} GFLOP/s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
