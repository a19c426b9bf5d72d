"""All VAE checkpoint IO (the file handling it shares with generators is in
common.checkpoint_files). A checkpoint is a directory:

    config.json          model config, preprocessing, β and its convention, schedule, dataset
                         fingerprint, final metrics, the exact command, versions, weights hash
    model.safetensors    the plain module's weights (never a pickle)
    resume/              optimizer and RNG state for an exact `--resume` (safetensors + JSON)

Writes are atomic (common.atomic.atomic_dir): a new checkpoint is built in a temporary sibling
directory, flushed, and swapped in with renames, so a process killed at any instant leaves the
previous checkpoint intact. The sha256 of model.safetensors is the checkpoint's id and is stored
in config.json, which also catches a truncated or altered weights file.

A checkpoint whose config says `"kind": "exported"` holds two torch.export programs instead of
weights (any architecture, trained elsewhere): vae.exported reads and writes that kind, and
`Checkpoint.model` is then an ExportedVAE with the same interface.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from common.atomic import atomic_dir
from common.checkpoint_files import (
    CONFIG,
    CheckpointError,
    check_weights_file,
    file_sha256,
    plain_state_dict,
    read_json_config,
    read_weights,
    resolve,
    strip_prefixes,
    write_json,
    write_resume,
)
from vae import __version__, exported
from vae.config import VAEConfig
from vae.exported import ExportedConfig

if TYPE_CHECKING:
    # Lazy: a lazy checkpoint opens a cached atlas without torch (docs/architecture.md).
    import torch

    from vae.exported_model import ExportedVAE
    from vae.model import VAE

FORMAT = "speckle-vae-checkpoint"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"


@dataclass(eq=False)
class Checkpoint:
    path: Path
    config: dict  # the whole config.json
    model_config: VAEConfig | ExportedConfig
    # None until `model` is first read (load_checkpoint(lazy=True))
    loaded: VAE | ExportedVAE | None
    id: str  # sha256 of model.safetensors (of the two programs' hashes for the exported kind)
    device: str = "cpu"  # or "auto": common.device.pick_device's choice when the model is built
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    # A lazy build's failure, raised again on every later read without reading the file again.
    _error: Exception | None = field(default=None, init=False, repr=False)

    @property
    def model(self) -> VAE | ExportedVAE:
        """The module, built from the weights on first use for a lazily opened checkpoint (torch
        imported then), once, under the checkpoint's lock; nothing but the build runs under it.
        Errors are one-line CheckpointErrors, as from load_checkpoint."""
        if self.loaded is None:
            with self._lock:
                if self._error is not None:
                    raise self._error
                if self.loaded is None:
                    try:
                        # Against the hash checked when it was opened: the cache keys use it.
                        self.loaded = _build_model(
                            self.path, self.config, self.model_config, self.device, self.id
                        )
                    except (ValueError, RuntimeError) as e:  # CheckpointError is a ValueError
                        self._error = e
                        raise
        return self.loaded

    @property
    def kind(self) -> str:
        """ "vae" (our architecture, from model.safetensors) or "exported" (vae.exported)."""
        return str(self.config.get("kind", "vae"))

    @property
    def beta(self) -> float:
        beta = self.config.get("beta")  # null for an imported model trained with β unknown
        return float("nan") if beta is None else float(beta)

    @property
    def recon(self) -> str:
        return str(self.config.get("recon", "?"))


def save_checkpoint(
    directory: str | Path,
    model: torch.nn.Module,
    meta: dict,
    resume_tensors: dict[str, torch.Tensor] | None = None,
    resume_state: dict | None = None,
    weights_dtype: str | None = None,
) -> str:
    """Atomically write a checkpoint directory; return its id (sha256 of the weights).

    `weights_dtype` ("float16" or "bfloat16") stores the floating-point weights at that precision
    (half the file, for shipped models); loading casts them back to the module's float32."""
    # Lazy: a lazy checkpoint opens a cached atlas without torch (docs/architecture.md).
    import torch
    from safetensors.torch import save_file

    plain = plain_state_dict(model)
    if weights_dtype is not None:
        cast = {"float16": torch.float16, "bfloat16": torch.bfloat16}[weights_dtype]
        plain = {k: v.to(cast) if v.is_floating_point() else v for k, v in plain.items()}
        meta = {**meta, "weights_dtype": weights_dtype}
    # Replaced whole: the old directory is renamed to .NAME.old until the new one is in place,
    # and resolve() falls back to that copy if a kill comes between the two renames.
    with atomic_dir(directory, replace=True, durable=True) as tmp:
        save_file(plain, str(tmp / WEIGHTS), metadata={"format": FORMAT})
        digest = file_sha256(tmp / WEIGHTS)
        config = {"format": FORMAT, "format_version": FORMAT_VERSION, **meta}
        config |= {"version": __version__, "torch": torch.__version__, "weights_sha256": digest}
        write_json(tmp / CONFIG, config)
        if resume_tensors is not None or resume_state is not None:
            write_resume(tmp, resume_tensors or {}, resume_state or {}, digest)
    return digest


def export_checkpoint(
    src: str | Path, dst: str | Path, weights_dtype: str | None = None, extra: dict | None = None
) -> str:
    """Copy a checkpoint's model and config (not its resume state) to `dst`, optionally with
    lower-precision weights and `extra` config entries (say, the commands that made it); return
    the new id."""
    ck = load_checkpoint(src)
    if ck.kind == exported.KIND:
        raise CheckpointError(
            f"{ck.path}: an exported checkpoint is copied as a folder, not re-saved"
        )
    meta = {
        k: v
        for k, v in ck.config.items()
        if k not in ("format", "format_version", "version", "torch", "weights_sha256")
    }
    meta |= extra or {}
    return save_checkpoint(dst, ck.model, meta, weights_dtype=weights_dtype)


def read_config(directory: str | Path) -> dict:
    directory = resolve(directory)
    path = directory / CONFIG
    config = read_json_config(path)
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a {FORMAT} config (missing 'format')")
    if "model" not in config:
        raise CheckpointError(f"{path}: missing key 'model'")
    if config.get("kind", "vae") not in ("vae", exported.KIND):
        raise CheckpointError(f"{path}: unknown checkpoint kind {config.get('kind')!r}")
    return config


def _check_shapes(path: Path, config: VAEConfig, state: dict[str, torch.Tensor]) -> None:
    # Lazy: a lazy checkpoint opens a cached atlas without torch (docs/architecture.md).
    import torch

    from vae.model import VAE

    # Build on the meta device: shapes only, so an absurd config allocates nothing.
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in VAE(config).state_dict().items()}
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        what = f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}"
        raise CheckpointError(f"{path}: weights do not match the config ({what})")
    for key, shape in expected.items():
        if tuple(state[key].shape) != shape:
            raise CheckpointError(
                f"{path}: weights do not match the config ({key}: file {tuple(state[key].shape)}, "
                f"config {shape})"
            )


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu", lazy: bool = False
) -> Checkpoint:
    """Rebuild the model from the checkpoint alone. Errors are one-line CheckpointErrors.

    lazy=True reads and checks the config and the weights file's hash now, without torch, and
    builds the model on the first read of `.model`: a cached atlas needs only the checkpoint's id
    and config, and its map opens before torch is even imported."""
    directory = resolve(path)
    config = read_config(directory)
    is_exported = config.get("kind") == exported.KIND
    try:
        model_config = (ExportedConfig if is_exported else VAEConfig).from_dict(config["model"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{directory / CONFIG}: bad model config ({e})") from None
    if is_exported:
        # A build checks each program's hash on the bytes it loads; a lazy open checks them now.
        digest = exported.check_files(directory, config) if lazy else None
        model = None if lazy else _build_model(directory, config, model_config, device)
        digest = digest or exported.checkpoint_id(exported.recorded_hashes(directory, config))
        return Checkpoint(directory, config, model_config, model, digest, str(device))
    weights_path = directory / WEIGHTS
    expected = config.get("weights_sha256")
    if lazy:
        check_weights_file(weights_path, expected)
        model = None
    else:
        model = _build_model(directory, config, model_config, device)
    digest = expected or file_sha256(weights_path)
    return Checkpoint(directory, config, model_config, model, digest, str(device))


def _build_model(
    directory: Path,
    config: dict,
    model_config: VAEConfig | ExportedConfig,
    device,
    expected_sha256: str | None = None,
) -> VAE | ExportedVAE:
    # Lazy: torch loads with the weights, not on the cached open (docs/architecture.md).
    from common.device import pick_device
    from vae.model import VAE

    if device == "auto":
        device = pick_device("auto")
    if isinstance(model_config, ExportedConfig):
        return exported.build(directory, config, model_config, device)
    weights_path = directory / WEIGHTS
    expected = expected_sha256 or config.get("weights_sha256")
    state = strip_prefixes(read_weights(weights_path, expected))
    _check_shapes(weights_path, model_config, state)
    model = VAE(model_config)
    model.load_state_dict(state)
    return model.eval().to(device)
