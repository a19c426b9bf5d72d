"""The file handling every checkpoint directory shares (a VAE's, `vae.checkpoint`, and a
generator's, `diffusion.checkpoint`):

    config.json          the model's config and metadata, size-capped when read
    *.safetensors        weights (never a pickle), checked against the hash config.json gives
    resume/              state.safetensors and state.json for an exact `--resume`

Errors are one-line CheckpointErrors, '<file>: <problem>'. Nothing here imports torch at import
time: a config and a weights file's hash are checked without it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors import SafetensorError, safe_open

if TYPE_CHECKING:
    import torch

CONFIG = "config.json"
RESUME = "resume"
MAX_CONFIG_BYTES = 1_000_000
# Prefixes that torch.compile and DistributedDataParallel add to parameter names.
WRAPPER_PREFIXES = ("_orig_mod.", "module.")


class CheckpointError(ValueError):
    """One line: '<file>: <problem>'."""


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=False, allow_nan=True) + "\n")


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


def is_pickle(path: Path) -> bool:
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
    except RecursionError:  # "[[[[…" nested deeper than the parser's stack
        raise error(f"{path}: JSON nested too deeply") from None


def check_weights_file(path: Path, expected_sha256: str | None) -> None:
    """The checks of a weights file that need no torch: present, not empty, not a pickle, and
    the hash config.json gives (hashed only when there is one to compare with)."""
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file")
    if is_pickle(path):
        raise CheckpointError(f"{path}: is a pickle (torch.save) file; refusing to load it")
    if expected_sha256 is not None and file_sha256(path) != expected_sha256:
        raise CheckpointError(
            f"{path}: content hash does not match config.json (truncated or altered)"
        )


def read_weights(path: Path, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Load a safetensors file; refuse pickles and files whose hash does not match."""
    check_weights_file(path, expected_sha256)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not iterable)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"{path}: not a valid safetensors file ({str(e).splitlines()[0]})"
        ) from None


def write_resume(
    directory: Path, tensors: dict[str, torch.Tensor], state: dict, weights_sha256: str
) -> None:
    """resume/ in a checkpoint being written: the tensors, and the state tied to the weights it
    belongs to (read_resume's caller checks that tie)."""
    # Lazy: safetensors.torch imports torch, kept off the cached atlas open (docs/architecture.md).
    from safetensors.torch import save_file

    (directory / RESUME).mkdir()
    plain = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    save_file(plain, str(directory / RESUME / "state.safetensors"))
    write_json(directory / RESUME / "state.json", {"weights_sha256": weights_sha256, **state})


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
