"""Train the generator: `python -m diffusion.train --vae CKPT --data DIR --out RUN`.

The VAE is frozen and its μ of every image is encoded once (the explorer's latent cache). The
denoiser learns ε or v on per-dimension standardized μ under diffusers' DDPM cosine schedule, with
the pattern dropped for a fraction of samples (classifier-free guidance) and an EMA of its weights;
the deterministic regressor (same network, no noise) trains beside it on the same batches. CUDA
with bf16 autocast, `torchrun` DDP, and exact `--resume` as in vae.train.
"""

from __future__ import annotations

import copy
import math
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from common import training
from common.device import autocast
from common.distributed import Dist
from diffusion import checkpoint as gck
from diffusion.data import load_pairs
from diffusion.loss import diffusion_loss, regressor_loss
from diffusion.model import Denoiser
from diffusion.schedulers import training_scheduler
from diffusion.train_config import RESUME_MUST_MATCH, TrainConfig, parse_args
from frames import split_indices
from vae import checkpoint as vck

MAX_VAL = 1024


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup, then constant: the EMA does the averaging a decay would, and a run can be
    extended with --resume --max-steps without changing the steps it already took."""
    return cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))


@torch.inference_mode()
def evaluate(model, regressor, scheduler, x0, pattern, device) -> dict:
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
    return training.run_cli("diffusion.train", argv, parse_args, train)


def train(cfg: TrainConfig, dist: Dist, command: str) -> int:
    run = training.open_run(cfg, dist)
    device = run.device
    if run.exists:
        # Before any encoding: a run belongs to one VAE, and its latents mean nothing elsewhere.
        previous = gck.read_generator_config(run.resume_from)
    vae = vck.load_checkpoint(cfg.vae, device=device)
    if run.exists:
        gck.check_vae(previous, run.out, vae.id, cfg.vae)

    dcfg = cfg.denoiser_config(16, vae.model_config.latent_dim)
    pairs = load_pairs(vae, cfg.data, dcfg.pattern_size)
    train_idx, val_idx = split_indices(len(pairs.mu), cfg.val_fraction, cfg.seed)
    val_idx = val_idx[:MAX_VAL]
    batches = training.Batches(len(train_idx), cfg.batch_size, cfg.seed, dist)
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

    # Lazy: diffusers comes after diffusion.schedulers has set HF_HUB_OFFLINE, and stays out of
    # `--help` and the usage errors (diffusers.training_utils adds 4.7 s to this module's 3.6 s
    # import on the 2-core CPU of the tests).
    from diffusers.training_utils import EMAModel

    model.to(device)
    ema_model = copy.deepcopy(model).eval()
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
    start = 0
    fingerprint = pairs.dataset.fingerprint()
    if cfg.resume and run.exists:
        start = _restore(
            run.resume_from,
            cfg,
            model,
            regressor,
            ema,
            optimizer,
            r_opt,
            r_ema,
            noise_gen,
            fingerprint,
        )
        training.resumed(dist, run, start)

    net = training.data_parallel(model, run, dist)
    rnet = training.data_parallel(regressor, run, dist) if regressor is not None else None
    if cfg.compile:
        net = torch.compile(net)
    dataset_info = training.dataset_record(cfg, fingerprint, len(train_idx), len(val_idx))

    def save(step: int, last_val: dict) -> None:
        ema.copy_to(ema_model.parameters())
        tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
        tensors |= {f"ema.{i}": p for i, p in enumerate(ema.shadow_params)}
        o_t, o_info = training.optimizer_tensors(optimizer, "opt.")
        tensors |= o_t
        state = {
            "step": step,
            "train": asdict(cfg),
            "optimizer": o_info,
            "ema_step": ema.optimization_step,
        }
        if regressor is not None:
            tensors |= {f"regressor.{k}": v for k, v in regressor.state_dict().items()}
            r_t, r_info = training.optimizer_tensors(r_opt, "ropt.")
            tensors |= r_t | {f"rema.{i}": p for i, p in enumerate(r_ema.shadow_params)}
            state["regressor_optimizer"] = r_info
            state["regressor_ema_step"] = r_ema.optimization_step
            r_ema.copy_to(r_ema_model.parameters())
        meta = {
            "denoiser": dcfg.to_dict(),
            "vae": {"id": vae.id, "path": str(cfg.vae)},
            "preprocessing": vae.config.get("preprocessing"),
            "train": asdict(cfg),
            "step": step,
            "command": command,
            "dataset": dataset_info,
            "metrics": last_val,
            "world_size": dist.world,
            "device": device.type,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        tensors |= training.rng_tensors(noise_gen)
        gck.save_generator(run.checkpoint, ema_model, r_ema_model, meta, tensors, state)

    T = dcfg.train_timesteps

    def step(i: int, idx: list[int]) -> training.StepResult:
        x0, pat = x0_train[idx].to(device), p_train[idx].to(device)
        # Draws for the whole global batch, then this rank's rows: every world size sees the
        # same noise for the same sample.
        noise = torch.randn(cfg.batch_size, dcfg.latent_dim, generator=noise_gen)
        t = torch.randint(0, T, (cfg.batch_size,), generator=noise_gen)
        keep = torch.rand(cfg.batch_size, generator=noise_gen) >= cfg.cfg_dropout
        rows = slice(dist.rank, None, dist.world)
        noise, t, keep = (a[rows][: len(idx)].to(device) for a in (noise, t, keep))
        lr = lr_at(i, cfg)
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
        loss, r_loss = float(loss.detach()), float(r_loss.detach())
        return training.StepResult(
            finite=math.isfinite(loss + r_loss)
            and bool(torch.isfinite(gnorm) and torch.isfinite(r_norm)),
            record=lambda: {
                "loss": loss,
                "reg_loss": r_loss if regressor is not None else None,
                "grad_norm": float(gnorm),
                "lr": lr,
            },
            terms=lambda: f"loss={loss:.4g}, regressor={r_loss:.4g}",
        )

    def update() -> None:
        optimizer.step()
        if r_opt is not None:
            r_opt.step()
            r_ema.step(regressor.parameters())
        ema.step(model.parameters())

    def validate() -> dict:
        ema.copy_to(ema_model.parameters())
        if r_ema is not None:
            r_ema.copy_to(r_ema_model.parameters())
        return evaluate(ema_model, r_ema_model, scheduler, x0_val, p_val, device)

    def parameters() -> list[torch.Tensor]:
        return [*model.parameters(), *(regressor.parameters() if regressor is not None else ())]

    n_params = sum(p.numel() for p in model.parameters())
    task = training.Task(
        banner=(
            f"training {dcfg.arch} ({n_params / 1e6:.2f} M parameters, {dcfg.prediction}) on "
            f"{len(train_idx)} pairs ({len(val_idx)} held out), device {device}, world {dist.world}"
        ),
        step=step,
        update=update,
        save=save,
        parameters=parameters,
        validate=validate if len(val_idx) else None,
        eval_every=cfg.eval_every,
        saved_as="generator",
        advice="lower --lr, or check the data",
    )
    model.train()
    return training.fit(task, cfg, dist, run, batches, start)


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
    training.check_resume(path, cfg, state, RESUME_MUST_MATCH)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    training.load_optimizer(optimizer, tensors, state["optimizer"], "opt.")
    n = len(ema.shadow_params)
    ema.shadow_params = [
        tensors[f"ema.{i}"].to(p.device) for i, p in zip(range(n), model.parameters(), strict=True)
    ]
    ema.optimization_step = int(state["ema_step"])
    if regressor is not None:
        regressor.load_state_dict(
            {k[10:]: v for k, v in tensors.items() if k.startswith("regressor.")}
        )
        training.load_optimizer(r_opt, tensors, state["regressor_optimizer"], "ropt.")
        if "regressor_ema_step" in state:
            params = list(regressor.parameters())
            r_ema.shadow_params = [tensors[f"rema.{i}"].to(p.device) for i, p in enumerate(params)]
            r_ema.optimization_step = int(state["regressor_ema_step"])
        else:  # a run saved before the regressor had an EMA: the average starts here
            r_ema.shadow_params = [p.detach().clone() for p in regressor.parameters()]
    training.load_rng(tensors, noise_gen)
    return int(state["step"])


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
