"""Import weights of our architecture trained in another codebase (a notebook, your own script)
as a checkpoint every page and command opens, without running any of that code.

    python -m vae.import_weights --state-dict notebook.pt --preset paper --out models/mine

Reads a .safetensors file, or a .pt/.pth/.bin through torch.load(weights_only=True), which
refuses anything but tensors and plain containers (a pickle's code is never run). Keys are mapped
onto vae.model.VAE by name after dropping `module.`/`_orig_mod.` prefixes, the rest by order and
shape; --key-map (a JSON object, their name → ours) goes first. --check-batch compares our μ and
reconstruction with the ones their code gave for the same inputs.
"""

from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

import numpy as np
import torch

from common.checkpoint_files import (
    CheckpointError,
    read_json_config,
    read_weights,
    strip_prefixes,
)
from common.cli import summary
from vae.checkpoint import save_checkpoint
from vae.config import PRESETS
from vae.imports import add_training_options, source_record, training_meta
from vae.model import VAE

CHECK_ATOL = 1e-4  # --check-batch: largest |ours − theirs| accepted, for μ and the reconstruction
STATE_KEYS = ("state_dict", "model_state_dict", "model")  # where a training script nests them


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors by name from a .safetensors or a torch.save file (weights_only), in file order;
    a dict nesting them under one of STATE_KEYS is unwrapped."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        return read_weights(path)  # refuses a pickle under this name unread
    if path.suffix not in (".pt", ".pth", ".bin", ".ckpt"):
        raise CheckpointError(f"{path}: expected .safetensors, .pt, .pth, .bin or .ckpt")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(
            f"{path}: refused, holds more than tensors (torch.load weights_only: {first[:140]})"
        ) from None
    for key in (None, *STATE_KEYS):
        inner = obj if key is None else (obj.get(key) if isinstance(obj, dict) else None)
        if (
            isinstance(inner, dict)
            and inner
            and all(isinstance(v, torch.Tensor) for v in inner.values())
        ):
            return {str(k): v for k, v in inner.items()}
    raise CheckpointError(f"{path}: no dict of tensors (a state_dict) in it")


def map_keys(
    path: Path,
    theirs: dict[str, tuple[int, ...]],
    ours: dict[str, tuple[int, ...]],
    key_map: dict[str, str] | None = None,
) -> list[tuple[str, str, str]]:
    """(their key, our key, how) for every tensor, by shapes alone: --key-map renames first,
    then equal names after dropping wrapper prefixes, then the rest pairwise in order (theirs as
    stored, ours as the module declares them), each pair of equal shape."""
    key_map = key_map or {}
    missing = sorted(set(key_map) - set(theirs))
    if missing:
        raise CheckpointError(f"{path}: --key-map names keys not in the file: {missing[:3]}")
    renamed = {k: key_map.get(k, k) for k in theirs}
    plain = {k: next(iter(strip_prefixes({v: None}))) for k, v in renamed.items()}
    pairs: list[tuple[str, str, str]] = []
    for k, name in plain.items():
        if name in ours and theirs[k] == ours[name]:
            pairs.append((k, name, "key-map" if k in key_map else "name"))
        elif k in key_map:
            why = "no such key" if name not in ours else f"shape {theirs[k]} ≠ {ours[name]}"
            raise CheckpointError(f"{path}: --key-map {k!r} → {name!r}: {why}")
    taken_theirs = {t for t, _, _ in pairs}
    taken_ours = {o for _, o, _ in pairs}
    if len(taken_ours) != len(pairs):
        raise CheckpointError(f"{path}: two tensors map onto the same name of ours")
    rest_theirs = [k for k in theirs if k not in taken_theirs]
    rest_ours = [k for k in ours if k not in taken_ours]
    if len(rest_theirs) != len(rest_ours):
        raise CheckpointError(
            f"{path}: {len(theirs)} tensors for our {len(ours)}; unmatched by name: theirs "
            f"{rest_theirs[:3]}, ours {rest_ours[:3]} (give --key-map)"
        )
    for t, o in zip(rest_theirs, rest_ours, strict=True):
        if theirs[t] != ours[o]:
            raise CheckpointError(
                f"{path}: by order, their {t!r} {theirs[t]} does not fit our {o!r} {ours[o]} "
                "(give --key-map)"
            )
        pairs.append((t, o, "order"))
    return pairs


def mapping_table(pairs: list[tuple[str, str, str]], shapes: dict[str, tuple[int, ...]]) -> str:
    width = max([len(t) for t, _, _ in pairs] + [10])
    lines = [f"{'their key':<{width}}  →  our key (shape, how)"]
    lines += [f"{t:<{width}}  →  {o} ({list(shapes[o])}, {how})" for t, o, how in pairs]
    return "\n".join(lines)


def read_key_map(path: Path) -> dict[str, str]:
    obj = read_json_config(path)
    if not isinstance(obj, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in obj.items()
    ):
        raise CheckpointError(f"{path}: --key-map must be a JSON object of names, old → new")
    return obj


def check_batch(model: VAE, inputs: Path, outputs: Path) -> str:
    """Our μ (and reconstruction, when given) on their inputs against theirs; one line."""
    try:
        x = np.load(inputs, allow_pickle=False)
        out = np.load(outputs, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{inputs} / {outputs}: unreadable ({e})") from None
    theirs = dict(out) if isinstance(out, np.lib.npyio.NpzFile) else {"mu": out}
    if "mu" not in theirs:
        raise CheckpointError(f"{outputs}: needs an array 'mu' (and optionally 'recon')")
    x = torch.as_tensor(np.asarray(x, np.float32))
    if x.ndim == 3:
        x = x[:, None]
    try:
        with torch.inference_mode():
            mu = model.encode(x).mean
            ours = {"mu": mu.numpy(), "recon": model.decode(mu).numpy()}
    except ValueError as e:
        raise CheckpointError(f"{inputs}: {e}") from None
    worst = []
    for name, ref in theirs.items():
        if name not in ours:
            continue
        ref = np.asarray(ref, np.float32).reshape(ours[name].shape[0], -1)
        mine = ours[name].reshape(len(ref), -1)
        if ref.shape != mine.shape:
            raise CheckpointError(f"{outputs}: {name} of shape {ref.shape}, ours {mine.shape}")
        err = float(np.abs(ref - mine).max())
        if not err <= CHECK_ATOL:
            raise CheckpointError(
                f"{outputs}: our {name} differs from theirs by up to {err:.3g} (> {CHECK_ATOL}); "
                "wrong mapping, preset or normalization"
            )
        worst.append(f"{name} max |Δ| {err:.2g}")
    return ", ".join(worst)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vae.import_weights", description=summary(__doc__))
    p.add_argument("--state-dict", required=True, type=Path, help="a .safetensors or .pt/.pth file")
    p.add_argument("--preset", required=True, choices=tuple(PRESETS), help="the architecture")
    p.add_argument("--key-map", type=Path, help="JSON object mapping their key names to ours")
    p.add_argument(
        "--check-batch",
        nargs=2,
        type=Path,
        metavar=("INPUTS", "OUTPUTS"),
        help="inputs .npy (B, 1, H, W) and their outputs: .npz with mu and recon, or .npy of mu",
    )
    add_training_options(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = PRESETS[args.preset]
    try:
        state = read_state_dict(args.state_dict)
        key_map = read_key_map(args.key_map) if args.key_map else None
        with torch.device("meta"):
            ours = {k: tuple(v.shape) for k, v in VAE(config).state_dict().items()}
        theirs = {k: tuple(v.shape) for k, v in state.items()}
        pairs = map_keys(args.state_dict, theirs, ours, key_map)
        print(mapping_table(pairs, ours))
        model = VAE(config)
        model.load_state_dict({o: state[t] for t, o, _ in pairs})
        model.eval()
        checked = check_batch(model, *args.check_batch) if args.check_batch else None
        meta = training_meta(args, config.image_size, "vae.import_weights", argv)
    except (CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    meta |= {
        "model": config.to_dict(),
        "train": {"preset": args.preset},
        "import": {
            "kind": "state_dict",
            "source": source_record(args.state_dict),
            "mapping": {o: t for t, o, _ in pairs},
            "by": {how: sum(h == how for _, _, h in pairs) for how in ("name", "key-map", "order")},
            "check_batch": checked,
        },
    }
    digest = save_checkpoint(args.out, model, meta)
    note = f"; check batch agrees ({checked})" if checked else ""
    print(f"wrote {args.out} (id {digest[:12]}){note}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
