"""Every `python -m` command's --help reads whole: its description is a sentence that ends, each
option's help is a phrase that ends where it should, and --data says what it takes."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from dataclasses import fields

import pytest

from common.cli import summary
from diffusion import evaluate as diffusion_evaluate
from diffusion import sample as diffusion_sample
from diffusion import train_config as diffusion_train
from explorer import encode, map_process
from inverse import evaluate as inverse_evaluate
from inverse import predict as inverse_predict
from inverse import train_config as inverse_train
from speckle import cli as speckle_cli
from vae import evaluate as vae_evaluate
from vae import import_exported, import_weights
from vae import train_config as vae_train

PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "speckle": speckle_cli.build_parser,
    "vae.train": vae_train.build_parser,
    "vae.evaluate": vae_evaluate.build_parser,
    "vae.import_weights": import_weights.build_parser,
    "vae.import_exported": import_exported.build_parser,
    "explorer.encode": encode.build_parser,
    "explorer.map_process": map_process.build_parser,
    "diffusion.train": diffusion_train.build_parser,
    "diffusion.sample": diffusion_sample.build_parser,
    "diffusion.evaluate": diffusion_evaluate.build_parser,
    "inverse.train": inverse_train.build_parser,
    "inverse.predict": inverse_predict.build_parser,
    "inverse.evaluate": inverse_evaluate.build_parser,
}
# Words a cut phrase ends on ("to" and "in" may end a whole one: "the file to write the map to").
DANGLING = {"a", "an", "the", "of", "or", "and", "its", "their", "with", "for", "by", "from", "as"}


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """The parser and its subcommands' (argparse lists them only in its `_actions`)."""
    yield parser
    for action in parser._actions:
        if isinstance(action.choices, dict):
            for sub in action.choices.values():
                yield from _parsers(sub)


def _whole(text: str) -> str:
    """Why `text` reads as cut off, or "" when it reads whole."""
    t = " ".join(text.split())
    if t.count("(") != t.count(")") or t.count("[") != t.count("]") or t.count("`") % 2:
        return "unbalanced brackets or quotes"
    if t.endswith((",", ":", ";", "(", "-", "/", "=", "…")):
        return f"ends with {t[-1]!r}"
    if t.split()[-1].strip(".)").lower() in DANGLING:
        return "ends on a dangling word"
    return ""


@pytest.mark.parametrize("command", PARSERS)
def test_help_texts_read_whole(command: str) -> None:
    for parser in _parsers(PARSERS[command]()):
        description = parser.description or ""
        assert description[:1].isupper() and description.endswith("."), (parser.prog, description)
        assert not _whole(description), (parser.prog, _whole(description), description)
        for action in parser._actions:
            if action.help and action.help != argparse.SUPPRESS:
                assert not _whole(action.help), (parser.prog, action.dest, action.help)


def test_generator_training_data_help_names_every_kind_of_pairs() -> None:
    data = next(f for f in fields(diffusion_train.TrainConfig) if f.name == "data")
    text = data.metadata["help"]
    assert "labels.csv" in text and "HDF5" in text and ".mat" in text


def test_a_docstring_summary_keeps_a_wrapped_sentence_whole() -> None:
    doc = """Generate speckle for input patterns with a trained
    generator.

        python -m diffusion.sample ...
    """
    assert summary(doc) == "Generate speckle for input patterns with a trained generator."
