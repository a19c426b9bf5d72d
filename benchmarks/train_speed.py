"""Training throughput of our loop (`vae.train`) against a plain reference loop: the same model,
plain Adam, fp32, no clipping, schedules, logging or checkpoints, on the same images.

    python -m benchmarks.train_speed [--steps 60] [--preset demo]

Prints images/s of both and their ratio. The paper preset is measured only where a GPU exists.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from common.device import pick_device
from common.run_log import read_metrics
from vae.loss import vae_loss
from vae.model import PRESETS, VAE
from vae.train import main as train_main


def make_data(root: Path, n: int, size: int) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = (rng.exponential(1.0, (size, size)) * 8000).clip(0, 65535).astype(np.uint16)
        Image.fromarray(img).save(root / f"{i:04d}.png")
    return root


def reference_rate(preset: str, steps: int, batch: int, device: torch.device, block: int) -> float:
    """Plain loop, images/s: median over blocks of `block` steps, after one warm-up block."""
    config = PRESETS[preset]
    torch.manual_seed(0)
    model = VAE(config).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x_all = torch.rand(512, 1, config.image_size, config.image_size, device=device)
    rates = []
    for b in range(steps // block + 1):
        t0 = time.perf_counter()
        for s in range(block):
            i = (b * block + s) * batch % (len(x_all) - batch)
            x = x_all[i : i + batch]
            x_hat, post = model(x)
            loss = vae_loss(x, x_hat, post, beta=1.0).total
            opt.zero_grad()
            loss.backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if b:  # the first block is warm-up
            rates.append(block * batch / (time.perf_counter() - t0))
    return statistics.median(rates)


def ours_rate(preset: str, steps: int, batch: int, device: torch.device, block: int) -> float:
    config = PRESETS[preset]
    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(Path(tmp) / "data", 512, config.image_size)
        run = Path(tmp) / "run"
        argv = [
            "--data",
            str(data),
            "--out",
            str(run),
            "--preset",
            preset,
            "--max-steps",
            str(steps + block),
            "--batch-size",
            str(batch),
            "--log-every",
            str(block),
            "--checkpoint-every",
            str(10**9),
            "--val-fraction",
            "0.1",
            "--no-progress",
            "--device",
            device.type,
        ]
        assert train_main(argv) == 0
        rows = [r for r in read_metrics(run / "metrics.jsonl") if r["split"] == "train"]
    return statistics.median(r["images_per_s"] for r in rows[1:])


def run(steps: int = 60, presets: list[str] | None = None, batch: int = 64) -> list[dict]:
    device = pick_device("auto")
    presets = presets or (["demo", "paper"] if device.type == "cuda" else ["demo"])
    results = []
    for preset in presets:
        block = 10
        ref = reference_rate(preset, steps, batch, device, block)
        ours = ours_rate(preset, steps, batch, device, block)
        results.append(
            {
                "benchmark": f"train_speed[{preset},{device.type}]",
                "ours_images_per_s": ours,
                "reference_images_per_s": ref,
                "ratio": ours / ref,
            }
        )
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.train_speed")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--preset", action="append", choices=list(PRESETS))
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args(argv)
    for r in run(args.steps, args.preset, args.batch_size):
        print(json.dumps(r))
        print(
            f"{r['benchmark']}: ours {r['ours_images_per_s']:.0f} img/s, plain loop "
            f"{r['reference_images_per_s']:.0f} img/s, ratio {r['ratio']:.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
