"""Batched, gradient-free encoding and decoding shared by evaluation, the explorer and the app."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vae.device import autocast
from vae.model import VAE


@dataclass
class Encoded:
    mu: np.ndarray  # (N, dz) float32
    logvar: np.ndarray  # (N, dz) float32
    recon: np.ndarray | None  # (N, H, W) float32 decoded from μ, if asked for
    images: np.ndarray | None  # (N, H, W) float32 preprocessed inputs, if asked for


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def for_interactive_use(model: VAE) -> VAE:
    """Eval mode, and the decoder's activations in channels-last layout on the CPU, where
    oneDNN's convolutions take it directly: one-latent decodes of the demo model ~25% faster
    (measured 1.48 → 1.10 ms). For loaded models only: training keeps the default layout, and
    safetensors cannot save channels-last weights."""
    model.eval()
    if _device_of(model).type == "cpu":
        model.decoder.to(memory_format=torch.channels_last)
    return model


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


def kl_terms(mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """KL(q(z|x) || N(0, I)) of every sample and dim, in nats: (N, dz)."""
    return -0.5 * (1.0 + logvar - mu**2 - np.exp(logvar))


def kl_per_dim(mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """Mean KL per dimension over the data: (dz,)."""
    return kl_terms(mu, logvar).mean(0)
