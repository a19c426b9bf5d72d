"""Train a reconstructor: `python -m inverse.train --method M --data DIR --out RUN [--vae CKPT]`.

The ridge read-outs are solved in closed form. The dense net, the MLP and the transmission
matrix descend through the project's one training loop (common.training.fit: progress bar,
metrics.jsonl, checkpoints, exact `--resume`). Every checkpoint records the VAE it reads (id and
path) or the matrix it inverts (sha256), the data it was fitted on and the exact command.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict

import numpy as np
import torch

from common import training
from common.checkpoint_files import read_resume
from common.distributed import Dist, log
from frames import Normalization, split_indices
from inverse import checkpoint as ick
from inverse.data import Camera, Pairs, load_pairs, with_camera
from inverse.features import encode_mu, lit_mask, pixel_features
from inverse.methods import method
from inverse.readout import Readout, ReadoutConfig, fit_ridge, predict
from inverse.scoring import pcc_rows
from inverse.tm_inverse import invert
from inverse.train_config import DEFAULT_HIDDEN, RESUME_MUST_MATCH, TrainConfig, parse_args
from speckle.simulated import N_INPUT
from speckle.tm_fit import TM_BATCH, TransmissionMatrix, initial_tm, tm_loss
from vae import checkpoint as vck
from vae.foreign import normalization_of

MAX_VAL = 256  # validation pairs (the matrix inverts each one)
DEFAULT_SIZE = 64  # frames without a VAE: 64×64, per-frame max (the VAE's default preprocessing)


def main(argv: list[str] | None = None) -> int:
    return training.run_cli("inverse.train", argv, parse_args, train)


def camera_of(cfg) -> Camera | None:
    if not cfg.photons:
        return None
    return Camera(cfg.photons, cfg.read_noise, cfg.bit_depth or None, cfg.seed)


def train(cfg: TrainConfig, dist: Dist, command: str) -> int:
    run = training.open_run(cfg, dist)
    m = method(cfg.method)
    if m.reads == "mu" and not cfg.vae:
        raise ValueError(f"--method {cfg.method} reads the VAE's μ: give --vae")
    vae = vck.load_checkpoint(cfg.vae, device=run.device) if cfg.vae else None
    size = vae.model_config.image_size if vae else DEFAULT_SIZE
    norm = normalization_of(vae) if vae else Normalization()
    pairs = load_pairs(cfg.data, size, norm, progress=cfg.progress and dist.main)
    lit = lit_mask(pairs.linear)  # the clean frames' lit region: the camera's photon level
    mask = lit_mask(pairs.linear, cfg.pixel_stride)
    pairs = with_camera(pairs, camera_of(cfg), norm, lit)
    train_idx, val_idx = split_indices(len(pairs.patterns), cfg.val_fraction, cfg.seed)
    val_idx = val_idx[:MAX_VAL]
    target = pairs.patterns.reshape(len(pairs.patterns), N_INPUT)
    meta = {
        "method": cfg.method,
        "preprocessing": {"image_size": size, "normalization": norm.to_dict()},
        "vae": {"id": vae.id, "path": str(cfg.vae)} if vae else None,
        "stride": cfg.pixel_stride,
        "camera": asdict(camera_of(cfg)) if cfg.photons else None,
        "train": asdict(cfg),
        "command": command,
        "dataset": training.dataset_record(cfg, pairs.fingerprint, len(train_idx), len(val_idx)),
        "mean_pattern": target[train_idx].mean(0).round(5).tolist(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if m.kind == "tm":
        return _train_tm(cfg, dist, run, pairs, mask, train_idx, val_idx, meta)
    if m.reads == "mu":
        log(dist, f"encoding {len(pairs.frames)} frames with the VAE")
        features = encode_mu(vae.model, pairs.frames)
    else:
        features = pixel_features(pairs.frames, mask)
    if m.kind == "linear":
        rcfg = ReadoutConfig("linear", features.shape[1], N_INPUT)
        model = Readout(rcfg)
        fit_ridge(model, features[train_idx], target[train_idx], cfg.alpha)
        val = _val_pcc(predict(model, features[val_idx]), target[val_idx])
        rec = ick.Reconstructor(
            meta | {"readout": rcfg.to_dict(), "metrics": val}, mask, model, None, ""
        )
        if dist.main:
            ick.save_reconstructor(run.checkpoint, rec)
        summary = f" (val_pcc={val['val_pcc']:.4g})" if val else ""
        log(dist, f"done: ridge on {len(train_idx)} pairs, reconstructor {run.checkpoint}{summary}")
        return 0
    hidden = cfg.hidden or DEFAULT_HIDDEN[m.kind]
    rcfg = ReadoutConfig(m.kind, features.shape[1], N_INPUT, hidden)
    return _train_readout(cfg, dist, run, features, target, mask, rcfg, train_idx, val_idx, meta)


def _val_pcc(pred: np.ndarray, truth: np.ndarray) -> dict:
    return {"val_pcc": float(pcc_rows(pred, truth).mean())} if len(truth) else {}


def _check_resume(path, cfg, meta: dict) -> tuple[dict, dict]:
    tensors, state = read_resume(path)
    config = ick.read_reconstructor_config(path)
    if state.get("weights_sha256") != config.get("weights_sha256"):
        raise ick.ReconstructorError(f"{path}: resume state does not belong to these weights")
    if config.get("dataset", {}).get("fingerprint") != meta["dataset"]["fingerprint"]:
        raise ValueError(
            f"{path}: --data has changed since this run started; resume needs the same data"
        )
    if (config.get("vae") or {}).get("id") != (meta.get("vae") or {}).get("id"):
        raise ValueError(f"{path}: --vae has changed since this run started")
    training.check_resume(path, cfg, state, RESUME_MUST_MATCH)
    return tensors, state


def _train_readout(cfg, dist, run, features, target, mask, rcfg, train_idx, val_idx, meta) -> int:
    torch.manual_seed(cfg.seed)
    model = Readout(rcfg)
    model.set_input_stats(features[train_idx])
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    x = torch.from_numpy(np.ascontiguousarray(features[train_idx], np.float32))
    y = torch.from_numpy(np.ascontiguousarray(target[train_idx], np.float32))
    batches = training.Batches(len(train_idx), cfg.batch_size, cfg.seed, dist)
    start = 0
    if cfg.resume and run.exists:
        tensors, state = _check_resume(run.resume_from, cfg, meta)
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        training.load_optimizer(opt, tensors, state["optimizer"], "opt.")
        start = int(state["step"])
        training.resumed(dist, run, start)

    def step(i: int, idx: list[int]) -> training.StepResult:
        loss = torch.nn.functional.mse_loss(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        value = float(loss.detach())
        return training.StepResult(
            finite=math.isfinite(value),
            record=lambda: {"loss": value},
            terms=lambda: f"loss={value:.4g}",
        )

    def validate() -> dict:
        return _val_pcc(predict(model, features[val_idx]), target[val_idx])

    def save(i: int, last_val: dict) -> None:
        rec = ick.Reconstructor(
            meta | {"readout": rcfg.to_dict(), "step": i, "metrics": last_val},
            mask,
            model,
            None,
            "",
        )
        tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
        o_t, o_info = training.optimizer_tensors(opt, "opt.")
        state = {"step": i, "train": asdict(cfg), "optimizer": o_info}
        ick.save_reconstructor(run.checkpoint, rec, tensors | o_t, state)
        model.train()

    task = training.Task(
        banner=(
            f"training {cfg.method} ({sum(p.numel() for p in model.parameters()) / 1e6:.2f} M "
            f"parameters) on {len(train_idx)} pairs ({len(val_idx)} held out)"
        ),
        step=step,
        update=opt.step,
        save=save,
        parameters=model.parameters,
        validate=validate if len(val_idx) else None,
        eval_every=cfg.eval_every,
        postfix=("loss",),
        saved_as="reconstructor",
        advice="lower --lr, or check the data",
    )
    model.train()
    return training.fit(task, cfg, dist, run, batches, start)


def _train_tm(cfg, dist, run, pairs: Pairs, mask, train_idx, val_idx, meta) -> int:
    g = torch.Generator().manual_seed(cfg.seed)
    x = torch.from_numpy(pairs.patterns[train_idx].reshape(len(train_idx), N_INPUT))
    y = torch.from_numpy(np.ascontiguousarray(pairs.linear[train_idx][:, mask]))
    re, im, sigma = initial_tm(x, y, g)
    re.requires_grad_()
    im.requires_grad_()
    norm = float(y.pow(2).mean())
    opt = torch.optim.Adam([re, im], lr=cfg.tm_lr * sigma)
    batches = training.Batches(len(train_idx), min(TM_BATCH, len(train_idx)), cfg.seed, dist)
    start = 0
    if cfg.resume and run.exists:
        tensors, state = _check_resume(run.resume_from, cfg, meta)
        with torch.no_grad():
            re.copy_(tensors["tm.re"])
            im.copy_(tensors["tm.im"])
        training.load_optimizer(opt, tensors, state["optimizer"], "opt.")
        start = int(state["step"])
        training.resumed(dist, run, start)
    inversion = {"starts": cfg.starts, "steps": cfg.inversion_steps}

    def matrix(loss: float = float("nan")) -> TransmissionMatrix:
        return TransmissionMatrix(
            re.detach().numpy().copy(), im.detach().numpy().copy(), mask, loss, 0.0
        )

    last_loss = [float("nan")]

    def step(i: int, idx: list[int]) -> training.StepResult:
        # Cosine decay over the run, as speckle.tm_fit.fit_transmission_matrix.
        for group in opt.param_groups:
            group["lr"] = cfg.tm_lr * sigma * 0.5 * (1 + math.cos(math.pi * i / cfg.max_steps))
        loss = tm_loss(re, im, x[idx], y[idx], norm)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        value = float(loss.detach())
        last_loss[0] = value
        return training.StepResult(
            finite=math.isfinite(value),
            record=lambda: {"loss": value},
            terms=lambda: f"loss={value:.4g}",
        )

    def validate() -> dict:
        out = invert(matrix(), pairs.frames[val_idx], cfg.starts, cfg.inversion_steps)
        return _val_pcc(out.patterns, pairs.patterns[val_idx])

    def save(i: int, last_val: dict) -> None:
        tm = matrix(last_loss[0])
        extra = {"step": i, "metrics": last_val, "tm_loss": last_loss[0], "inversion": inversion}
        rec = ick.Reconstructor(meta | extra | {"tm_sha256": tm.sha256()}, mask, None, tm, "")
        o_t, o_info = training.optimizer_tensors(opt, "opt.")
        tensors = {"tm.re": re.detach(), "tm.im": im.detach()} | o_t
        state = {"step": i, "train": asdict(cfg), "optimizer": o_info}
        ick.save_reconstructor(run.checkpoint, rec, tensors, state)

    task = training.Task(
        banner=(
            f"fitting a transmission matrix ({int(mask.sum())} lit pixels × {N_INPUT}) on "
            f"{len(train_idx)} pairs ({len(val_idx)} held out)"
        ),
        step=step,
        update=opt.step,
        save=save,
        parameters=lambda: [re, im],
        validate=validate if len(val_idx) else None,
        eval_every=cfg.eval_every,
        saved_as="reconstructor",
        advice="lower --tm-lr, or check the data",
    )
    return training.fit(task, cfg, dist, run, batches, start)


if __name__ == "__main__":
    sys.exit(main())
