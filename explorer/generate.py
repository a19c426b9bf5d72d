"""Serving the pattern → speckle generator to the Generate page: finding the generator that
belongs to the loaded VAE, and one click's work (samples, their mean and spread, the true
speckle from the simulator's forward model, the VAE's reconstruction of it, the regressor, x̂₀
along the way, and how far the pattern is from every training pattern). numpy out; no
Streamlit."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from diffusion import checkpoint as gck
from diffusion.data import (
    dataset_patterns,
    open_dataset,
    read_pattern,
    recorded_frame,
    simulated_counts,
)
from diffusion.references import nearest_patterns
from diffusion.sampling import GUIDANCE, SAMPLER, SAMPLES, STEPS, regress_latents, sample_latents
from diffusion.schedulers import sampler
from diffusion.scoring import panel
from explorer import sources
from frames import pattern_frames
from speckle.gaussian_fibre import propagate
from speckle.mmf import fibre_states
from speckle.slm_patterns import simulated_patterns, to_pattern
from vae.checkpoint import Checkpoint, CheckpointError
from vae.inference import decode

GENERATORS_DIR = "generators"  # models/generators/NAME: shipped generators
# A pattern is out of distribution below the 1st percentile of the training patterns' own
# nearest-neighbour similarity.
OOD_PERCENTILE = 1.0


def generator_dirs() -> list[Path]:
    """Every generator directory under models/generators/ and runs/."""
    return sources.checkpoint_dirs(GENERATORS_DIR, gck.is_generator)


def matching_generators(vae_id: str) -> list[Path]:
    """The generators made for this VAE: shipped ones first, then runs, newest first."""
    matches = []
    for path in generator_dirs():
        try:
            if gck.read_generator_config(path)["vae"]["id"] == vae_id:
                matches.append(
                    (GENERATORS_DIR not in path.parts, -(path / gck.CONFIG).stat().st_mtime, path)
                )
        except (CheckpointError, OSError):  # a run's checkpoint mid-swap, a damaged config
            continue
    return [p for *_, p in sorted(matches)]


def find_generator(vae_id: str) -> Path | None:
    """The first of matching_generators: the shipped one if there is one."""
    found = matching_generators(vae_id)
    return found[0] if found else None


@dataclass
class Served:
    """A loaded generator with what a click needs besides the networks."""

    generator: gck.Generator
    train_patterns: np.ndarray | None  # (M, P, P) for the out-of-distribution note
    ood_threshold: float | None  # cosine similarity below which a pattern is far from all of them
    note: str = ""

    def similarity(self, pattern: np.ndarray) -> float | None:
        """Cosine similarity to the nearest training pattern."""
        if self.train_patterns is None:
            return None
        if getattr(self, "_unit", None) is None:  # normalized once, not on every click
            flat = self.train_patterns.reshape(len(self.train_patterns), -1).astype(np.float32)
            self._unit = flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)
        q = pattern.ravel().astype(np.float32)
        return float((self._unit @ (q / max(float(np.linalg.norm(q)), 1e-12))).max())


def load(path: str | Path, vae: Checkpoint) -> Served:
    """Load the generator (refused if made for another VAE) and its training patterns, and warm
    the sampler (the first DPM-Solver++ scheduler costs seconds of imports)."""
    gen = gck.load_generator(path, vae.id, vae.path)
    sampler("dpm++", gen.denoiser_config).set_timesteps(2)
    patterns, threshold, note = None, None, ""
    try:
        patterns = training_patterns(gen, vae)
        threshold = ood_threshold(patterns)
    except (OSError, ValueError, CheckpointError) as e:
        note = f"no out-of-distribution check: the training set cannot be read ({e})"
    return Served(gen, patterns, threshold, note)


def training_patterns(gen: gck.Generator, vae: Checkpoint) -> np.ndarray:
    """The generator's training patterns: read from its training set when that folder is here,
    else drawn again from the set's simulation record (a fresh clone ships no data/)."""
    dataset = gen.config.get("dataset", {})
    root = Path(dataset.get("path", ""))
    if not root.is_absolute():
        root = sources.REPO / root
    if (root / "labels.csv").is_file():
        return dataset_patterns(open_dataset(vae, root), gen.denoiser_config.pattern_size)
    record = dataset.get("simulation")
    patterns = simulated_patterns(record) if isinstance(record, dict) else None
    if patterns is None or patterns.shape[1:] != (gen.denoiser_config.pattern_size,) * 2:
        raise ValueError(f"{root}: not here, and its simulation record cannot rebuild its patterns")
    return patterns


def ood_threshold(patterns: np.ndarray, n: int = 500, seed: int = 0) -> float:
    """The OOD_PERCENTILE-th percentile of training patterns' cosine similarity to their nearest
    other training pattern: a drawn pattern below it is farther from the training set than
    almost every training pattern is from the rest."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(patterns), min(n, len(patterns) - 1), replace=False)
    rest = np.setdiff1d(np.arange(len(patterns)), pick)
    _, sim = nearest_patterns(patterns[rest], patterns[pick])
    return float(np.percentile(sim, OOD_PERCENTILE))


@dataclass
class Generated:
    pattern: np.ndarray  # (P, P)
    samples: np.ndarray  # (n, H, W)
    latents: np.ndarray  # (n, dz)
    mean: np.ndarray
    std: np.ndarray
    truth: np.ndarray | None  # the simulator's output for this exact pattern, if the fibre is known
    truth_recon: np.ndarray | None  # the VAE's reconstruction of the truth
    regressor: np.ndarray | None
    filmstrip: np.ndarray  # (T, H, W): x̂₀ of sample 0 after `filmstrip_steps`
    filmstrip_steps: list[int]
    similarity: float | None  # cosine similarity to the nearest training pattern
    ood: bool
    seconds: float
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # panel → pcc, contrast
    truth_latent: np.ndarray | None = None  # (dz,) the VAE's μ of the truth, to mark on the map


FIBRE_KEYS = (
    "fibre_seed",
    "size",
    "grain",
    "core",
    "bend",
    "bend_seed",
    "states",
    "fibre",
    "modal",
)
# What a record written before a key existed means by its absence.
FIBRE_DEFAULTS = {"fibre": "gaussian"}


def simulation_of(dataset_root: Path | None) -> dict | None:
    """A simulated fibre set's simulation.json, or None for any other folder."""
    if dataset_root is None:
        return None
    try:
        meta = json.loads((Path(dataset_root) / "simulation.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("kind") == "mmf" else None


def fibre_note(served: Served, dataset_root: Path | None) -> str:
    """Why the truth may not be the generator's fibre: empty when the dataset's fibre is the
    one the generator was trained on."""
    meta, trained = (
        simulation_of(dataset_root),
        served.generator.config["dataset"].get("simulation"),
    )
    if meta is None or not isinstance(trained, dict):
        return ""
    differ = [
        k
        for k in FIBRE_KEYS
        if meta.get(k, FIBRE_DEFAULTS.get(k)) != trained.get(k, FIBRE_DEFAULTS.get(k))
    ]
    if not differ:
        return ""
    return (
        f"This dataset's fibre is not the one the generator learned ({', '.join(differ)} "
        "differ): its true speckle is another fibre's output."
    )


def true_speckle(
    dataset_root: Path | None, pattern: np.ndarray, vae: Checkpoint
) -> np.ndarray | None:
    """The fibre's output for this pattern as the VAE sees a recorded frame, when the dataset was
    simulated (its simulation.json names the fibre); None otherwise. A set with fibre states has
    many true outputs: this is state 0's."""
    meta = simulation_of(dataset_root)
    if meta is None or pattern.shape != (meta.get("pattern_size", 16),) * 2:
        return None
    intensity = propagate(pattern[None], fibre_states(meta)[0])[0]
    return recorded_frame(simulated_counts(intensity, meta), vae)


def generate(
    served: Served,
    vae: Checkpoint,
    pattern: np.ndarray,
    *,
    n: int = SAMPLES,
    steps: int = STEPS,
    sampler: str = SAMPLER,
    guidance: float = GUIDANCE,
    seed: int = 0,
    dataset_root: Path | None = None,
    mask: np.ndarray | None = None,
    filmstrip: int = 5,
    truth: np.ndarray | None = None,
) -> Generated:
    """One Generate click. `truth`: the recorded frame when the pattern is a dataset sample's;
    otherwise the simulator's output for the pattern when the dataset's fibre is known."""
    t0 = time.perf_counter()
    gen = served.generator
    s = sample_latents(
        gen.model, pattern[None], n, steps, sampler, guidance, seed, trajectory=filmstrip
    )
    lat = s.latents[0]
    extra = [] if gen.regressor is None else [regress_latents(gen.regressor, pattern[None])[0]]
    frames = decode(
        vae.model, np.concatenate([lat, s.trajectory[:, 0, 0], *[e[None] for e in extra]])
    )
    samples, strip = frames[:n], frames[n : n + len(s.trajectory_steps)]
    reg = frames[-1] if extra else None
    if truth is None:
        truth = true_speckle(dataset_root, pattern, vae)
    recon = truth_mu = None
    if truth is not None:
        device = next(vae.model.parameters()).device  # the app loads the VAE with device="auto"
        with torch.inference_mode():
            x = torch.from_numpy(np.asarray(truth, np.float32))[None, None].to(device)
            truth_mu = vae.model.encode(x).mean.float().cpu().numpy()[0]
        recon = decode(vae.model, truth_mu[None])[0]
    sim = served.similarity(pattern)
    ood = sim is not None and served.ood_threshold is not None and sim < served.ood_threshold
    mask = np.ones(samples.shape[1:], bool) if mask is None else mask
    mean, std = samples.mean(0), samples.std(0)
    panels = {"truth": truth, "mean": mean, "recon": recon, "regressor": reg}
    panels |= {f"sample {j}": samples[j] for j in range(n)}
    metrics = {k: panel(truth, v, mask) for k, v in panels.items() if v is not None}
    return Generated(
        pattern,
        samples,
        lat,
        mean,
        std,
        truth,
        recon,
        reg,
        strip,
        s.trajectory_steps,
        sim,
        ood,
        time.perf_counter() - t0,
        metrics,
        truth_mu,
    )


def dataset_pattern(dataset, i: int, size: int) -> np.ndarray | None:
    """Sample i's input pattern as the generator was trained on it (diffusion.data's
    dataset_patterns, for one sample), or None when the dataset names none."""
    p = dataset.pattern(i)
    return None if p is None else to_pattern(p, 1.0, size)


def upload_pattern_names(data: bytes, name: str) -> list[str]:
    """The frame names of the patterns an uploaded file holds, from its headers: its own name for
    an image, one per frame for a stack or array, and for a paired recording one per frame of its
    pattern array ("up.h5#/patterns#0", ...). Raises a one-line ImageError naming the file."""
    return pattern_frames(data, name)[0]


def upload_pattern(data: bytes, name: str, size: int, frame_name: str | None = None) -> np.ndarray:
    """The uploaded file's pattern `frame_name` (one of upload_pattern_names; None for a file
    holding one), as the generator sees it. Raises a one-line ImageError naming the file."""
    frame = None if frame_name in (None, name) else frame_name.removeprefix(f"{name}#")
    return read_pattern(data, size, name=name, frame=frame)


def canvas_pattern(rgba: np.ndarray | None, size: int) -> np.ndarray | None:
    """A drawing (RGBA, white strokes) as a pattern: grey over black, area-resampled to
    (size, size) in [0, 1]; None while nothing is drawn."""
    if rgba is None or np.ndim(rgba) != 3:
        return None
    a = np.asarray(rgba, np.float32) / 255.0
    grey = a[..., :3].mean(-1) * (a[..., 3] if a.shape[-1] == 4 else 1.0)  # alpha over black
    if grey.max() < 0.05:
        return None
    return to_pattern(grey, 1.0, size)
