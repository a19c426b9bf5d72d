"""`python -m speckle`: simulate data sets (mmf, free) or measure speckle statistics (stats)."""

from __future__ import annotations

import argparse
import inspect
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from frames import ImageError, read_image
from speckle.families import FAMILIES
from speckle.fibre_options import add_fibre_options, fibre_kwargs
from speckle.free import PUPILS, simulate_free
from speckle.gaussian_fibre import DEFAULT_FIBRE_SEED
from speckle.io import FILE_FORMATS, write_dataset
from speckle.mmf import simulate_mmf
from speckle.simulated import PATTERN_SIZE
from speckle.slm_patterns import DIGIT_SPLITS, family_names
from speckle.stats_command import MASK_HELP, stats_command

# ----------------------------------------------------------------------------- CLI


def _families(value: str) -> str:
    """--pattern-family: one family or a comma list, checked, spaces dropped."""
    try:
        return ",".join(family_names(value))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _own_patterns(folder: Path | None) -> dict[str, Any]:
    """--patterns DIR: every image in DIR as a 16x16 amplitude pattern in [0, 1] (area
    resampling, each scaled by its own maximum), read through the hardened image reader."""
    if folder is None:
        return {}

    if not folder.is_dir():
        raise ValueError(f"--patterns {folder}: not a directory")
    patterns, names = [], []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            raw = read_image(path)
        except ImageError as exc:
            print(f"python -m speckle mmf: skipped {exc}", file=sys.stderr)
            continue
        patterns.append(_to_pattern(raw.pixels))
        names.append(str(path.relative_to(folder)))
    if not patterns:
        raise ValueError(f"--patterns {folder}: no readable pattern images")
    return {"patterns": np.stack(patterns), "pattern_names": names}


def _to_pattern(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img, dtype=np.float32)
    small = np.asarray(
        Image.fromarray(a, mode="F").resize((PATTERN_SIZE, PATTERN_SIZE), Image.Resampling.BOX)
    )
    top = float(small.max())
    return small / top if top > 0 else small


def _pair_arg(text: str) -> tuple[float, float] | float:
    """'V' or 'LO:HI' (also 'LO,HI')."""
    parts = text.replace(",", ":").split(":")
    try:
        vals = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"expected a number or LO:HI, got {text!r}") from None
    if len(vals) == 1:
        return vals[0]
    if len(vals) == 2:
        return (vals[0], vals[1])
    raise ValueError(f"expected a number or LO:HI, got {text!r}")


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows an option's default only where it has one: not for a required option, an
    on/off flag, or an option whose absence the help itself explains."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.required or action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    class OneLineParser(argparse.ArgumentParser):
        def error(self, message: str):  # argparse prints the whole usage; keep errors one line
            self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

    def pair(text: str):
        try:
            return _pair_arg(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    fmt = DefaultsFormatter
    parser = OneLineParser(
        prog="python -m speckle",
        description="Simulate laser speckle data sets (multimode fibre or free space) with known "
        "generating factors, or measure speckle statistics of images.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    def common(p) -> None:
        p.add_argument("--n", type=int, required=True, help="number of images")
        p.add_argument("--seed", type=int, required=True, help="sample seed")
        p.add_argument("--out", type=Path, required=True, help="output directory")
        p.add_argument("--size", type=int, default=64, help="output image size (pixels)")
        p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
        p.add_argument(
            "--format",
            choices=FILE_FORMATS,
            default="png",
            dest="file_format",
            help="png: one file per frame; tiff: one multi-page 16-bit stack; h5: one HDF5 file "
            "holding /speckle, /patterns and /labels",
        )

    mmf = sub.add_parser(
        "mmf",
        formatter_class=fmt,
        help="digits on an SLM through a multimode fibre",
        description="Handwritten digits (16x16 amplitude on an SLM) through a fixed random "
        "multimode fibre; a new --seed draws new samples through the same fibre.",
    )
    common(mmf)
    mmf.add_argument(
        "--fibre-seed",
        type=int,
        default=DEFAULT_FIBRE_SEED,
        help="seed of the fibre's transmission matrix T",
    )
    mmf.add_argument("--shift", type=float, default=2.0, help="max |dx|, |dy| in SLM pixels")
    mmf.add_argument("--rotation", type=float, default=15.0, help="max |angle| in degrees")
    mmf.add_argument("--scale", type=pair, default=(0.9, 1.1), help="scale range LO:HI")
    mmf.add_argument(
        "--bend",
        type=pair,
        default=None,
        metavar="MU|LO:HI",
        help="gaussian: fibre bend mu in [0, 1], 1 the straight fibre; modes: bend curvature "
        "in 1/m, V or LO:HI, per frame (default: no bend)",
    )
    mmf.add_argument(
        "--bend-seed",
        type=int,
        default=None,
        help="seed of the bent part (default: the fibre seed + 1)",
    )
    mmf.add_argument(
        "--grain", type=float, default=None, help="grain FWHM in pixels (default: size/16)"
    )
    mmf.add_argument("--core", type=float, default=0.9, help="core diameter / image width")
    mmf.add_argument(
        "--digits",
        choices=DIGIT_SPLITS,
        default="train",
        help="which bundled handwriting: train (80%%) or test (the other 20%%, for held-out sets); "
        "the same split of any --pattern-family",
    )
    mmf.add_argument(
        "--pattern-family",
        type=_families,
        default="digits",
        dest="family",
        metavar="|".join(FAMILIES),
        help="what the SLM shows: bundled handwritten digits, letters (DejaVu Sans Bold), dots "
        "or bars (speckle.families); a comma list (digits,dots,bars) mixes them",
    )
    mmf.add_argument(
        "--patterns",
        type=Path,
        default=None,
        metavar="DIR",
        help="your own pattern images (SLM frames) instead of digits, resized to 16x16",
    )
    mmf.add_argument(
        "--states",
        type=int,
        default=None,
        metavar="M",
        help="M fibre states (needs --bend; default: one)",
    )
    add_fibre_options(mmf, pair)

    free = sub.add_parser(
        "free",
        formatter_class=fmt,
        help="free-space speckle with controlled factors",
        description="Random phase screen behind a pupil, then an FFT. Ranges are V or LO:HI, "
        "drawn uniformly per image and recorded in labels.csv.",
    )
    common(free)
    free.add_argument("--grid", type=int, default=None, help="simulation grid N (default: --size)")
    free.add_argument(
        "--diameter",
        type=pair,
        default=None,
        help="pupil diameter D in grid pixels, V or LO:HI (default: N/8:N/3)",
    )
    free.add_argument("--pupil", default="circle", help=f"one or more of {','.join(PUPILS)}")
    free.add_argument("--aspect", type=pair, default=0.5, help="ellipse height/width")
    free.add_argument("--inner", type=pair, default=0.5, help="annulus hole/outer diameter")
    free.add_argument("--looks", type=pair, default=1, help="independent looks M, V or LO:HI")
    free.add_argument("--tilt", type=int, default=0, help="max |tilt| in output pixels")
    free.add_argument("--defocus", type=float, default=0.0, help="max |defocus| in waves")
    free.add_argument("--decorrelation", type=float, default=0.0, help="frame-to-frame rho")
    free.add_argument("--oversample", type=int, default=1, help="camera pixel integration q")
    free.add_argument(
        "--photons",
        type=float,
        default=None,
        help="mean photoelectrons per pixel: adds the camera model (default: no camera)",
    )
    free.add_argument("--read-noise", type=float, default=0.0, help="read noise, e- rms")
    free.add_argument(
        "--bit-depth", type=int, default=None, help="ADC bits (default: no quantization)"
    )
    free.add_argument(
        "--full-well",
        type=float,
        default=None,
        help="full well in e-, where pixels saturate (default: none)",
    )

    st = sub.add_parser(
        "stats",
        formatter_class=fmt,
        help="speckle statistics of images",
        description="Contrast, grain size and intensity statistics of images (PNG/TIFF/JPEG/BMP, "
        "and every frame of .npy/.npz, multi-page TIFF, HDF5 and .mat stacks; FILE#KEY picks "
        "one array). A folder is searched recursively for the frames that --data trains on, "
        "without the input patterns its labels.csv names. A bad file is reported on stderr and "
        "the rest continue; the exit code is 1 if any failed.",
    )
    st.add_argument(
        "paths",
        nargs="+",
        metavar="FILE_OR_DIR",
        help="image files, stacks, FILE#KEY arrays, or data set folders (their speckle frames)",
    )
    st.add_argument("--json", action="store_true", help="one JSON object per line per image")
    st.add_argument("--window", type=int, default=7, help="local contrast window (pixels)")
    st.add_argument("--mask", default="auto", metavar="auto|none|FILE", help=MASK_HELP)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "stats":
            try:
                return stats_command(args.paths, args.json, args.window, args.mask)
            except BrokenPipeError:  # `... | head`: the reader is gone, nothing left to say
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return 1
        # The subcommand's own options are the simulator's keyword arguments, by name.
        simulate = simulate_mmf if args.command == "mmf" else simulate_free
        options = inspect.signature(simulate).parameters
        skip = ("n", "seed", "patterns")  # --patterns is a folder; the simulator takes arrays
        kwargs = {k: v for k, v in vars(args).items() if k in options and k not in skip}
        if args.command == "mmf":
            kwargs |= _own_patterns(args.patterns) | fibre_kwargs(args)
        sim = simulate(args.n, args.seed, **kwargs)
        sim.meta["command"] = [
            "python",
            "-m",
            "speckle",
            *(sys.argv[1:] if argv is None else argv),
        ]
        write_dataset(sim, args.out, overwrite=args.overwrite, file_format=args.file_format)
    except (ValueError, OSError) as exc:
        print(f"python -m speckle {args.command}: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {len(sim.images)} images to {args.out}")
    return 0
