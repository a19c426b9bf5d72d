"""Reconstruct patterns: `python -m inverse.predict --checkpoint RECON [--vae CKPT] --out DIR
FRAMES...`.

FRAMES are image files, stacks (.npy/.npz, multi-page TIFF, HDF5, .mat; every frame) or folders
(searched for the frames a data set trains on). Each frame is preprocessed as the reconstructor's
training frames were, and its pattern is written as a 16-bit PNG under DIR/METHOD/, with one row
per frame and reconstructor in DIR/predictions.csv. A bad file gets one line on stderr and the
others go on; the exit code is then 1.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from common.atomic import atomic_write
from common.checkpoint_files import CheckpointError
from common.cli import summary
from frames import ImageError, Layout, Normalization, dataset_files, preprocess, stack_frames
from inverse.reconstruct import load_for_cli, reconstruct

PROG = "python -m inverse.predict"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=summary(__doc__))
    p.add_argument(
        "--checkpoint", action="append", required=True, help="a reconstructor (repeatable)"
    )
    p.add_argument("--vae", default="", help="the VAE the μ read-outs were trained on")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("frames", nargs="+", metavar="FRAMES", help="frame files, stacks or folders")
    return p


def frame_files(paths: list[str], warn) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        out += [p / rel for rel in dataset_files(p, warn)] if p.is_dir() else [p]
    return out


def read_frames(files: list[Path], size: int, norm: Normalization, warn):
    """(names, frames (N, size, size)) of every readable frame; one line per bad file or frame."""
    names, frames = [], []
    for file in files:
        try:
            _, it = stack_frames(file, str(file), Layout(), root=file.parent)
            for where, index, raw in it:
                frames.append(preprocess(raw, size, norm)[0])
                names.append(where if index is None else f"{where}#{index}")
        except (ImageError, ValueError, OSError) as e:
            warn(str(e).splitlines()[0] if str(e) else f"{file}: cannot be read")
    return names, np.stack(frames) if frames else np.zeros((0, size, size), np.float32)


def png16(pattern: np.ndarray) -> bytes:
    buf = io.BytesIO()
    counts = np.round(np.clip(pattern, 0, 1) * 65535).astype(np.uint16)
    Image.fromarray(counts).save(buf, format="PNG")
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    failed = False

    def warn(msg: str) -> None:
        nonlocal failed
        failed = True
        print(f"{PROG}: {msg}", file=sys.stderr)

    try:
        recs, vae = load_for_cli(args.checkpoint, args.vae)
    except (CheckpointError, ValueError, OSError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    files = frame_files(args.frames, warn)
    rows = []
    by_prep: dict[str, tuple] = {}
    for rec in recs:
        pre = rec.config["preprocessing"]
        key = repr(pre)
        if key not in by_prep:
            norm = Normalization.from_dict(pre["normalization"])
            quiet = warn if not by_prep else (lambda msg: None)  # each bad file once
            by_prep[key] = read_frames(files, rec.image_size, norm, quiet)
        names, frames = by_prep[key]
        if not len(frames):
            continue
        patterns = reconstruct(rec, frames, vae.model if vae is not None else None)
        folder = args.out / rec.method
        folder.mkdir(parents=True, exist_ok=True)
        for i, (name, pattern) in enumerate(zip(names, patterns, strict=True)):
            file = folder / f"{i:06d}.png"
            atomic_write(file, png16(pattern))
            rows.append(
                {
                    "frame": name,
                    "method": rec.method,
                    "checkpoint": str(rec.path),
                    "pattern": str(file.relative_to(args.out)),
                }
            )
    if rows:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        atomic_write(args.out / "predictions.csv", text.getvalue())
        print(f"wrote {len(rows)} patterns to {args.out}")
    elif not failed:
        warn("no frames to read")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
