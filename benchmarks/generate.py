"""The generator's speed, as ratios against references measured in the same run:

- sampling: one Generate click's work (the default samples, sampler and steps with guidance,
  then one batched decode) against 2 × steps bare denoiser forward passes of as many latents
  plus the same decode (target ≤ 1.5: the scheduler and guidance add little);
- training: `python -m diffusion.train`'s samples/s (without the regressor) against a plain loop
  of the same step on the same model and pairs: the loss, AdamW, gradient clipping and an EMA of
  the weights, and nothing else (target: time ratio ≤ 1.1).

The click in the browser is timed by `benchmarks.generate_click`.

    python -m benchmarks.generate
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.timing import median_time

ROOT = Path(__file__).resolve().parents[1]
VAE = ROOT / "models" / "demo"
GENERATOR = ROOT / "models" / "generators" / "demo"


def sampling(repeats: int = 20) -> dict:
    from diffusion.checkpoint import load_generator
    from diffusion.sampling import GUIDANCE, SAMPLER, SAMPLES, STEPS, sample_latents
    from vae.checkpoint import load_checkpoint
    from vae.inference import decode

    vae = load_checkpoint(VAE)
    gen = load_generator(GENERATOR, vae.id)
    pattern = np.random.default_rng(0).random((1, 16, 16)).astype(np.float32)

    def click():
        s = sample_latents(gen.model, pattern, SAMPLES, STEPS, SAMPLER, GUIDANCE, 0)
        decode(vae.model, s.latents[0])

    x = torch.randn(SAMPLES, gen.denoiser_config.latent_dim)
    t = torch.full((SAMPLES,), 500)
    p = torch.from_numpy(pattern).repeat(SAMPLES, 1, 1)

    @torch.inference_mode()
    def bare():
        for _ in range(2 * STEPS):
            gen.model(x, t, p)
        decode(vae.model, x.numpy())

    ours, ref = median_time(click, repeats), median_time(bare, repeats)
    return {
        "benchmark": f"generate_sampling[{SAMPLES} samples, {STEPS} {SAMPLER} steps, guidance {GUIDANCE:g}]",
        "ours_ms": ours * 1e3,
        "reference_ms": ref * 1e3,
        "ratio": ours / ref,
        "limit": 1.5,
    }


def _pairs(tmp: Path, n: int) -> Path:
    data = tmp / "pairs"
    subprocess.run(
        [sys.executable, "-m", "speckle", "mmf", "--n", str(n), "--seed", "0", "--out", str(data)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return data


def plain_rate(data: Path, steps: int, batch: int, block: int) -> float:
    """The loop with nothing but the step: same model, pairs, loss, optimizer, clipping and EMA."""
    from diffusion.data import load_pairs
    from diffusion.loss import diffusion_loss
    from diffusion.schedulers import training_scheduler
    from diffusion.train_config import TrainConfig
    from vae.checkpoint import load_checkpoint

    cfg = TrainConfig(vae=str(VAE), data=str(data), out="-")
    vae = load_checkpoint(VAE)
    pairs = load_pairs(vae, data, 16)
    torch.manual_seed(0)
    from diffusion.model import Denoiser

    model = Denoiser(cfg.denoiser_config(16)).train()
    mu = torch.from_numpy(pairs.mu)
    x_all, p_all = (mu - mu.mean(0)) / mu.std(0), torch.from_numpy(pairs.patterns)
    params = list(model.parameters())
    ema = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=cfg.lr)
    sched = training_scheduler(model.config)
    rates = []
    for b in range(steps // block + 1):
        t0 = time.perf_counter()
        for _ in range(block):
            idx = torch.randint(0, len(x_all), (batch,))
            noise = torch.randn(batch, x_all.shape[1])
            t = torch.randint(0, 1000, (batch,))
            loss = diffusion_loss(model, sched, x_all[idx], p_all[idx], noise, t, None)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            torch._foreach_lerp_(ema, params, 1.0 - cfg.ema_decay)
        if b:
            rates.append(block * batch / (time.perf_counter() - t0))
    return statistics.median(rates)


def ours_rate(data: Path, tmp: Path, steps: int, batch: int, block: int) -> float:
    from common.run_log import read_metrics
    from diffusion.train import main as train_main

    run = tmp / "run"
    argv = [
        "--vae",
        str(VAE),
        "--data",
        str(data),
        "--out",
        str(run),
        "--max-steps",
        str(steps + block),
        "--batch-size",
        str(batch),
        "--log-every",
        str(block),
        "--checkpoint-every",
        str(10**9),
        "--eval-every",
        str(10**9),
        "--no-regressor",
        "--no-progress",
    ]
    assert train_main(argv) == 0
    rows = [r for r in read_metrics(run / "metrics.jsonl") if r["split"] == "train"]
    return statistics.median(r["samples_per_s"] for r in rows[1:])


def training(steps: int = 200, batch: int = 256, n: int = 2048) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("SPECKLE_VAE_CACHE", str(Path(tmp) / "cache"))
        data = _pairs(Path(tmp), n)
        block = 20
        ref = plain_rate(data, steps, batch, block)
        ours = ours_rate(data, Path(tmp), steps, batch, block)
    return {
        "benchmark": f"generate_train_speed[batch {batch}, cpu]",
        "ours_samples_per_s": ours,
        "reference_samples_per_s": ref,
        "ratio": ref / ours,
        "limit": 1.1,
    }


def run(quick: bool = False) -> list[dict]:
    return [sampling(10 if quick else 30), training(100 if quick else 300)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.generate", description=__doc__.splitlines()[0]
    )
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    for row in run(args.quick):
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
