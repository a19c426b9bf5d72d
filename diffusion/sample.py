"""Generate speckle for input patterns with a trained pattern → speckle generator.

    python -m diffusion.sample --checkpoint RUN --pattern IMG... --n K --steps S
        --sampler dpm++|ddim|ddpm --guidance W --seed N --out DIR

Each --pattern is a file or a frame by name, as the data readers name frames: an image, a 2-D
.npy, or one frame of a stack or recording ("stack.tif#3", "run.h5#/patterns#12",
"data.mat#patterns#0"). A file or array named without a frame index gives one pattern per frame:
a multi-page TIFF or an (N, H, W) .npy each frame, a paired recording each frame of its pattern
array ("run.h5" is "run.h5#/patterns#0" … "#N-1").

Writes K 16-bit PNGs per pattern (the VAE's decoded frames, 0..1 → 0..65535) and a labels.csv
with one row per sample: its file, the pattern (its file's absolute path, with the frame part)
it came from, the sample index and the settings. The same seed gives the same files. A pattern
that cannot be read is reported in one line and skipped; the others are still generated.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from common.atomic import atomic_dir
from common.cli import summary
from diffusion import checkpoint as gck
from diffusion.data import read_patterns
from diffusion.sampling import GUIDANCE, SAMPLER, SAMPLES, STEPS, sample_latents
from diffusion.schedulers import SAMPLERS
from frames import ImageError
from vae import checkpoint as vck
from vae.inference import decode

EXIT_USAGE = 2
PATTERN_HELP = (
    "input patterns, each a file or a frame by name: an image (PNG, TIFF, JPEG, BMP, GIF), an "
    ".npy/.npz array, or a frame of a stack or recording (stack.tif#3, run.h5#/patterns#12, "
    "data.mat#patterns#0); a name without a frame index gives one pattern per frame (of a paired "
    "recording: of its pattern array)"
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m diffusion.sample", description=summary(__doc__))
    p.add_argument(
        "--checkpoint", required=True, help="the generator: its folder, or the run that holds it"
    )
    p.add_argument("--pattern", required=True, nargs="+", help=PATTERN_HELP)
    p.add_argument("--n", type=int, default=SAMPLES, help="samples per pattern")
    p.add_argument("--steps", type=int, default=STEPS, help="sampler steps")
    p.add_argument("--sampler", default=SAMPLER, choices=SAMPLERS, help="the sampler")
    p.add_argument(
        "--guidance", type=float, default=GUIDANCE, help="classifier-free guidance weight"
    )
    p.add_argument("--seed", type=int, default=0, help="noise seed: the same seed, the same files")
    p.add_argument("--vae", default="", help="the VAE (default: the path the generator records)")
    p.add_argument(
        "--out",
        required=True,
        help="folder to write: new, empty, or an earlier "
        "sample output (replaced); anything else needs --overwrite",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    if args.n < 1 or args.steps < 1:
        print("error: --n and --steps must be >= 1", file=sys.stderr)
        return EXIT_USAGE
    try:
        config = gck.read_generator_config(args.checkpoint)
        vae_path = args.vae or config["vae"].get("path", "")
        vae = vck.load_checkpoint(vae_path)
        gen = gck.load_generator(args.checkpoint, vae.id, vae_path, regressor=False)
    except (vck.CheckpointError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    refusal = _out_refusal(Path(args.out), args.overwrite)
    if refusal:
        print(f"error: {refusal}", file=sys.stderr)
        return EXIT_USAGE
    patterns, names, failed = [], [], 0
    for name in args.pattern:
        try:
            read = read_patterns(name, gen.denoiser_config.pattern_size)
        except ImageError as e:
            print(f"skipped {e}", file=sys.stderr)
            failed += 1
            continue
        names += [label for label, _ in read]
        patterns += [pattern for _, pattern in read]
    if not patterns:
        print("error: no readable pattern", file=sys.stderr)
        return EXIT_USAGE
    try:
        write(gen, vae, np.stack(patterns), names, args)
    except OSError as e:
        print(f"error: {args.out}: cannot write ({e.strerror or e})", file=sys.stderr)
        return EXIT_USAGE
    print(
        f"wrote {len(names) * args.n} samples of {len(names)} patterns to {args.out}",
        file=sys.stderr,
    )
    return 1 if failed else 0


def _absolute(name: str) -> str:
    """A pattern's frame name with its file's absolute path: "run.h5#/patterns#3" ->
    "/data/run.h5#/patterns#3"."""
    path = Path(name)
    if path.exists():
        return str(path.resolve())
    file, sep, frame = name.partition("#")
    return str(Path(file).resolve()) + sep + frame


def _out_refusal(out: Path, overwrite: bool) -> str:
    """Why writing --out would destroy something: the folder is replaced whole."""
    if not out.exists():
        return ""
    if not out.is_dir():
        return f"{out}: exists and is not a folder"
    if overwrite or not any(out.iterdir()):
        return ""
    labels = out / "labels.csv"
    try:
        earlier = labels.is_file() and "generator" in labels.read_text().splitlines()[0].split(",")
    except (OSError, IndexError, UnicodeDecodeError):
        earlier = False
    if earlier and {p.name for p in out.iterdir()} <= {"images", "labels.csv"}:
        return ""
    return f"{out}: not empty and not an earlier sample output; pass --overwrite to replace it"


def write(
    gen: gck.Generator,
    vae: vck.Checkpoint,
    patterns: np.ndarray,
    names: list[str],
    args: argparse.Namespace,
) -> None:
    s = sample_latents(
        gen.model, patterns, args.n, args.steps, args.sampler, args.guidance, args.seed
    )
    frames = decode(vae.model, s.latents.reshape(-1, s.latents.shape[-1]))
    rows = []
    with atomic_dir(args.out, replace=True) as tmp:
        (tmp / "images").mkdir()
        for r, frame in enumerate(frames):
            k, j = divmod(r, args.n)
            file = f"images/{k:04d}_{j:03d}.png"
            png = np.round(np.clip(frame, 0, 1) * 65535).astype(np.uint16)
            Image.fromarray(png).save(tmp / file)
            rows.append(
                {
                    "file": file,
                    "pattern": _absolute(names[k]),
                    "pattern_index": k,
                    "sample": j,
                    "sampler": args.sampler,
                    "steps": args.steps,
                    "guidance": args.guidance,
                    "seed": args.seed,
                    "generator": gen.id,
                }
            )
        pd.DataFrame(rows).to_csv(tmp / "labels.csv", index=False)


if __name__ == "__main__":
    sys.exit(main())
