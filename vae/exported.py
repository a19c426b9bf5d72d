"""The "exported" checkpoint kind: a VAE of any architecture, trained in any codebase, brought in
as two `torch.export` programs, encoder x → (μ, log σ²) and decoder z → x, and run without
executing any of its Python. A checkpoint of this kind is a directory:

    config.json     kind "exported", the sizes (`model`), preprocessing, β and its convention,
                    each program's sha256, where it came from
    encoder.pt2     the programs as `torch.export.save` wrote them
    decoder.pt2

The checkpoint's id is the sha256 of the two programs' hashes. Each program is vetted before
`torch.export.load` reads it (vae.pt2_vetting: that loader can run code from a crafted file), read
into memory once so that what was hashed is what is loaded, and wrapped in `ExportedVAE`, which
has the interface of vae.model.VAE that the app and the commands use.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from common.atomic import atomic_dir
from common.checkpoint_files import CONFIG, CheckpointError, file_sha256, write_json
from vae import __version__
from vae.config import MAX_IMAGE_SIZE, MAX_LATENT_DIM

if TYPE_CHECKING:
    # Lazy: a lazy checkpoint opens a cached atlas without torch (docs/architecture.md).
    from vae.exported_model import ExportedVAE

KIND = "exported"
ENCODER = "encoder.pt2"
DECODER = "decoder.pt2"
PROGRAMS = {ENCODER: 2, DECODER: 1}  # file → number of tensors it returns
CHECK_BATCHES = (1, 3)  # batch sizes run through both programs at import


@dataclass(frozen=True)
class ExportedConfig:
    """What the app needs to know of a model it cannot rebuild: its input and code sizes."""

    image_size: int
    latent_dim: int
    in_channels: int = 1

    def __post_init__(self) -> None:
        limits = {"image_size": MAX_IMAGE_SIZE, "latent_dim": MAX_LATENT_DIM, "in_channels": 4}
        for name, top in limits.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= top:
                raise ValueError(f"{name} must be an integer in 1..{top}, got {value!r}")

    def describe(self) -> str:
        return (
            f"{self.image_size}² px, {self.in_channels} channel(s), dz {self.latent_dim}, "
            "an exported program (torch.export)"
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ExportedConfig:
        if not isinstance(d, dict):
            raise ValueError(f"model config must be an object, got {type(d).__name__}")
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**d)


def traced(c: ExportedConfig) -> list[tuple[tuple, list[tuple]]]:
    """(input shape, output shapes) of the encoder and the decoder without the batch dim."""
    image = (c.in_channels, c.image_size, c.image_size)
    return [(image, [(c.latent_dim,)] * 2), ((c.latent_dim,), [image])]


def build(directory: Path, config: dict, model_config: ExportedConfig, device) -> ExportedVAE:
    """The model of an exported checkpoint, from its vetted programs, their traced shapes checked
    against the config (running them on dummy batches, as the import did, would take seconds for
    a paper-size model)."""
    # Lazy: the programs need torch, which a cached open never imports (docs/architecture.md).
    from vae.exported_model import ExportedVAE, read_program, traced_shapes

    files = recorded_hashes(directory, config)
    modules = []
    for name, shapes in zip(PROGRAMS, traced(model_config), strict=True):
        program = read_program(directory / name, PROGRAMS[name], files[name])
        traced_shapes(program, directory / name, *shapes)
        modules.append(program.module())
    return ExportedVAE(model_config, *modules).to(device)


def program_hashes(directory: Path) -> dict[str, str]:
    return {name: file_sha256(directory / name) for name in PROGRAMS}


def checkpoint_id(hashes: dict[str, str]) -> str:
    """The id of an exported checkpoint: sha256 of its programs' hashes, in file order."""
    return hashlib.sha256("\n".join(hashes[n] for n in PROGRAMS).encode()).hexdigest()


def recorded_hashes(directory: Path, config: dict) -> dict[str, str]:
    """The programs' sha256 as config.json records them."""
    files = config.get("programs")
    if not isinstance(files, dict) or set(files) != set(PROGRAMS):
        raise CheckpointError(f"{directory / CONFIG}: 'programs' must give {sorted(PROGRAMS)}")
    if not all(isinstance(v, str) for v in files.values()):
        raise CheckpointError(f"{directory / CONFIG}: 'programs' must give sha256 strings")
    return files


def check_files(directory: Path, config: dict) -> str:
    """The torch-free checks of a lazy open: both programs present with the hashes config.json
    gives; returns the checkpoint's id."""
    files = recorded_hashes(directory, config)
    for name in PROGRAMS:
        if not (directory / name).is_file():
            raise CheckpointError(f"{directory / name}: missing")
    hashes = program_hashes(directory)
    for name, digest in hashes.items():
        if digest != files[name]:
            raise CheckpointError(
                f"{directory / name}: content hash does not match config.json (truncated or altered)"
            )
    return checkpoint_id(hashes)


def save_exported(
    directory: str | Path,
    encoder: Path,
    decoder: Path,
    model_config: ExportedConfig,
    meta: dict,
    format_name: str,
    format_version: int,
) -> str:
    """Atomically write an exported checkpoint: copies of the two programs and config.json;
    return its id."""
    # Lazy: torch's version for the record; this module is imported on the cached open.
    import torch

    with atomic_dir(directory, replace=True, durable=True) as tmp:
        shutil.copyfile(encoder, tmp / ENCODER)
        shutil.copyfile(decoder, tmp / DECODER)
        hashes = program_hashes(tmp)
        digest = checkpoint_id(hashes)
        config = {"format": format_name, "format_version": format_version, "kind": KIND}
        config |= {"model": model_config.to_dict(), **meta, "programs": hashes}
        config |= {"version": __version__, "torch": torch.__version__, "weights_sha256": digest}
        write_json(tmp / CONFIG, config)
    return digest
