"""Train the β-VAE: `python -m vae.train --data DIR --preset demo --beta B --max-steps N --out RUN_DIR`.

Runs on CUDA (bf16 autocast, channels_last, optional torch.compile), MPS or CPU, and on many GPUs
or nodes with `torchrun --nproc_per_node=K -m vae.train ...` (DistributedDataParallel, NCCL on GPU,
gloo on CPU; only rank 0 writes). `--resume` continues exactly: weights, optimizer, schedule, RNG
and data position are all in the checkpoint, so a killed run ends bit-identical on CPU.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from common import training
from common.checkpoint_files import CheckpointError, read_resume
from common.device import autocast
from common.distributed import Dist, log
from frames import ImageFolder, Normalization, split_indices
from vae import checkpoint as ckpt
from vae.loss import active_units, vae_loss
from vae.model import VAE
from vae.train_config import (
    RESUME_MUST_MATCH,
    TrainConfig,
    model_config_for,
    parse_args,
)

MAX_VAL_SAMPLES = 2048  # validation cost stays bounded on big datasets
PRELOAD_AUTO_BYTES = 2 << 30  # preload datasets up to 2 GiB of float32 pixels into RAM


def preload(dataset, indices: np.ndarray, workers: int) -> torch.Tensor:
    loader = DataLoader(
        torch.utils.data.Subset(dataset, indices.tolist()), batch_size=256, num_workers=workers
    )
    return torch.cat([b for b in loader]) if len(indices) else torch.empty(0)


@torch.inference_mode()
def validate(model: VAE, x_val: torch.Tensor, cfg: TrainConfig, device: torch.device) -> dict:
    """Held-out reconstruction of z = μ, KL per dim and active units (mean KL > 0.01 nats)."""
    model.eval()
    recon, sq, kl_dims, n = 0.0, 0.0, None, 0
    for i in range(0, len(x_val), 256):
        x = x_val[i : i + 256].to(device)
        with autocast(device):
            x_hat, post = model(x, sample=False)
        terms = vae_loss(x, x_hat, post, beta=0.0, convention=cfg.recon)
        b = len(x)
        recon += float(terms.recon) * b
        sq += float((x_hat.float() - x).pow(2).mean()) * b
        kl_dims = terms.kl_per_dim * b if kl_dims is None else kl_dims + terms.kl_per_dim * b
        n += b
    model.train()
    kl_per_dim = (kl_dims / n).cpu()
    return {
        "recon": recon / n,
        "mse": sq / n,
        "kl": float(kl_per_dim.sum()),
        "active_units": active_units(kl_per_dim),
        "kl_per_dim": [round(float(v), 5) for v in kl_per_dim],
    }


def main(argv: list[str] | None = None) -> int:
    return training.run_cli("vae.train", argv, parse_args, train)


def train(cfg: TrainConfig, dist: Dist, command: str) -> int:
    run = training.open_run(cfg, dist)
    device = run.device
    base = ckpt.load_checkpoint(cfg.init_from) if cfg.init_from else None
    if base is not None and base.kind != "vae":
        raise CheckpointError(
            f"{base.path}: a model imported as exported programs cannot be fine-tuned here "
            "(its training code is its author's)"
        )
    model_cfg = base.model_config if base else model_config_for(cfg)
    norm = (
        Normalization.from_dict(base.config["preprocessing"]["normalization"])
        if base
        else (cfg.normalization_obj())
    )
    dataset = ImageFolder(cfg.data, model_cfg.image_size, norm)
    if cfg.subset:
        names = [n.strip() for n in Path(cfg.subset).read_text().splitlines() if n.strip()]
        dataset = dataset.subset(names)
    for msg in dataset.skipped:
        log(dist, f"warning: {msg}")
    for note in dataset.notes:
        log(dist, f"note: {note}")
    train_idx, val_idx = split_indices(len(dataset), cfg.val_fraction, cfg.seed)
    val_idx = val_idx[:MAX_VAL_SAMPLES]
    batches = training.Batches(len(train_idx), cfg.batch_size, cfg.seed, dist)

    pixel_bytes = len(dataset) * model_cfg.image_size**2 * 4
    in_ram = cfg.preload == "yes" or (cfg.preload == "auto" and pixel_bytes <= PRELOAD_AUTO_BYTES)
    x_train = preload(dataset, train_idx, cfg.workers) if in_ram else None
    x_val = preload(dataset, val_idx, cfg.workers) if dist.main and len(val_idx) else None

    torch.manual_seed(cfg.seed)  # identical init on every rank (DDP also broadcasts rank 0's)
    model = VAE(model_cfg)
    if base is not None:
        model.load_state_dict(base.model.state_dict())
    model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    noise_gen = torch.Generator().manual_seed(cfg.seed + 1)
    schedule = cfg.schedule_obj()
    start = 0
    if cfg.resume and run.exists:
        start = _restore(run.resume_from, cfg, model, optimizer, noise_gen)
        training.resumed(dist, run, start)

    net = training.data_parallel(model, run, dist)
    if cfg.compile:
        net = torch.compile(net)  # after DDP, as PyTorch recommends, so DDP's hooks are traced

    dataset_info = training.dataset_record(cfg, dataset.fingerprint(), len(train_idx), len(val_idx))

    def save(step: int, last_val: dict) -> None:
        tensors, info = training.optimizer_tensors(optimizer)
        summary = {k: v for k, v in last_val.items() if k != "kl_per_dim"}
        meta = {
            "model": model_cfg.to_dict(),
            "preprocessing": {"image_size": model_cfg.image_size, "normalization": norm.to_dict()},
            "beta": cfg.beta,
            "recon": cfg.recon,
            "schedule": schedule.to_dict(),
            "train": asdict(cfg),
            "step": step,
            "command": command,
            "dataset": dataset_info,
            "metrics": summary,
            "world_size": dist.world,
            "device": device.type,
            "base_checkpoint": base.id if base else None,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        resume_state = {"step": step, "optimizer": info, "train": asdict(cfg)}
        ckpt.save_checkpoint(
            run.checkpoint, model, meta, tensors | training.rng_tensors(noise_gen), resume_state
        )

    loader = None

    def begin_epoch(epoch_batches: list[list[int]]) -> None:
        nonlocal loader
        if x_train is None:
            subset = torch.utils.data.Subset(dataset, train_idx.tolist())
            loader = iter(DataLoader(subset, batch_sampler=epoch_batches, num_workers=cfg.workers))

    def step(i: int, idx: list[int]) -> training.StepResult:
        x = x_train[idx] if x_train is not None else next(loader)
        x = x.to(device, non_blocking=True)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        # ε for the whole global batch, then this rank's rows: every rank and a single process
        # with the same global batch see the same draws.
        eps = torch.randn(cfg.batch_size, model_cfg.latent_dim, generator=noise_gen)
        eps = eps[dist.rank :: dist.world][: len(idx)].to(device)
        beta_t, capacity_t = schedule.at(i)
        with autocast(device):
            x_hat, post = net(x, sample=True, noise=eps)
        terms = vae_loss(x, x_hat, post, beta_t, cfg.recon, capacity_t)
        total = float(terms.total.detach())
        optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(
            model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else math.inf
        )
        recon, kl = terms.recon.detach(), terms.kl.detach()
        return training.StepResult(
            finite=math.isfinite(total) and bool(torch.isfinite(gnorm)),
            record=lambda: {
                "loss": total,
                "recon": float(recon),
                "kl": float(kl),
                "beta": beta_t,
                "capacity": capacity_t,
                "active_units": active_units(terms.kl_per_dim.detach()),
                "grad_norm": float(gnorm),
                "lr": cfg.lr,
            },
            terms=lambda: f"recon={float(recon):.4g}, kl={float(kl):.4g}",
        )

    task = training.Task(
        banner=(
            f"training {cfg.preset} on {len(train_idx)} images ({len(val_idx)} held out), "
            f"device {device}, world {dist.world}, β={cfg.beta} ({cfg.recon}), {cfg.schedule}"
        ),
        step=step,
        update=optimizer.step,
        save=save,
        parameters=model.parameters,
        validate=(lambda: validate(model, x_val, cfg, device)) if x_val is not None else None,
        eval_every=cfg.eval_every or batches.steps_per_epoch,
        begin_epoch=begin_epoch,
        rate="images_per_s",
        postfix=("loss", "recon", "kl"),
        advice="lower --lr or --beta, or check the data",
    )
    model.train()
    return training.fit(task, cfg, dist, run, batches, start)


def _restore(path: Path, cfg: TrainConfig, model, optimizer, noise_gen) -> int:
    loaded = ckpt.load_checkpoint(path)
    tensors, state = read_resume(path)
    if state.get("weights_sha256") != loaded.id:
        raise CheckpointError(f"{path}: resume state does not belong to these weights")
    training.check_resume(path, cfg, state, RESUME_MUST_MATCH)
    model.load_state_dict(loaded.model.state_dict())
    training.load_optimizer(optimizer, tensors, state["optimizer"])
    training.load_rng(tensors, noise_gen)
    return int(state["step"])


if __name__ == "__main__":
    sys.exit(main())
