"""Train the generator: `python -m diffusion.train --vae CKPT --data DIR --out RUN`.

The VAE is frozen and its μ of every image is encoded once (the explorer's latent cache). The
denoiser learns ε or v on per-dimension standardized μ under diffusers' DDPM cosine schedule, with
the pattern dropped for a fraction of samples (classifier-free guidance) and an EMA of its weights;
the deterministic regressor (same network, no noise) trains beside it on the same batches. CUDA
with bf16 autocast, `torchrun` DDP, and exact `--resume` as in vae.train.
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from common.checkpoint_files import CheckpointError
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
    load_optimizer,
    optimizer_tensors,
    simulation_record,
)
from diffusion import checkpoint as gck
from diffusion.data import load_pairs
from diffusion.loss import diffusion_loss, regressor_loss
from diffusion.model import Denoiser
from diffusion.schedulers import training_scheduler
from diffusion.train_config import RESUME_MUST_MATCH, TrainConfig, parse_args
from frames import ImageError, split_indices
from vae import checkpoint as vck

MAX_VAL = 1024


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup, then constant: the EMA does the averaging a decay would, and a run can be
    extended with --resume --max-steps without changing the steps it already took."""
    return cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))


@torch.inference_mode()
def validate(model, regressor, scheduler, x0, pattern, device) -> dict:
    """Held-out loss at fixed noise draws and timesteps (the same every time), and the
    regressor's MSE on standardized μ."""
    g = torch.Generator().manual_seed(12345)
    noise = torch.randn(x0.shape, generator=g)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (len(x0),), generator=g)
    x0, pattern, noise, t = (a.to(device) for a in (x0, pattern, noise, t))
    out = {"loss": float(diffusion_loss(model, scheduler, x0, pattern, noise, t, None))}
    if regressor is not None:
        out["reg_loss"] = float(regressor_loss(regressor, x0, pattern))
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    cfg = parse_args(argv)
    dist = setup_distributed(cfg.device)
    try:
        return train(cfg, dist, command_line("diffusion.train", argv, dist))
    except (ImageError, CheckpointError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if dist.enabled:
            torch.distributed.destroy_process_group()


def train(cfg: TrainConfig, dist: Dist, command: str) -> int:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device, dist.local_rank)
    out = Path(cfg.out)
    run_ckpt = out / "checkpoint"
    has_run = (run_ckpt / gck.CONFIG).is_file() or (out / ".checkpoint.old").is_dir()
    if has_run and not cfg.resume:
        raise ValueError(f"{out}: already holds a run; pass --resume or choose another --out")
    if has_run:
        # Before any encoding: a run belongs to one VAE, and its latents mean nothing elsewhere.
        previous = gck.read_generator_config(run_ckpt if run_ckpt.exists() else out)
    vae = vck.load_checkpoint(cfg.vae, device=device)
    if has_run:
        gck.check_vae(previous, out, vae.id, cfg.vae)

    dcfg = cfg.denoiser_config(16, vae.model_config.latent_dim)
    pairs = load_pairs(vae, cfg.data, dcfg.pattern_size)
    train_idx, val_idx = split_indices(len(pairs.mu), cfg.val_fraction, cfg.seed)
    val_idx = val_idx[:MAX_VAL]
    batches = Batches(len(train_idx), cfg.batch_size, cfg.seed, dist)
    mu = torch.from_numpy(pairs.mu)
    mean, std = mu[train_idx].mean(0), mu[train_idx].std(0)

    torch.manual_seed(cfg.seed)  # identical init on every rank
    model = Denoiser(dcfg)
    model.set_latent_stats(mean, std)
    regressor = copy.deepcopy(model) if cfg.regressor else None
    x0_all = model.standardize(mu)  # (N, dz): what the diffusion runs on
    patterns = torch.from_numpy(pairs.patterns)
    x0_train, p_train = x0_all[train_idx], patterns[train_idx]
    x0_val, p_val = x0_all[val_idx], patterns[val_idx]

    model.to(device)
    ema_model = copy.deepcopy(model).eval()
    from diffusers.training_utils import EMAModel

    ema = EMAModel(model.parameters(), decay=cfg.ema_decay, foreach=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    r_opt = r_ema = r_ema_model = None
    if regressor is not None:
        regressor.to(device)
        r_opt = torch.optim.AdamW(regressor.parameters(), lr=cfg.lr, weight_decay=0.0)
        # The regressor is a reference: saved as an EMA too, so it is not noisier than the
        # generator it is compared with.
        r_ema = EMAModel(regressor.parameters(), decay=cfg.ema_decay, foreach=True)
        r_ema_model = copy.deepcopy(regressor).eval()
    scheduler = training_scheduler(dcfg)
    noise_gen = torch.Generator().manual_seed(cfg.seed + 1)
    step = 0

    if cfg.resume and has_run:
        step = _restore(
            run_ckpt if run_ckpt.exists() else out,
            cfg,
            model,
            regressor,
            ema,
            optimizer,
            r_opt,
            r_ema,
            noise_gen,
            pairs.dataset.fingerprint(),
        )
        log(dist, f"resumed {out} at step {step}")
        if dist.main:
            truncate_metrics(out / METRICS, step)
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)

    net, rnet = model, regressor
    if dist.enabled:
        ids = [device.index] if device.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if regressor is not None:
            rnet = torch.nn.parallel.DistributedDataParallel(regressor, device_ids=ids)
    if cfg.compile:
        net = torch.compile(net)

    simulation = simulation_record(cfg.data)

    def meta(metrics: dict) -> dict:
        return {
            "denoiser": dcfg.to_dict(),
            "vae": {"id": vae.id, "path": str(cfg.vae)},
            "preprocessing": vae.config.get("preprocessing"),
            "train": asdict(cfg),
            "step": step,
            "command": command,
            "dataset": {
                "path": str(cfg.data),
                "fingerprint": pairs.dataset.fingerprint(),
                "n_train": len(train_idx),
                "n_val": len(val_idx),
                "seed": cfg.seed,
                "simulation": simulation,
            },
            "metrics": metrics,
            "world_size": dist.world,
            "device": device.type,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    last_val: dict = {}

    def save() -> None:
        if not dist.main:
            return
        ema.copy_to(ema_model.parameters())
        tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
        tensors |= {f"ema.{i}": p for i, p in enumerate(ema.shadow_params)}
        o_t, o_info = optimizer_tensors(optimizer, "opt.")
        tensors |= o_t
        state = {
            "step": step,
            "train": asdict(cfg),
            "optimizer": o_info,
            "ema_step": ema.optimization_step,
        }
        if regressor is not None:
            tensors |= {f"regressor.{k}": v for k, v in regressor.state_dict().items()}
            r_t, r_info = optimizer_tensors(r_opt, "ropt.")
            tensors |= r_t | {f"rema.{i}": p for i, p in enumerate(r_ema.shadow_params)}
            state["regressor_optimizer"] = r_info
            state["regressor_ema_step"] = r_ema.optimization_step
            r_ema.copy_to(r_ema_model.parameters())
        tensors["rng.noise"] = noise_gen.get_state()
        tensors["rng.torch"] = torch.get_rng_state()
        gck.save_generator(run_ckpt, ema_model, r_ema_model, meta(last_val), tensors, state)

    def barrier() -> None:
        if dist.enabled:
            torch.distributed.barrier()

    metrics_file = open(out / METRICS, "a") if dist.main else None  # noqa: SIM115
    bar = None
    if dist.main and cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.max_steps, initial=step, unit="step", dynamic_ncols=True)
    n_params = sum(p.numel() for p in model.parameters())
    log(
        dist,
        f"training {dcfg.arch} ({n_params / 1e6:.2f} M parameters, {dcfg.prediction}) on "
        f"{len(train_idx)} pairs ({len(val_idx)} held out), device {device}, world {dist.world}",
    )
    model.train()
    T = dcfg.train_timesteps
    t_last, seen = time.perf_counter(), 0
    code = 0
    with StopFlag() as stop:
        while step < cfg.max_steps:
            epoch, pos = divmod(step, batches.steps_per_epoch)
            for idx in batches.epoch(epoch, pos):
                if step >= cfg.max_steps:
                    break
                x0, pat = x0_train[idx].to(device), p_train[idx].to(device)
                # Draws for the whole global batch, then this rank's rows: every world size sees
                # the same noise for the same sample.
                noise = torch.randn(cfg.batch_size, dcfg.latent_dim, generator=noise_gen)
                t = torch.randint(0, T, (cfg.batch_size,), generator=noise_gen)
                keep = torch.rand(cfg.batch_size, generator=noise_gen) >= cfg.cfg_dropout
                rows = slice(dist.rank, None, dist.world)
                noise, t, keep = (a[rows][: len(idx)].to(device) for a in (noise, t, keep))
                lr = lr_at(step, cfg)
                for group in optimizer.param_groups + (r_opt.param_groups if r_opt else []):
                    group["lr"] = lr
                with autocast(device):
                    loss = diffusion_loss(net, scheduler, x0, pat, noise, t, keep)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                clip = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
                gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
                r_loss, r_norm = torch.zeros(()), torch.zeros(())
                if regressor is not None:
                    with autocast(device):
                        r_loss = regressor_loss(rnet, x0, pat)
                    r_opt.zero_grad(set_to_none=True)
                    r_loss.backward()
                    r_norm = torch.nn.utils.clip_grad_norm_(regressor.parameters(), clip)
                total = float(loss.detach()) + float(r_loss.detach())
                bad = not (
                    math.isfinite(total) and torch.isfinite(gnorm) and torch.isfinite(r_norm)
                )
                # On the device: NCCL reduces CUDA tensors only.
                flags = torch.tensor([float(bad), float(stop.requested)], device=device)
                if dist.enabled:
                    torch.distributed.all_reduce(flags)
                if flags[0] > 0:
                    log(
                        dist,
                        f"error: non-finite loss at step {step} (loss={float(loss.detach()):.4g}, "
                        f"regressor={float(r_loss.detach()):.4g}); stopped. Last good checkpoint: "
                        f"{run_ckpt} (lower --lr, or check the data)",
                    )
                    code = EXIT_NONFINITE
                    break
                optimizer.step()
                if r_opt is not None:
                    r_opt.step()
                    r_ema.step(regressor.parameters())
                ema.step(model.parameters())
                step += 1
                seen += len(idx) * dist.world
                if step % cfg.log_every == 0 or step == cfg.max_steps:
                    now = time.perf_counter()
                    rec = {
                        "split": "train",
                        "step": step,
                        "epoch": epoch,
                        "loss": float(loss.detach()),
                        "reg_loss": float(r_loss.detach()) if regressor is not None else None,
                        "grad_norm": float(gnorm),
                        "lr": lr,
                        "samples_per_s": seen / max(now - t_last, 1e-9),
                        "time": time.time(),
                    }
                    t_last, seen = now, 0
                    if metrics_file:
                        metrics_file.write(json.dumps(rec) + "\n")
                        metrics_file.flush()
                    if bar:
                        bar.set_postfix(loss=f"{rec['loss']:.4g}")
                if bar:
                    bar.update(1)
                if (
                    dist.main
                    and len(val_idx)
                    and (step % cfg.eval_every == 0 or step == cfg.max_steps)
                ):
                    ema.copy_to(ema_model.parameters())
                    if r_ema is not None:
                        r_ema.copy_to(r_ema_model.parameters())
                    last_val = validate(ema_model, r_ema_model, scheduler, x0_val, p_val, device)
                    metrics_file.write(
                        json.dumps({"split": "val", "step": step, **last_val}) + "\n"
                    )
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
    if code == 0:
        summary = ", ".join(f"{k}={v:.4g}" for k, v in last_val.items())
        log(
            dist, f"done: {step} steps, generator {run_ckpt}" + (f" ({summary})" if summary else "")
        )
    return code


def _restore(
    path: Path,
    cfg: TrainConfig,
    model,
    regressor,
    ema,
    optimizer,
    r_opt,
    r_ema,
    noise_gen,
    fingerprint: str,
) -> int:
    tensors, state = gck.read_resume(path)
    config = gck.read_generator_config(path)
    if state.get("weights_sha256") != config.get("weights_sha256"):
        raise gck.GeneratorError(f"{path}: resume state does not belong to these weights")
    if config.get("dataset", {}).get("fingerprint") != fingerprint:
        # Another split and other latent statistics: the run could not continue as it was.
        raise ValueError(
            f"{path}: --data has changed since this run started; resume needs the same data"
        )
    old = state.get("train", {})
    changed = [k for k in RESUME_MUST_MATCH if k in old and old[k] != getattr(cfg, k)]
    if changed:
        raise ValueError(
            f"{path}: --resume with changed settings {changed}; they must match the run"
        )
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    load_optimizer(optimizer, tensors, state["optimizer"], "opt.")
    n = len(ema.shadow_params)
    ema.shadow_params = [
        tensors[f"ema.{i}"].to(p.device) for i, p in zip(range(n), model.parameters(), strict=True)
    ]
    ema.optimization_step = int(state["ema_step"])
    if regressor is not None:
        regressor.load_state_dict(
            {k[10:]: v for k, v in tensors.items() if k.startswith("regressor.")}
        )
        load_optimizer(r_opt, tensors, state["regressor_optimizer"], "ropt.")
        if "regressor_ema_step" in state:
            params = list(regressor.parameters())
            r_ema.shadow_params = [tensors[f"rema.{i}"].to(p.device) for i, p in enumerate(params)]
            r_ema.optimization_step = int(state["regressor_ema_step"])
        else:  # a run saved before the regressor had an EMA: the average starts here
            r_ema.shadow_params = [p.detach().clone() for p in regressor.parameters()]
    noise_gen.set_state(tensors["rng.noise"])
    torch.set_rng_state(tensors["rng.torch"])
    return int(state["step"])


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
