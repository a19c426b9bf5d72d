"""What the command-line tools share: the description their `--help` shows."""

from __future__ import annotations


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
