"""Reconstructor checkpoint IO. A reconstructor is a directory:

    config.json         the method, its read-out config or inversion settings, the preprocessing
                        of the frames it reads, the VAE it depends on (id and path; μ methods) or
                        the transmission matrix it inverts (sha256), the training settings, exact
                        command, data record and final metrics, and the weights' sha256
    model.safetensors   the read-out's weights and the lit-pixel mask, or the matrix (re, im, mask)
    resume/             optimizer and position for an exact `--resume` of an iterative fit

Written atomically (common.atomic.atomic_dir); never a pickle. The sha256 of model.safetensors is
the reconstructor's id.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from common.atomic import atomic_dir
from common.checkpoint_files import (
    CONFIG,
    CheckpointError,
    file_sha256,
    read_json_config,
    read_weights,
    resolve,
    write_json,
    write_resume,
)
from inverse.methods import METHODS, method
from inverse.readout import Readout, ReadoutConfig
from speckle.tm_fit import TransmissionMatrix

FORMAT = "speckle-inverse-checkpoint"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
DTYPES = {"float16": torch.float16, "float32": torch.float32}


class ReconstructorError(CheckpointError):
    """One line: '<path>: <problem>'."""


@dataclass(eq=False)
class Reconstructor:
    config: dict
    mask: np.ndarray  # (S, S) bool: the pixels read (pixel methods) or the matrix's rows (tm)
    readout: Readout | None
    tm: TransmissionMatrix | None
    id: str
    path: Path | None = None

    @property
    def method(self) -> str:
        return self.config["method"]

    @property
    def reads_mu(self) -> bool:
        return METHODS[self.method].reads == "mu"

    @property
    def vae_id(self) -> str | None:
        vae = self.config.get("vae")
        return vae.get("id") if isinstance(vae, dict) else None

    @property
    def image_size(self) -> int:
        return int(self.config["preprocessing"]["image_size"])


def _tensors(rec: Reconstructor, dtype: str) -> dict[str, torch.Tensor]:
    cast = DTYPES[dtype]
    mask = {"mask": torch.from_numpy(rec.mask.astype(np.uint8))}
    if rec.tm is not None:
        return mask | {
            "tm.re": torch.from_numpy(rec.tm.re).to(cast),
            "tm.im": torch.from_numpy(rec.tm.im).to(cast),
        }
    state = {k: v.detach().cpu().contiguous() for k, v in rec.readout.state_dict().items()}
    # The input statistics stay float32: they standardize every frame's features.
    keep = ("in_mean", "in_std")
    return mask | {f"readout.{k}": v if k in keep else v.to(cast) for k, v in state.items()}


def save_reconstructor(
    directory: str | Path,
    rec: Reconstructor,
    resume_tensors: dict | None = None,
    resume_state: dict | None = None,
    weights_dtype: str = "float32",
) -> str:
    """Atomically write a reconstructor directory; return its id (the weights' sha256)."""
    if weights_dtype not in DTYPES:
        raise ValueError(f"weights dtype must be one of {', '.join(DTYPES)}")
    with atomic_dir(directory, replace=True, durable=True) as tmp:
        save_file(_tensors(rec, weights_dtype), str(tmp / WEIGHTS), metadata={"format": FORMAT})
        drop = ("format", "format_version", "weights_sha256", "weights_dtype", "torch")
        config = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            **{k: v for k, v in rec.config.items() if k not in drop},
            "weights_dtype": weights_dtype,
            "torch": torch.__version__,
            "weights_sha256": file_sha256(tmp / WEIGHTS),
        }
        write_json(tmp / CONFIG, config)
        if resume_tensors is not None:
            write_resume(tmp, resume_tensors, resume_state or {}, config["weights_sha256"])
    return config["weights_sha256"]


def read_reconstructor_config(path: str | Path) -> dict:
    """config.json of a reconstructor directory (or of a run holding one in checkpoint/),
    checked."""
    file = resolve(path) / CONFIG
    config = read_json_config(file, ReconstructorError)
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ReconstructorError(f"{file}: not a reconstructor ({FORMAT}) config")
    if config.get("method") not in METHODS:
        raise ReconstructorError(f"{file}: unknown method {config.get('method')!r}")
    pre = config.get("preprocessing")
    if not isinstance(pre, dict) or not isinstance(pre.get("image_size"), int):
        raise ReconstructorError(f"{file}: missing 'preprocessing' with an image_size")
    if METHODS[config["method"]].reads == "mu" and not isinstance(
        (config.get("vae") or {}).get("id"), str
    ):
        raise ReconstructorError(f"{file}: a μ read-out must name its VAE ('vae': {{'id': ...}})")
    digest = config.get("weights_sha256")
    if not (isinstance(digest, str) and len(digest) == 64):
        raise ReconstructorError(f"{file}: missing or malformed 'weights_sha256'")
    return config


def is_reconstructor(path: str | Path) -> bool:
    try:
        read_reconstructor_config(path)
    except (CheckpointError, OSError):
        return False
    return True


def load_reconstructor(path: str | Path) -> Reconstructor:
    """Rebuild a reconstructor from its directory alone; anything wrong is one line."""
    directory = resolve(path)
    config = read_reconstructor_config(directory)
    state = read_weights(directory / WEIGHTS, config["weights_sha256"])
    file = directory / WEIGHTS
    if "mask" not in state or state["mask"].ndim != 2:
        raise ReconstructorError(f"{file}: no 2-D 'mask'")
    mask = state["mask"].numpy().astype(bool)
    size = config["preprocessing"]["image_size"]
    if mask.shape != (size, size) or not mask.any():
        raise ReconstructorError(f"{file}: mask does not match the image size {size}")
    m = method(config["method"])
    if m.kind == "tm":
        re, im = state.get("tm.re"), state.get("tm.im")
        if re is None or im is None or re.shape != im.shape or re.shape[0] != int(mask.sum()):
            raise ReconstructorError(f"{file}: matrix does not match its mask")
        tm = TransmissionMatrix(
            re.float().numpy(), im.float().numpy(), mask, float(config.get("tm_loss", np.nan)), 0.0
        )
        return Reconstructor(config, mask, None, tm, config["weights_sha256"], directory)
    try:
        rcfg = ReadoutConfig.from_dict(config.get("readout"))
    except (TypeError, ValueError) as e:
        raise ReconstructorError(f"{directory / CONFIG}: bad readout config ({e})") from None
    if m.reads == "pixels" and rcfg.n_in != int(mask.sum()):
        raise ReconstructorError(f"{file}: readout input does not match its mask")
    weights = {k[len("readout.") :]: v for k, v in state.items() if k.startswith("readout.")}
    with torch.device("meta"):  # shapes only: an absurd config allocates nothing
        shapes = {k: tuple(v.shape) for k, v in Readout(rcfg).state_dict().items()}
    if set(shapes) != set(weights) or any(tuple(weights[k].shape) != s for k, s in shapes.items()):
        raise ReconstructorError(f"{file}: weights do not match the readout config")
    readout = Readout(rcfg)
    readout.load_state_dict({k: v.float() for k, v in weights.items()})
    readout.eval()
    return Reconstructor(config, mask, readout, None, config["weights_sha256"], directory)


def export_reconstructor(
    src: str | Path, dst: str | Path, weights_dtype: str = "float16", extra: dict | None = None
) -> str:
    """Copy a reconstructor's weights and config (not its resume state) to `dst`, optionally at
    lower precision and with `extra` config entries (a shipped model's recipe); return its id.
    A matrix's sha256 is that of the copy, as the copy inverts it."""
    rec = load_reconstructor(src)
    config = dict(rec.config) | (extra or {})
    copy = Reconstructor(config, rec.mask, rec.readout, rec.tm, rec.id)
    if rec.tm is not None:
        cast = DTYPES[weights_dtype]
        as_saved = TransmissionMatrix(
            torch.from_numpy(rec.tm.re).to(cast).float().numpy(),
            torch.from_numpy(rec.tm.im).to(cast).float().numpy(),
            rec.mask,
            rec.tm.final_loss,
            0.0,
        )
        copy.config["tm_sha256"] = as_saved.sha256()
    return save_reconstructor(dst, copy, weights_dtype=weights_dtype)
