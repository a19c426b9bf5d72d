"""Batched, gradient-free encoding and decoding shared by evaluation, the explorer and the app."""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vae.device import autocast
from vae.interactive import on_interactive_thread, start_interactive_thread  # noqa: F401 (public here)
from vae.kl import kl_per_dim, kl_terms  # noqa: F401 (public here)
from vae.model import VAE

log = logging.getLogger(__name__)


@dataclass
class Encoded:
    mu: np.ndarray  # (N, dz) float32
    logvar: np.ndarray  # (N, dz) float32
    recon: np.ndarray | None  # (N, H, W) float32 decoded from μ, if asked for
    images: np.ndarray | None  # (N, H, W) float32 preprocessed inputs, if asked for


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def for_interactive_use(model: VAE, fast: bool = True) -> VAE:
    """Eval mode, and on the CPU a fast path for the few-latent decodes of the app (slider moves,
    a clicked sample): the decoder as an ONNX Runtime session (vae/ort_decoder.py; measured
    2.3–2.8 → 0.67–0.92 ms a latent for the demo model), checked against the module before
    use. Where that is not possible the torch decoder runs channels-last, which oneDNN's
    convolutions take directly (~25% faster). For loaded models only: training keeps the default
    layout, and safetensors cannot save channels-last weights. `fast=False` leaves the ONNX
    Runtime session to a later build_fast_decoder() call (the app builds it in the background:
    1.4 s of a first start on 2 cores); decodes use torch until then."""
    model.eval()
    if _device_of(model).type == "cpu":
        model.decoder.to(memory_format=torch.channels_last)
        if fast:
            build_fast_decoder(model)
    return model


def build_fast_decoder(model: VAE) -> bool:
    """Build and check the ONNX Runtime decoder of a CPU model for_interactive_use() prepared,
    and use it from then on; False where it is not possible (torch stays in use)."""
    if _device_of(model).type != "cpu":
        return False
    fast = _build_fast(model)
    if fast is not None:
        _fast[model] = fast
    return fast is not None


def decoder_backend(model: VAE) -> str:
    """Which implementation decodes this model's one-latent requests: for the UI and reports."""
    if _fast_decoder(model) is not None:
        return "ONNX Runtime (CPU)"
    return f"PyTorch ({_device_of(model).type})"


class _Fast:
    """An ONNX Runtime decoder with a record of the weights it was built from: each tensor, its
    storage and its version counter, and the module attribute holding it. Weights changed in
    place, given new storage (`p.data = ...`) or replaced (`module.weight = ...`,
    `load_state_dict(assign=True)`) afterwards make it stale, and it is skipped. The tensors are
    listed once: walking the module tree on every call cost 60–110 µs."""

    def __init__(self, decoder: Callable[[np.ndarray], np.ndarray], model: VAE) -> None:
        self.decoder = decoder
        self.slots = [
            (table, name, t)
            for module in model.decoder.modules()
            for table in (module._parameters, module._buffers)
            for name, t in table.items()
            if t is not None
        ]
        self.state = self.current()

    def current(self) -> list[tuple[int, int]]:
        return [(t._version, t.data_ptr()) for _, _, t in self.slots]

    def valid(self) -> bool:
        return all(table.get(name) is t for table, name, t in self.slots) and (
            self.current() == self.state
        )


# One per loaded model; the models are the keys, so an evicted model takes its session along.
_fast: weakref.WeakKeyDictionary[VAE, _Fast] = weakref.WeakKeyDictionary()
FAST_BATCH = 16  # larger batches go to torch, which uses every core


def _fast_decoder(model: VAE) -> Callable[[np.ndarray], np.ndarray] | None:
    fast = _fast.get(model)
    return fast.decoder if fast is not None and fast.valid() else None


# The ONNX Runtime path pays where per-operator overhead dominates, in small decoders. Measured
# for the paper preset's decoder (17.3M parameters): 25 ms a latent either way, while building
# and checking the session took 1.6 s and 390 MB more at load. The demo's has 0.76M.
FAST_MAX_PARAMETERS = 4_000_000
# ONNX Runtime's intra-op threads for one-latent decodes: its own pool (not torch's OpenMP teams),
# idle threads parked rather than spinning. Measured for the demo decoder on 2 cores: 2.07 ms
# on one thread, 1.62 ms on two for 2.52 ms of CPU. Decodes from all sessions queue on the one
# interactive thread, so only one runs at a time; past two threads a 64×64 decode gains little.
FAST_THREADS = max(
    1,
    min(
        2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    ),
)


def _build_fast(model: VAE) -> _Fast | None:
    if sum(p.numel() for p in model.decoder.parameters()) > FAST_MAX_PARAMETERS:
        return None
    try:
        from vae.ort_decoder import OrtDecoder

        fast = OrtDecoder(model.decoder, threads=FAST_THREADS)
        fast.check(model.decoder)
        return _Fast(fast, model)
    except Exception as e:  # an optional fast path: no onnxruntime, an unknown layer, a mismatch
        # (ONNX Runtime's own errors derive from Exception alone). The model still loads.
        reason = (str(e).splitlines() or [""])[0] or type(e).__name__
        log.warning("decoding with PyTorch on the CPU: %s", reason)
        return None


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
        z = torch.as_tensor(mu[done : done + len(x)]).to(device)
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
    fast = _fast_decoder(model) if 0 < len(z) <= FAST_BATCH else None
    if fast is not None:
        return fast(np.asarray(z, dtype=np.float32))[:, 0]
    z = torch.as_tensor(np.asarray(z, dtype=np.float32))
    out = []
    for i in range(0, len(z), batch_size):
        with autocast(device):
            out.append(model.decode(z[i : i + batch_size].to(device)).float()[:, 0].cpu().numpy())
    return (
        np.concatenate(out) if out else np.zeros((0,) + (model.config.image_size,) * 2, np.float32)
    )


def decode_interactive(model: VAE, z: np.ndarray | torch.Tensor) -> np.ndarray:
    """decode() of a few latents (a slider move, a clicked sample) on the interactive thread."""
    return on_interactive_thread(decode, model, z)
