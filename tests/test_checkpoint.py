from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from common import checkpoint_files
from vae import checkpoint as ckpt
from vae.model import VAE, VAEConfig

META = {
    "model": None,
    "preprocessing": {"image_size": 16, "normalization": {"mode": "max"}},
    "beta": 0.5,
    "recon": "sse",
}


def _save(path: Path, config: VAEConfig, model: torch.nn.Module | None = None) -> VAE:
    model = model or VAE(config)
    ckpt.save_checkpoint(path, model, META | {"model": config.to_dict()})
    return model


def test_round_trip_bit_for_bit(tmp_path: Path, tiny_config: VAEConfig) -> None:
    model = _save(tmp_path / "c", tiny_config)
    loaded = ckpt.load_checkpoint(tmp_path / "c")
    assert loaded.model_config == tiny_config
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
    assert loaded.beta == 0.5 and loaded.recon == "sse"
    assert loaded.id == checkpoint_files.file_sha256(tmp_path / "c" / ckpt.WEIGHTS)
    assert loaded.config["version"] and loaded.config["torch"] == torch.__version__


def test_id_changes_with_weights(tmp_path: Path, tiny_config: VAEConfig) -> None:
    model = _save(tmp_path / "a", tiny_config)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    _save(tmp_path / "b", tiny_config, model)
    assert ckpt.load_checkpoint(tmp_path / "a").id != ckpt.load_checkpoint(tmp_path / "b").id


def test_run_dir_resolves_to_its_checkpoint(tmp_path: Path, tiny_config: VAEConfig) -> None:
    _save(tmp_path / "run" / "checkpoint", tiny_config)
    assert checkpoint_files.resolve(tmp_path / "run") == tmp_path / "run" / "checkpoint"


def test_compiled_and_ddp_prefixes_load(tmp_path: Path, tiny_config: VAEConfig) -> None:
    model = VAE(tiny_config)
    prefixed = {f"module._orig_mod.{k}": v for k, v in model.state_dict().items()}
    assert checkpoint_files.strip_prefixes(prefixed).keys() == model.state_dict().keys()

    class Wrapper(torch.nn.Module):  # stands in for DDP: exposes .module
        def __init__(self, m):
            super().__init__()
            self.module = m

    _save(tmp_path / "w", tiny_config, Wrapper(model))
    loaded = ckpt.load_checkpoint(tmp_path / "w")
    assert torch.equal(loaded.model.encoder.to_mean.weight, model.encoder.to_mean.weight)


def test_refuses_pickle_without_running_it(tmp_path: Path, tiny_config: VAEConfig) -> None:
    _save(tmp_path / "c", tiny_config)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    for blob in (pickle.dumps(Payload()), None):
        weights = tmp_path / "c" / ckpt.WEIGHTS
        if blob is None:
            torch.save({"x": torch.zeros(1)}, weights)  # a torch.save zip archive
        else:
            weights.write_bytes(blob)
        with pytest.raises(ckpt.CheckpointError, match="model.safetensors: is a pickle"):
            ckpt.load_checkpoint(tmp_path / "c")
    assert not marker.exists()


def test_refuses_truncated_weights(tmp_path: Path, tiny_config: VAEConfig) -> None:
    _save(tmp_path / "c", tiny_config)
    weights = tmp_path / "c" / ckpt.WEIGHTS
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(
        ckpt.CheckpointError, match="model.safetensors: content hash does not match"
    ):
        ckpt.load_checkpoint(tmp_path / "c")
    # Without a recorded hash the safetensors parser still refuses it.
    config = json.loads((tmp_path / "c" / "config.json").read_text())
    del config["weights_sha256"]
    (tmp_path / "c" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ckpt.CheckpointError, match="not a valid safetensors file"):
        ckpt.load_checkpoint(tmp_path / "c")


def test_refuses_config_that_does_not_match_weights(tmp_path: Path, tiny_config: VAEConfig) -> None:
    _save(tmp_path / "c", tiny_config)
    config = json.loads((tmp_path / "c" / "config.json").read_text())
    config["model"]["latent_dim"] = 16
    (tmp_path / "c" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ckpt.CheckpointError, match="weights do not match the config"):
        ckpt.load_checkpoint(tmp_path / "c")


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c["model"].update(channels=[4, 8, 8, 10**9]), "bad model config"),
        (lambda c: c["model"].update(image_size="big"), "bad model config"),
        (lambda c: c.pop("model"), "missing key 'model'"),
        (lambda c: c.pop("format"), "not a speckle-vae-checkpoint config"),
    ],
)
def test_refuses_bad_config(tmp_path: Path, tiny_config: VAEConfig, edit, message: str) -> None:
    _save(tmp_path / "c", tiny_config)
    config = json.loads((tmp_path / "c" / "config.json").read_text())
    edit(config)
    (tmp_path / "c" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ckpt.CheckpointError, match=message):
        ckpt.load_checkpoint(tmp_path / "c")


def test_refuses_non_json_and_missing(tmp_path: Path, tiny_config: VAEConfig) -> None:
    _save(tmp_path / "c", tiny_config)
    (tmp_path / "c" / "config.json").write_text("{not json")
    with pytest.raises(ckpt.CheckpointError, match="config.json: not valid JSON"):
        ckpt.load_checkpoint(tmp_path / "c")
    with pytest.raises(ckpt.CheckpointError, match="no such checkpoint"):
        ckpt.load_checkpoint(tmp_path / "nope")


def test_interrupted_swap_falls_back_to_old(tmp_path: Path, tiny_config: VAEConfig) -> None:
    _save(tmp_path / "checkpoint", tiny_config)
    # The state right between the two renames of an atomic swap.
    (tmp_path / "checkpoint").rename(tmp_path / ".checkpoint.old")
    assert ckpt.load_checkpoint(tmp_path).model_config == tiny_config


def test_failed_write_leaves_previous_checkpoint(tmp_path: Path, tiny_config: VAEConfig) -> None:
    _save(tmp_path / "c", tiny_config)
    before = ckpt.load_checkpoint(tmp_path / "c").id
    with pytest.raises(TypeError):
        ckpt.save_checkpoint(tmp_path / "c", VAE(tiny_config), META | {"model": object()})
    assert ckpt.load_checkpoint(tmp_path / "c").id == before
    assert [p.name for p in tmp_path.iterdir()] == ["c"]


def test_lazy_checkpoint_builds_its_model_once_on_first_use(
    tmp_path: Path, tiny_config: VAEConfig, monkeypatch
) -> None:
    import threading

    model = _save(tmp_path / "c", tiny_config)
    lazy = ckpt.load_checkpoint(tmp_path / "c", lazy=True)
    assert lazy.loaded is None  # nothing built yet
    assert lazy.id == ckpt.load_checkpoint(tmp_path / "c").id
    builds, real = [], ckpt._build_model
    monkeypatch.setattr(ckpt, "_build_model", lambda *a: builds.append(real(*a)) or builds[-1])
    # Four readers at once: one builds, the others wait for it on the checkpoint's lock.
    got: list = []
    barrier = threading.Barrier(4)
    threads = [
        threading.Thread(target=lambda: (barrier.wait(10), got.append(lazy.model)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1 and len(got) == 4 and all(m is builds[0] for m in got)
    for key, value in model.state_dict().items():
        assert torch.equal(lazy.model.state_dict()[key], value), key


def test_lazy_checkpoint_checks_the_weights_hash_at_once(
    tmp_path: Path, tiny_config: VAEConfig
) -> None:
    _save(tmp_path / "c", tiny_config)
    weights = tmp_path / "c" / ckpt.WEIGHTS
    good = weights.read_bytes()
    weights.write_bytes(good[:-100])
    with pytest.raises(ckpt.CheckpointError, match="content hash does not match"):
        ckpt.load_checkpoint(tmp_path / "c", lazy=True)
    weights.write_bytes(good)
    # A config whose shapes do not match the weights needs the module: refused on first use.
    config = json.loads((tmp_path / "c" / "config.json").read_text())
    config["model"]["latent_dim"] = 16
    (tmp_path / "c" / "config.json").write_text(json.dumps(config))
    lazy = ckpt.load_checkpoint(tmp_path / "c", lazy=True)
    with pytest.raises(ckpt.CheckpointError, match="weights do not match the config"):
        _ = lazy.model


def test_save_replaces_a_checkpoint_whole_and_leaves_no_temporaries(
    tmp_path: Path, tiny_config: VAEConfig
) -> None:
    _save(tmp_path / "c", tiny_config)
    first = ckpt.load_checkpoint(tmp_path / "c").id
    _save(tmp_path / "c", tiny_config)  # over the first: through .c.old, which is then removed
    assert ckpt.load_checkpoint(tmp_path / "c").id != first
    assert [p.name for p in tmp_path.iterdir()] == ["c"]


def test_half_precision_export_loads_and_decodes_like_the_original(tmp_path) -> None:
    import numpy as np
    import torch

    from vae.checkpoint import export_checkpoint, load_checkpoint

    export_checkpoint("models/demo", tmp_path / "full")  # float32, whatever the demo ships in
    new_id = export_checkpoint(tmp_path / "full", tmp_path / "half", weights_dtype="float16")
    full, half = load_checkpoint(tmp_path / "full"), load_checkpoint(tmp_path / "half")
    assert half.id == new_id != full.id and half.config["weights_dtype"] == "float16"
    assert (
        half.config["beta"] == full.config["beta"]
        and half.config["command"] == full.config["command"]
    )
    size = (tmp_path / "half" / "model.safetensors").stat().st_size
    assert size < 0.55 * (full.path / "model.safetensors").stat().st_size
    assert not (tmp_path / "half" / "resume").exists()
    z = torch.randn(8, 512, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = full.model.decode(z).numpy(), half.model.decode(z).numpy()
    assert next(half.model.parameters()).dtype == torch.float32
    assert np.abs(a - b).max() < 5e-3


def test_atomic_writes_follow_the_umask(tmp_path) -> None:
    """Temporary files and folders are private (0600, 0700); what they become is not."""
    import os

    from common.atomic import atomic_dir, atomic_write

    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a.json", "{}")
        with atomic_dir(tmp_path / "run") as d:
            (d / "x").write_text("1")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "run").stat().st_mode & 0o777 == 0o755


def test_safetensors_header_length_ending_in_0x80_is_not_a_pickle(tmp_path: Path) -> None:
    """A safetensors file starts with its header's length: a low byte of 0x80 is pickle's PROTO
    opcode, and such a file (the shipped generator's regressor) was once refused as a pickle."""
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    for pad in range(256):
        save_file({"x": torch.arange(3.0)}, str(path), metadata={"pad": "p" * pad})
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80
    assert torch.equal(checkpoint_files.read_weights(path)["x"], torch.arange(3.0))
