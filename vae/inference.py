"""Batched, gradient-free encoding, decoding and reconstruction errors of a model."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from common.device import autocast
from vae.kl import kl_per_dim, kl_terms  # noqa: F401 (public here)
from vae.model import VAE


@dataclass
class Encoded:
    mu: np.ndarray  # (N, dz) float32
    logvar: np.ndarray  # (N, dz) float32
    recon: np.ndarray | None  # (N, H, W) float32 decoded from μ, if asked for
    images: np.ndarray | None  # (N, H, W) float32 preprocessed inputs, if asked for


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def encode_dataset(
    model: VAE,
    dataset: Dataset,
    batch_size: int = 256,
    workers: int = 0,
    keep_images: bool = False,
    reconstruct: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Encoded:
    """μ and log σ² of every sample; optionally the inputs and the z = μ reconstructions."""
    device = _device_of(model)
    model.eval()
    mus, logvars, recons, images = [], [], [], []
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    done, total = 0, len(dataset)
    for x in loader:
        x = x.to(device)
        with autocast(device):
            post = model.encode(x)
            if reconstruct:
                recons.append(model.decode(post.mean).float()[:, 0].cpu().numpy())
        mus.append(post.mean.float().cpu().numpy())
        logvars.append(post.logvar.float().cpu().numpy())
        if keep_images:
            images.append(x[:, 0].float().cpu().numpy())
        done += len(x)
        if progress:
            progress(done, total)
    return Encoded(
        mu=np.concatenate(mus),
        logvar=np.concatenate(logvars),
        recon=np.concatenate(recons) if reconstruct else None,
        images=np.concatenate(images) if keep_images else None,
    )


def encode_batches(
    model: VAE,
    dataset: Dataset,
    batches: list[list[int]],
    errors: bool = True,
    workers: int = 0,
) -> Iterator[tuple[list[int], dict[str, np.ndarray]]]:
    """For each batch of dataset indices, in order: the indices and float32 "mu", "logvar" and,
    with errors, "recon_error" (MSE of the z = μ reconstruction, from the same images: a
    streamed encode reads each frame once). Yields one batch at a time: nothing accumulates."""
    device = _device_of(model)
    model.eval()
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=workers)
    for ids, x in zip(batches, loader, strict=True):
        with torch.inference_mode():
            x = x.to(device)
            with autocast(device):
                post = model.encode(x)
                recon = model.decode(post.mean).float() if errors else None
            out = {
                "mu": post.mean.float().cpu().numpy(),
                "logvar": post.logvar.float().cpu().numpy(),
            }
            if recon is not None:
                out["recon_error"] = (recon - x.float()).pow(2).flatten(1).mean(1).cpu().numpy()
        yield ids, out


@torch.inference_mode()
def reconstruction_errors(
    model: VAE,
    dataset: Dataset,
    mu: np.ndarray,
    batch_size: int = 256,
    workers: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Per-image MSE of the z = μ reconstruction, for latents already encoded: a second pass
    over the data that holds one batch of images at a time, so that it can run after the map
    is shown (the decode is two thirds of a first build's encoding time)."""
    device = _device_of(model)
    model.eval()
    errors, done = [], 0
    for x in DataLoader(dataset, batch_size=batch_size, num_workers=workers):
        z = torch.as_tensor(np.asarray(mu[done : done + len(x)], np.float32)).to(device)
        with autocast(device):
            recon = model.decode(z).float()
        diff = recon.cpu() - x.float()
        errors.append(diff.pow(2).flatten(1).mean(1).numpy())
        done += len(x)
        if progress:
            progress(done, len(mu))
    if done != len(mu):
        raise ValueError(f"{done} images for {len(mu)} latents")
    return np.concatenate(errors).astype(np.float32) if errors else np.zeros(0, np.float32)


@torch.inference_mode()
def decode(model: VAE, z: np.ndarray | torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Decode latents (N, dz) to images (N, H, W) in [0, 1]."""
    device = _device_of(model)
    if model.training:  # eval() walks every module: a tenth of a one-latent decode
        model.eval()
    z = torch.as_tensor(np.asarray(z, dtype=np.float32))
    out = []
    for i in range(0, len(z), batch_size):
        with autocast(device):
            out.append(model.decode(z[i : i + batch_size].to(device)).float()[:, 0].cpu().numpy())
    return (
        np.concatenate(out) if out else np.zeros((0,) + (model.config.image_size,) * 2, np.float32)
    )
