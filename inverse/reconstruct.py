"""One call for every reconstructor: frames (as the VAE sees them) in, patterns out."""

from __future__ import annotations

import numpy as np
import torch

from inverse.checkpoint import Reconstructor, load_reconstructor
from inverse.features import encode_mu, pixel_features
from inverse.readout import predict
from inverse.tm_inverse import STARTS, STEPS, invert
from speckle.simulated import PATTERN_SIZE


def check_vae(rec: Reconstructor, vae_id: str | None, where: str = "") -> None:
    """A μ read-out only reads the μ of the VAE it was trained on."""
    if rec.reads_mu and rec.vae_id != vae_id:
        made_for = (rec.config.get("vae") or {}).get("path") or str(rec.vae_id)[:12]
        raise ValueError(
            f"{where or rec.path}: this {rec.method} read-out belongs to the VAE {made_for} "
            f"({str(rec.vae_id)[:12]}), not to {str(vae_id)[:12]}; its μ would mean nothing"
        )


def load_for_cli(checkpoints: list[str], vae_path: str | None):
    """(reconstructors, VAE checkpoint or None) for a command line: the VAE loads only when a
    μ read-out is among the reconstructors, and must be the one each was trained on."""
    recs = [load_reconstructor(c) for c in checkpoints]
    vae = None
    if any(r.reads_mu for r in recs):
        if not vae_path:
            raise ValueError("a μ read-out is among the checkpoints: give --vae")
        # Lazy: torch and the VAE load only when a μ read-out needs them.
        from vae.checkpoint import load_checkpoint

        vae = load_checkpoint(vae_path)
        for r in recs:
            check_vae(r, vae.id)
    return recs, vae


def reconstruct(
    rec: Reconstructor,
    frames: np.ndarray,
    vae_model: torch.nn.Module | None = None,
    mu: np.ndarray | None = None,
) -> np.ndarray:
    """Patterns (N, 16, 16) in [0, 1] for frames (N, S, S). A μ read-out takes `mu`, or encodes
    the frames with `vae_model`; the transmission matrix's inversion uses the starts and steps in
    its config."""
    frames = np.asarray(frames, np.float32)
    size = rec.image_size
    if frames.ndim != 3 or frames.shape[1:] != (size, size):
        raise ValueError(
            f"frames must be (N, {size}, {size}) for this reconstructor, got {frames.shape}"
        )
    if rec.tm is not None:
        inv = rec.config.get("inversion", {})
        out = invert(
            rec.tm,
            frames,
            starts=int(inv.get("starts", STARTS)),
            steps=int(inv.get("steps", STEPS)),
        )
        return out.patterns
    if rec.reads_mu:
        if mu is None:
            if vae_model is None:
                raise ValueError(f"{rec.method} reads the VAE's μ: give the VAE")
            mu = encode_mu(vae_model, frames)
        features = mu
    else:
        features = pixel_features(frames, rec.mask)
    return predict(rec.readout, features).reshape(len(frames), PATTERN_SIZE, PATTERN_SIZE)
