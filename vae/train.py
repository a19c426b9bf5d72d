"""Train the β-VAE: `python -m vae.train --data DIR --preset demo --beta B --max-steps N --out RUN_DIR`.

Runs on CUDA (bf16 autocast, channels_last, optional torch.compile), MPS or CPU, and on many GPUs
or nodes with `torchrun --nproc_per_node=K -m vae.train ...` (DistributedDataParallel, NCCL on GPU,
gloo on CPU; only rank 0 writes). `--resume` continues exactly: weights, optimizer, schedule, RNG
and data position are all in the checkpoint, so a killed run ends bit-identical on CPU.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from common.checkpoint_files import CheckpointError, read_resume
from common.device import autocast, pick_device
from common.distributed import Dist, log, setup_distributed
from common.run_log import METRICS, truncate_metrics
from common.training import (
    EXIT_INTERRUPTED,
    EXIT_NONFINITE,
    EXIT_USAGE,
    Batches,
    StopFlag,
    command_line,
    launcher_pid,
    load_optimizer,
    optimizer_tensors,
    simulation_record,
)
from frames import ImageError, ImageFolder, Normalization, split_indices
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
    argv = sys.argv[1:] if argv is None else list(argv)
    cfg = parse_args(argv)
    dist = setup_distributed(cfg.device)
    try:
        return train(cfg, dist, command_line("vae.train", argv, dist))
    except (ImageError, CheckpointError, ValueError, OSError) as e:
        # OSError: a read-only or full output directory; the last good checkpoint is intact.
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if dist.enabled:
            torch.distributed.destroy_process_group()


def train(cfg: TrainConfig, dist: Dist, command: str) -> int:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    device = pick_device(cfg.device, dist.local_rank)
    out = Path(cfg.out)
    run_ckpt = out / "checkpoint"
    has_run = (run_ckpt / ckpt.CONFIG).is_file() or (out / ".checkpoint.old").is_dir()
    if has_run and not cfg.resume:
        raise ValueError(f"{out}: already holds a run; pass --resume or choose another --out")

    base = ckpt.load_checkpoint(cfg.init_from) if cfg.init_from else None
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
    batches = Batches(len(train_idx), cfg.batch_size, cfg.seed, dist)

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
    step = 0

    if cfg.resume and has_run:
        step = _restore(run_ckpt if run_ckpt.exists() else out, cfg, model, optimizer, noise_gen)
        log(dist, f"resumed {out} at step {step}")
        if dist.main:
            truncate_metrics(out / METRICS, step)
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)

    net: torch.nn.Module = model
    if dist.enabled:
        ids = [device.index] if device.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(net, device_ids=ids)
    if cfg.compile:
        net = torch.compile(net)  # after DDP, as PyTorch recommends, so DDP's hooks are traced

    # A simulated dataset records how it was made (seeds, options, command): keep it with the model.
    simulation = simulation_record(cfg.data)

    def meta(metrics: dict) -> dict:
        return {
            "model": model_cfg.to_dict(),
            "preprocessing": {"image_size": model_cfg.image_size, "normalization": norm.to_dict()},
            "beta": cfg.beta,
            "recon": cfg.recon,
            "schedule": schedule.to_dict(),
            "train": asdict(cfg),
            "step": step,
            "command": command,
            "dataset": {
                "path": str(cfg.data),
                "fingerprint": dataset.fingerprint(),
                "n_train": len(train_idx),
                "n_val": len(val_idx),
                "seed": cfg.seed,
                "simulation": simulation,
            },
            "metrics": metrics,
            "world_size": dist.world,
            "device": device.type,
            "base_checkpoint": base.id if base else None,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    last_val: dict = {}

    def save() -> None:
        if not dist.main:
            return
        tensors, info = optimizer_tensors(optimizer)
        tensors["rng.noise"] = noise_gen.get_state()
        tensors["rng.torch"] = torch.get_rng_state()
        summary = {k: v for k, v in last_val.items() if k != "kl_per_dim"}
        ckpt.save_checkpoint(
            run_ckpt,
            model,
            meta(summary),
            tensors,
            {"step": step, "optimizer": info, "train": asdict(cfg)},
        )

    def barrier() -> None:
        if dist.enabled:
            torch.distributed.barrier()

    eval_every = cfg.eval_every or batches.steps_per_epoch
    metrics_file = open(out / METRICS, "a") if dist.main else None  # noqa: SIM115
    bar = None
    if dist.main and cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.max_steps, initial=step, unit="step", dynamic_ncols=True)
    log(
        dist,
        f"training {cfg.preset} on {len(train_idx)} images ({len(val_idx)} held out), "
        f"device {device}, world {dist.world}, β={cfg.beta} ({cfg.recon}), {cfg.schedule}",
    )
    model.train()
    t_last, imgs_since = time.perf_counter(), 0
    code = 0
    parent = launcher_pid()
    with StopFlag() as stop:
        while step < cfg.max_steps:
            epoch, pos = divmod(step, batches.steps_per_epoch)
            epoch_batches = batches.epoch(epoch, pos)
            loader = None
            if x_train is None:
                subset = torch.utils.data.Subset(dataset, train_idx.tolist())
                loader = iter(
                    DataLoader(subset, batch_sampler=epoch_batches, num_workers=cfg.workers)
                )
            for idx in epoch_batches:
                if step >= cfg.max_steps:
                    break
                x = x_train[idx] if x_train is not None else next(loader)
                x = x.to(device, non_blocking=True)
                if device.type == "cuda":
                    x = x.contiguous(memory_format=torch.channels_last)
                # ε for the whole global batch, then this rank's rows: every rank and a single
                # process with the same global batch see the same draws.
                eps = torch.randn(cfg.batch_size, model_cfg.latent_dim, generator=noise_gen)
                eps = eps[dist.rank :: dist.world][: len(idx)].to(device)
                beta_t, capacity_t = schedule.at(step)
                with autocast(device):
                    x_hat, post = net(x, sample=True, noise=eps)
                terms = vae_loss(x, x_hat, post, beta_t, cfg.recon, capacity_t)
                total = float(terms.total.detach())
                optimizer.zero_grad(set_to_none=True)
                terms.total.backward()
                gnorm = torch.nn.utils.clip_grad_norm_(
                    model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else math.inf
                )
                bad = not (math.isfinite(total) and torch.isfinite(gnorm))
                if cfg.exit_with_parent and os.getppid() != parent:
                    stop.requested = True  # orphaned: the server that started this job is gone
                # On the device: NCCL reduces CUDA tensors only.
                flags = torch.tensor([float(bad), float(stop.requested)], device=device)
                if dist.enabled:
                    torch.distributed.all_reduce(flags)  # ranks agree on when to stop
                if flags[0] > 0:
                    log(
                        dist,
                        f"error: non-finite loss at step {step} (recon={float(terms.recon.detach()):.4g}, "
                        f"kl={float(terms.kl.detach()):.4g}); stopped. Last good checkpoint: {run_ckpt} "
                        "(lower --lr or --beta, or check the data)",
                    )
                    code = EXIT_NONFINITE
                    break
                optimizer.step()
                step += 1
                imgs_since += len(idx) * dist.world
                if step % cfg.log_every == 0 or step == cfg.max_steps:
                    now = time.perf_counter()
                    rec = {
                        "split": "train",
                        "step": step,
                        "epoch": epoch,
                        "loss": total,
                        "recon": float(terms.recon.detach()),
                        "kl": float(terms.kl.detach()),
                        "beta": beta_t,
                        "capacity": capacity_t,
                        "active_units": active_units(terms.kl_per_dim.detach()),
                        "grad_norm": float(gnorm),
                        "lr": cfg.lr,
                        "images_per_s": imgs_since / max(now - t_last, 1e-9),
                        "time": time.time(),
                    }
                    t_last, imgs_since = now, 0
                    if metrics_file:
                        metrics_file.write(json.dumps(rec) + "\n")
                        metrics_file.flush()
                    if bar:
                        bar.set_postfix(
                            loss=f"{rec['loss']:.4g}",
                            recon=f"{rec['recon']:.4g}",
                            kl=f"{rec['kl']:.4g}",
                        )
                if bar:
                    bar.update(1)
                if x_val is not None and (step % eval_every == 0 or step == cfg.max_steps):
                    last_val = validate(model, x_val, cfg, device)
                    rec = {"split": "val", "step": step, "epoch": epoch, **last_val}
                    metrics_file.write(json.dumps(rec) + "\n")
                    metrics_file.flush()
                if step % cfg.checkpoint_every == 0 or step == cfg.max_steps:
                    save()
                    barrier()
                if flags[1] > 0:
                    if step % cfg.checkpoint_every and step != cfg.max_steps:
                        save()
                        barrier()
                    log(
                        dist,
                        f"interrupted at step {step}; checkpoint saved in {run_ckpt}; "
                        "continue with --resume",
                    )
                    code = EXIT_INTERRUPTED
                    break
            if code:
                break
    if bar:
        bar.close()
    if metrics_file:
        metrics_file.close()
    if dist.enabled:
        # Every rank reports a digest of its weights, so users (and tests) can check they agree.
        digest = hashlib.sha256(
            b"".join(p.detach().cpu().numpy().tobytes() for p in model.parameters())
        )
        # One write of the whole line: two ranks share stderr, and print() may write the text and
        # its newline separately, letting the other rank's line in between.
        sys.stderr.flush()
        os.write(2, f"rank {dist.rank}: final weights {digest.hexdigest()[:16]}\n".encode())
    if code == 0:
        summary = ", ".join(f"{k}={v:.4g}" for k, v in last_val.items() if k != "kl_per_dim")
        log(
            dist,
            f"done: {step} steps, checkpoint {run_ckpt}" + (f" ({summary})" if summary else ""),
        )
    return code


def _restore(path: Path, cfg: TrainConfig, model, optimizer, noise_gen) -> int:
    loaded = ckpt.load_checkpoint(path)
    tensors, state = read_resume(path)
    if state.get("weights_sha256") != loaded.id:
        raise CheckpointError(f"{path}: resume state does not belong to these weights")
    old = state.get("train", {})
    changed = [k for k in RESUME_MUST_MATCH if k in old and old[k] != getattr(cfg, k)]
    if changed:
        raise ValueError(
            f"{path}: --resume with changed settings {changed}; they must match the run"
        )
    model.load_state_dict(loaded.model.state_dict())
    load_optimizer(optimizer, tensors, state["optimizer"])
    noise_gen.set_state(tensors["rng.noise"])
    torch.set_rng_state(tensors["rng.torch"])
    return int(state["step"])


if __name__ == "__main__":
    sys.exit(main())
