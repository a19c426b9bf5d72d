"""Generator checkpoint IO. A generator is a directory:

    config.json             the denoiser config, the id and path of the VAE it belongs to, the
                            training settings, exact command and final metrics, the weights' hashes
    model.safetensors       the EMA denoiser (with the latent standardization as buffers)
    regressor.safetensors   the deterministic regressor pattern → μ (same network, no noise)
    resume/                 raw weights, EMA, optimizers and RNG for an exact `--resume` (the
                            VAE checkpoint's layout, read by common.checkpoint_files.read_resume)

Written atomically like a VAE checkpoint (common.atomic.atomic_dir); never a pickle. The sha256 of
model.safetensors is the generator's id.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from common.atomic import atomic_dir
from common.checkpoint_files import (
    CONFIG,
    CheckpointError,
    file_sha256,
    read_json_config,
    read_resume,  # noqa: F401  (diffusion.checkpoint's public name: one resume layout for both)
    read_weights,
    resolve,
    strip_prefixes,
    write_json,
    write_resume,
)
from diffusion.config import DenoiserConfig
from vae import __version__

if TYPE_CHECKING:
    # Lazy: listing generators needs no torch (cached open, docs/architecture.md).
    import torch

    from diffusion.model import Denoiser

FORMAT = "speckle-diffusion-checkpoint"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
REGRESSOR = "regressor.safetensors"


class GeneratorError(CheckpointError):
    """One line: '<path>: <problem>'."""


@dataclass(eq=False)
class Generator:
    path: Path
    config: dict
    denoiser_config: DenoiserConfig
    model: Denoiser  # EMA weights, eval mode
    regressor: Denoiser | None
    id: str

    @property
    def vae_id(self) -> str:
        return self.config["vae"]["id"]


def _cast(state: dict, dtype: str | None) -> dict:
    # Lazy: listing generators needs no torch (cached open, docs/architecture.md).
    import torch

    if dtype is None:
        return state
    cast = {"float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
    # The latent statistics stay float32: they map every sample back to the VAE's μ.
    keep = ("latent_mean", "latent_std")
    return {
        k: v.to(cast) if v.is_floating_point() and k not in keep else v for k, v in state.items()
    }


def _plain(module: torch.nn.Module) -> dict:
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def save_generator(
    directory: str | Path,
    model: torch.nn.Module,
    regressor: torch.nn.Module | None,
    meta: dict,
    resume_tensors: dict | None = None,
    resume_state: dict | None = None,
    weights_dtype: str | None = None,
) -> str:
    """Atomically write a generator directory; return its id."""
    # Lazy: listing generators needs no torch (cached open, docs/architecture.md).
    import torch
    from safetensors.torch import save_file

    meta = dict(meta)
    if weights_dtype is not None:
        meta["weights_dtype"] = weights_dtype
    with atomic_dir(directory, replace=True, durable=True) as tmp:
        save_file(
            _cast(_plain(model), weights_dtype), str(tmp / WEIGHTS), metadata={"format": FORMAT}
        )
        config = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            **meta,
            "version": __version__,
            "torch": torch.__version__,
            "weights_sha256": file_sha256(tmp / WEIGHTS),
        }
        if regressor is not None:
            save_file(_cast(_plain(regressor), weights_dtype), str(tmp / REGRESSOR))
            config["regressor_sha256"] = file_sha256(tmp / REGRESSOR)
        write_json(tmp / CONFIG, config)
        if resume_tensors is not None:
            write_resume(tmp, resume_tensors, resume_state or {}, config["weights_sha256"])
    return config["weights_sha256"]


def export_generator(
    src: str | Path, dst: str | Path, weights_dtype: str | None = None, extra: dict | None = None
) -> str:
    """Copy a generator's EMA model, regressor and config (not its resume state) to `dst`,
    optionally at lower precision and with `extra` config entries; return the new id."""
    gen = load_generator(src)
    drop = ("format", "format_version", "version", "torch", "weights_sha256", "regressor_sha256")
    meta = {k: v for k, v in gen.config.items() if k not in drop} | (extra or {})
    return save_generator(dst, gen.model, gen.regressor, meta, weights_dtype=weights_dtype)


def read_generator_config(path: str | Path) -> dict:
    """config.json of a generator directory (or of a run holding one in checkpoint/), checked."""
    directory = resolve(path)
    file = directory / CONFIG
    config = read_json_config(file, GeneratorError)
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise GeneratorError(f"{file}: not a generator ({FORMAT}) config")
    vae = config.get("vae")
    if not isinstance(vae, dict) or not isinstance(vae.get("id"), str):
        raise GeneratorError(f"{file}: missing the id of its VAE ('vae': {{'id': ...}})")
    if not isinstance(vae.get("path", ""), str):
        raise GeneratorError(f"{file}: 'vae.path' must be a string")
    digest = config.get("weights_sha256")
    if not (
        isinstance(digest, str) and len(digest) == 64 and set(digest) <= set("0123456789abcdef")
    ):
        raise GeneratorError(f"{file}: missing or malformed 'weights_sha256'")
    return config


def is_generator(path: str | Path) -> bool:
    try:
        read_generator_config(path)
    except (CheckpointError, OSError):
        return False
    return True


def check_vae(config: dict, path: Path, vae_id: str, vae_path: str | Path = "") -> None:
    if config["vae"]["id"] != vae_id:
        made_for = config["vae"].get("path") or config["vae"]["id"][:12]
        raise GeneratorError(
            f"{path}: this generator belongs to the VAE {made_for} ({config['vae']['id'][:12]}), "
            f"not to {vae_path or vae_id[:12]} ({vae_id[:12]}); its latents would mean nothing there"
        )


def _build(directory: Path, name: str, config: DenoiserConfig, expected: str | None) -> Denoiser:
    # Lazy: listing generators needs no torch (cached open, docs/architecture.md).
    import torch

    from diffusion.model import Denoiser

    file = directory / name
    state = strip_prefixes(read_weights(file, expected))
    with torch.device("meta"):  # shapes only: an absurd config allocates nothing
        shapes = {k: tuple(v.shape) for k, v in Denoiser(config).state_dict().items()}
    if set(shapes) != set(state) or any(tuple(state[k].shape) != s for k, s in shapes.items()):
        raise GeneratorError(f"{file}: weights do not match the denoiser config")
    model = Denoiser(config)
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()


def load_generator(
    path: str | Path, vae_id: str | None = None, vae_path: str | Path = "", regressor: bool = True
) -> Generator:
    """Rebuild the EMA denoiser (and the regressor) from the directory alone. With `vae_id`, a
    generator made for another VAE is refused with a one-line GeneratorError."""
    directory = resolve(path)
    config = read_generator_config(directory)
    if vae_id is not None:
        check_vae(config, directory, vae_id, vae_path)
    try:
        dcfg = DenoiserConfig.from_dict(config.get("denoiser"))
    except (TypeError, ValueError) as e:
        raise GeneratorError(f"{directory / CONFIG}: bad denoiser config ({e})") from None
    model = _build(directory, WEIGHTS, dcfg, config.get("weights_sha256"))
    reg = None
    if regressor and (directory / REGRESSOR).is_file():
        reg = _build(directory, REGRESSOR, dcfg, config.get("regressor_sha256"))
    return Generator(directory, config, dcfg, model, reg, config["weights_sha256"])
