"""What the command-line tools share: the description their `--help` shows, and a parser built
from a config dataclass."""

from __future__ import annotations

import argparse
from dataclasses import fields


def summary(doc: str | None) -> str:
    """A module docstring's first paragraph as one line: a command's `--help` description. The
    paragraph is taken whole, so a sentence that wraps onto a second line is not cut."""
    paragraph = (doc or "").strip().split("\n\n", 1)[0]
    return " ".join(paragraph.split())


# --data of the commands that read a data set of speckle images (vae.train, vae.evaluate,
# explorer.encode); what it accepts is docs/data.md.
DATA_HELP = (
    "data set folder, searched recursively: images, .npy/.npz stacks, multi-page TIFF, HDF5 and "
    ".mat files, with an optional labels.csv"
)


def parser_for(config_class: type, prog: str, description: str) -> argparse.ArgumentParser:
    """An argparse parser with one flag per field of a frozen config dataclass (help, choices
    and `required` from each field's metadata)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    for f in fields(config_class):
        meta = dict(f.metadata)
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=f.default, help=meta["help"]
            )
            continue
        kind = {"int": int, "float": float, "str": str}[str(f.type)]
        parser.add_argument(
            flag,
            type=kind,
            default=None if meta.get("required") else f.default,
            required=meta.get("required", False),
            choices=meta.get("choices"),
            help=meta["help"],
        )
    return parser


def config_from_args(parser: argparse.ArgumentParser, config_class: type, argv: list[str] | None):
    """Parse `argv` into `config_class` (a parser from parser_for); a value the config refuses
    becomes the parser's one-line usage error (exit 2)."""
    ns = parser.parse_args(argv)
    try:
        return config_class(**vars(ns))
    except ValueError as e:
        parser.error(str(e))
        raise
