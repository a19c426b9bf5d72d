"""All checkpoint IO. A checkpoint is a directory:

    config.json          model config, preprocessing, β and its convention, schedule, dataset
                         fingerprint, final metrics, the exact command, versions, weights hash
    model.safetensors    the plain module's weights (never a pickle)
    resume/              optimizer and RNG state for an exact `--resume` (safetensors + JSON)

Writes are atomic (vae.atomic.atomic_dir): a new checkpoint is built in a temporary sibling
directory, flushed, and swapped in with renames, so a process killed at any instant leaves the
previous checkpoint intact. The sha256 of model.safetensors is the checkpoint's id and is stored
in config.json, which also catches a truncated or altered weights file.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors import SafetensorError, safe_open

from vae import __version__
from vae.atomic import atomic_dir
from vae.config import VAEConfig

if TYPE_CHECKING:
    import torch

    from vae.model import VAE

FORMAT = "speckle-vae-checkpoint"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
RESUME = "resume"
MAX_CONFIG_BYTES = 1_000_000
# Prefixes that torch.compile and DistributedDataParallel add to parameter names.
WRAPPER_PREFIXES = ("_orig_mod.", "module.")


class CheckpointError(ValueError):
    """One line: '<file>: <problem>'."""


@dataclass(eq=False)
class Checkpoint:
    path: Path
    config: dict  # the whole config.json
    model_config: VAEConfig
    loaded: VAE | None  # None until `model` is first read (load_checkpoint(lazy=True))
    id: str  # sha256 of model.safetensors
    device: str = "cpu"  # or "auto": vae.device.pick_device's choice when the model is built
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    # A lazy build's failure, raised again on every later read without reading the file again.
    _error: Exception | None = field(default=None, init=False, repr=False)

    @property
    def model(self) -> VAE:
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
    def beta(self) -> float:
        return float(self.config.get("beta", float("nan")))

    @property
    def recon(self) -> str:
        return str(self.config.get("recon", "?"))


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def plain_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Weights of the underlying module, unwrapping DDP and torch.compile (nanoGPT's wart)."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix) :], True
        out[key] = value
    return out


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=False, allow_nan=True) + "\n")


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
        _write_json(tmp / CONFIG, config)
        if resume_tensors is not None or resume_state is not None:
            (tmp / RESUME).mkdir()
            tensors = {k: v.detach().cpu().contiguous() for k, v in (resume_tensors or {}).items()}
            save_file(tensors, str(tmp / RESUME / "state.safetensors"))
            _write_json(
                tmp / RESUME / "state.json", {"weights_sha256": digest, **(resume_state or {})}
            )
    return digest


def export_checkpoint(
    src: str | Path, dst: str | Path, weights_dtype: str | None = None, extra: dict | None = None
) -> str:
    """Copy a checkpoint's model and config (not its resume state) to `dst`, optionally with
    lower-precision weights and `extra` config entries (say, the commands that made it); return
    the new id."""
    ck = load_checkpoint(src)
    meta = {
        k: v
        for k, v in ck.config.items()
        if k not in ("format", "format_version", "version", "torch", "weights_sha256")
    }
    meta |= extra or {}
    return save_checkpoint(dst, ck.model, meta, weights_dtype=weights_dtype)


def resolve(path: str | Path) -> Path:
    """A checkpoint directory, or a run directory holding one in `checkpoint/`."""
    path = Path(path)
    for candidate in (path, path / "checkpoint"):
        if (candidate / CONFIG).is_file():
            return candidate
        old = candidate.with_name(f".{candidate.name}.old")
        if (old / CONFIG).is_file() and not candidate.exists():
            return old
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint directory")
    raise CheckpointError(f"{path}: not a checkpoint (no {CONFIG} here or in checkpoint/)")


def _sniff_pickle(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(9)
    # torch.save writes a zip archive (PK..) or a raw pickle (protocol byte 0x80). A safetensors
    # file starts with its JSON header's length (u64, little-endian) and the header's "{": a
    # length whose low byte is 0x80 is not a pickle (the shipped generator's regressor was
    # refused for it).
    if head[8:9] == b"{":
        return False
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def read_json_config(path: Path, error: type[CheckpointError] = CheckpointError) -> object:
    """A config file's JSON, size-capped first (configs come from untrusted folders); problems
    raise `error` in one line."""
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise error(f"{path}: config larger than {MAX_CONFIG_BYTES} bytes")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{path}: not valid JSON ({e})") from None


def read_config(directory: str | Path) -> dict:
    directory = resolve(directory)
    path = directory / CONFIG
    config = read_json_config(path)
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a {FORMAT} config (missing 'format')")
    if "model" not in config:
        raise CheckpointError(f"{path}: missing key 'model'")
    return config


def _check_file(path: Path, expected_sha256: str | None) -> None:
    """The checks of a weights file that need no torch: present, not empty, not a pickle, and
    the hash config.json gives (hashed only when there is one to compare with)."""
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file")
    if _sniff_pickle(path):
        raise CheckpointError(f"{path}: is a pickle (torch.save) file; refusing to load it")
    if expected_sha256 is not None and file_sha256(path) != expected_sha256:
        raise CheckpointError(
            f"{path}: content hash does not match config.json (truncated or altered)"
        )


def read_weights(path: Path, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Load a safetensors file; refuse pickles and files whose hash does not match."""
    _check_file(path, expected_sha256)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not iterable)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"{path}: not a valid safetensors file ({str(e).splitlines()[0]})"
        ) from None


def _check_shapes(path: Path, config: VAEConfig, state: dict[str, torch.Tensor]) -> None:
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
    try:
        model_config = VAEConfig.from_dict(config["model"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{directory / CONFIG}: bad model config ({e})") from None
    weights_path = directory / WEIGHTS
    expected = config.get("weights_sha256")
    if lazy:
        _check_file(weights_path, expected)
        model = None
    else:
        model = _build_model(directory, config, model_config, device)
    digest = expected or file_sha256(weights_path)
    return Checkpoint(directory, config, model_config, model, digest, str(device))


def _build_model(
    directory: Path,
    config: dict,
    model_config: VAEConfig,
    device,
    expected_sha256: str | None = None,
) -> VAE:
    from vae.device import pick_device
    from vae.model import VAE

    if device == "auto":
        device = pick_device("auto")
    weights_path = directory / WEIGHTS
    expected = expected_sha256 or config.get("weights_sha256")
    state = strip_prefixes(read_weights(weights_path, expected))
    _check_shapes(weights_path, model_config, state)
    model = VAE(model_config)
    model.load_state_dict(state)
    return model.eval().to(device)


def read_resume(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    directory = resolve(path)
    state_json = directory / RESUME / "state.json"
    if not state_json.is_file():
        raise CheckpointError(f"{state_json}: missing; this checkpoint cannot be resumed")
    state = read_json_config(state_json)
    if not isinstance(state, dict):
        raise CheckpointError(f"{state_json}: not a JSON object")
    tensors = read_weights(directory / RESUME / "state.safetensors")
    return tensors, state
