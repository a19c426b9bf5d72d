"""Importing our architecture's weights trained elsewhere (vae.import_weights): a notebook's
state_dict under other names gives our model the same μ, the key mapping by name, order, shape and
--key-map (the paper preset included, on the meta device), and a pickle payload refused unrun."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from common.checkpoint_files import CheckpointError
from tests.foreign_models import NOTEBOOK_SCRIPT, run_outside
from vae.checkpoint import load_checkpoint
from vae.config import PRESETS
from vae.import_weights import main, map_keys, read_state_dict
from vae.model import VAE


@pytest.fixture(scope="module")
def notebook(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("notebook")
    run_outside(NOTEBOOK_SCRIPT, folder)
    return folder


def test_a_notebook_state_dict_gives_our_model_its_mu(
    notebook: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "models" / "mine"
    argv = ["--state-dict", str(notebook / "notebook.pt"), "--preset", "demo", "--out", str(out)]
    argv += ["--check-batch", str(notebook / "inputs.npy"), str(notebook / "outputs.npz")]
    assert main(argv) == 0
    table = capsys.readouterr().out
    # Its names share nothing with ours: every tensor went by order, and the table says so.
    line = next(row for row in table.splitlines() if row.startswith("down.0.weight "))
    assert "→  encoder.features.0.weight ([16, 1, 3, 3], order)" in line
    assert table.count("order)") == len(VAE(PRESETS["demo"]).state_dict())
    ck = load_checkpoint(out)
    theirs = np.load(notebook / "outputs.npz")
    x = torch.from_numpy(np.load(notebook / "inputs.npy"))
    with torch.inference_mode():
        mu = ck.model.encode(x).mean.numpy()
        recon = ck.model.decode(torch.from_numpy(mu)).numpy()
    assert np.abs(mu - theirs["mu"]).max() <= 1e-6
    assert np.abs(recon - theirs["recon"]).max() <= 1e-6
    record = ck.config["import"]
    assert (
        record["source"]["sha256"]
        == hashlib.sha256((notebook / "notebook.pt").read_bytes()).hexdigest()
    )
    assert record["mapping"]["encoder.features.0.weight"] == "down.0.weight"
    assert record["by"]["order"] == len(record["mapping"]) and record["check_batch"]
    assert ck.config["train"]["preset"] == "demo" and ck.recon == "sse"


def test_a_check_batch_that_disagrees_fails_the_import(
    notebook: Path, tmp_path: Path, capsys
) -> None:
    theirs = dict(np.load(notebook / "outputs.npz"))
    theirs["mu"] = theirs["mu"] + 1e-3
    np.savez(tmp_path / "off.npz", **theirs)
    out = tmp_path / "never"
    argv = ["--state-dict", str(notebook / "notebook.pt"), "--preset", "demo", "--out", str(out)]
    argv += ["--check-batch", str(notebook / "inputs.npy"), str(tmp_path / "off.npz")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "off.npz" in err and "mu differs" in err
    assert not out.exists()


class Payload:
    """A pickle whose loading would create a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("form", ["torch.save", "raw pickle"])
def test_a_pickle_payload_is_refused_in_one_line_and_never_run(
    tmp_path: Path, capsys, form: str
) -> None:
    marker = tmp_path / "marker"
    evil = tmp_path / "weights.pt"
    payload = {"encoder.features.0.weight": torch.zeros(1), "x": Payload(marker)}
    if form == "torch.save":
        torch.save(payload, evil)
    else:
        evil.write_bytes(pickle.dumps(payload))
    # The payload is live: plain unpickling would run it.
    pickle.loads(pickle.dumps(Payload(tmp_path / "proof")))
    assert (tmp_path / "proof").exists()
    out = tmp_path / "never"
    assert main(["--state-dict", str(evil), "--preset", "demo", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(evil) in err and "refused" in err
    assert not marker.exists() and not out.exists()


def test_a_pickle_named_safetensors_is_refused_unread(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    evil = tmp_path / "weights.safetensors"
    evil.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(CheckpointError, match=r"weights.safetensors: is a pickle"):
        read_state_dict(evil)
    assert not marker.exists()


def test_prefixes_are_dropped_and_names_matched(tmp_path: Path) -> None:
    model = VAE(PRESETS["demo"])
    state = {f"_orig_mod.module.{k}": v for k, v in model.state_dict().items()}
    path = tmp_path / "ddp.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in read_state_dict(path).items()}
    pairs = map_keys(path, theirs, ours)
    assert {how for _, _, how in pairs} == {"name"}
    assert {o for _, o, _ in pairs} == set(ours)


def test_nested_state_dicts_are_unwrapped(tmp_path: Path) -> None:
    path = tmp_path / "run.pth"
    torch.save({"epoch": 3, "model_state_dict": {"a": torch.ones(2)}}, path)
    assert list(read_state_dict(path)) == ["a"]
    torch.save({"epoch": 3}, path)
    with pytest.raises(CheckpointError, match="no dict of tensors"):
        read_state_dict(path)


def test_paper_preset_maps_by_order_and_key_map_on_the_meta_device() -> None:
    """The paper preset (96 px, 64–512 channels) mapped from renamed keys, shapes only."""
    with torch.device("meta"):
        ours = {k: tuple(v.shape) for k, v in VAE(PRESETS["paper"]).state_dict().items()}
    theirs = {f"net.{i}": shape for i, shape in enumerate(ours.values())}
    pairs = map_keys(Path("paper.pt"), theirs, ours)
    assert [o for _, o, _ in pairs] == list(ours) and {h for *_, h in pairs} == {"order"}
    assert ("net.0", "encoder.features.0.weight", "order") in pairs
    # Swapping the two heads' order: the shapes still fit pairwise, so only --key-map can say.
    names = list(ours)
    mean_w, logvar_w = (
        names.index("encoder.to_mean.weight"),
        names.index("encoder.to_logvar.weight"),
    )
    key_map = {
        f"net.{mean_w}": "encoder.to_logvar.weight",
        f"net.{logvar_w}": "encoder.to_mean.weight",
    }
    pairs = dict((t, (o, h)) for t, o, h in map_keys(Path("paper.pt"), theirs, ours, key_map))
    assert pairs[f"net.{mean_w}"] == ("encoder.to_logvar.weight", "key-map")
    # A shape that fits nothing in order is one line naming the pair.
    bad = dict(theirs)
    bad["net.0"] = (1, 2, 3)
    with pytest.raises(CheckpointError, match=r"paper.pt: by order, their 'net.0'"):
        map_keys(Path("paper.pt"), bad, ours)
    with pytest.raises(CheckpointError, match="key-map names keys not in the file"):
        map_keys(Path("paper.pt"), theirs, ours, {"nope": "x"})


def test_a_key_map_file_and_a_wrong_preset(notebook: Path, tmp_path: Path, capsys) -> None:
    key_map = tmp_path / "map.json"
    key_map.write_text(json.dumps({"down.0.weight": "encoder.features.0.weight"}))
    out = tmp_path / "m"
    argv = ["--state-dict", str(notebook / "notebook.pt"), "--preset", "demo", "--out", str(out)]
    assert main([*argv, "--key-map", str(key_map)]) == 0
    assert ", key-map)" in capsys.readouterr().out
    assert load_checkpoint(out).config["import"]["by"]["key-map"] == 1
    argv[3] = "paper"
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "notebook.pt" in err


@pytest.mark.slow
def test_a_paper_size_notebook_state_dict_gives_the_same_mu(tmp_path: Path, capsys) -> None:
    """The paper preset (96 px, 44 M parameters) once for real: its notebook twin's state_dict,
    torch.save'd, mapped by order and checked on a batch of its own outputs."""
    run_outside(NOTEBOOK_SCRIPT, tmp_path, "paper")
    out = tmp_path / "paper-import"
    argv = ["--state-dict", str(tmp_path / "notebook.pt"), "--preset", "paper", "--out", str(out)]
    argv += ["--check-batch", str(tmp_path / "inputs.npy"), str(tmp_path / "outputs.npz")]
    assert main(argv) == 0
    with torch.device("meta"):
        keys = len(VAE(PRESETS["paper"]).state_dict())
    assert capsys.readouterr().out.count("order)") == keys
    ck = load_checkpoint(out)
    with torch.inference_mode():
        mu = ck.model.encode(torch.from_numpy(np.load(tmp_path / "inputs.npy"))).mean.numpy()
    assert np.abs(mu - np.load(tmp_path / "outputs.npz")["mu"]).max() <= 1e-6
