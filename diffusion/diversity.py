"""Stochastic fibres, the reason for a generative model: when the fibre moves between recordings
(`python -m speckle mmf --states M --bend MU`), one pattern has many true outputs. A generator
trained on such a set should spread its samples as the truth spreads: the PCC between two of its
samples for one pattern should match the PCC between the outputs of two fibre states (about μ⁴),
and its per-pixel standard deviation should fall where the truth's does."""

from __future__ import annotations

import json

import numpy as np
import torch

from diffusion.data import recorded_frame, simulated_counts
from speckle.gaussian_fibre import propagate
from speckle.mmf import fibre_states
from vae.inference import decode, encode_dataset
from vae.metrics import pcc_batch


def _pairwise_pcc(stack: np.ndarray, mask: np.ndarray) -> float:
    """Mean PCC over all pairs of the (S, H, W) stack inside the mask."""
    s = len(stack)
    i, j = np.triu_indices(s, k=1)
    return float(np.nanmean(pcc_batch(stack[i], stack[j], mask))) if len(i) else float("nan")


def true_outputs(meta: dict, patterns: np.ndarray, vae) -> np.ndarray:
    """(N, M, H, W): each pattern through every fibre state, as the VAE sees a recorded frame."""
    outs = [simulated_counts(propagate(patterns, tm), meta) for tm in fibre_states(meta)]
    return np.stack([[recorded_frame(o[n], vae) for o in outs] for n in range(len(patterns))])


def diversity(
    model,
    vae,
    held,
    idx: np.ndarray,
    patterns: np.ndarray,
    gen_imgs: np.ndarray,
    mask: np.ndarray,
    max_patterns: int = 100,
) -> dict:
    """Sample-to-sample against state-to-state PCC, and std maps, on up to `max_patterns`."""
    meta = json.loads((held.root / "simulation.json").read_text())
    if not meta.get("states"):
        return {"note": "the set records no fibre states"}
    k = min(len(idx), max_patterns)
    truth = true_outputs(meta, patterns[:k], vae)  # (k, M, H, W)
    gen = gen_imgs[:k]  # (k, K, H, W)
    # The truth as the VAE gives it back: the most spread a generator in its latent space can show.
    flat = truth.reshape(-1, *truth.shape[2:])
    recon = decode(vae.model, encode_dataset(vae.model, torch.from_numpy(flat)[:, None]).mu)
    recon = recon.reshape(truth.shape)
    # Sample standard deviations: M states and K samples are compared, ddof=1 for both.
    std_t, std_g, std_r = (a.std(axis=1, ddof=1) for a in (truth, gen, recon))
    return {
        "vae_state_state_pcc": float(np.nanmean([_pairwise_pcc(t, mask) for t in recon])),
        "vae_std_map_pcc": float(np.nanmean(pcc_batch(std_t, std_r, mask))),
        "mean_std_vae": float(std_r[:, mask].mean()),
        "patterns": k,
        "states": int(meta["states"]),
        "bend": float(meta["bend"]),
        "expected_state_pcc": float(meta["bend"]) ** 4,
        "state_state_pcc": float(np.nanmean([_pairwise_pcc(t, mask) for t in truth])),
        "sample_sample_pcc": float(np.nanmean([_pairwise_pcc(g, mask) for g in gen])),
        "std_map_pcc": float(np.nanmean(pcc_batch(std_t, std_g, mask))),
        "mean_std_true": float(std_t[:, mask].mean()),
        "mean_std_generated": float(std_g[:, mask].mean()),
    }
