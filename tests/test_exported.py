"""The "exported" checkpoint kind (vae.exported, vae.import_exported): an MLP VAE trained and
exported by a script outside the repository loads, encodes and decodes as its own code does; a
crafted .pt2 runs code under torch.export.load but is refused here, unrun, in one line naming the
file; shapes, inputs and outputs that do not fit are refused; vae.evaluate, explorer.encode and
diffusion.train work on it."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from common.checkpoint_files import CheckpointError
from tests.foreign_models import MLP_DZ, MLP_SIZE, exported_mlp
from vae.checkpoint import load_checkpoint
from vae.exported import DECODER, ENCODER, checkpoint_id
from vae.exported_model import ExportedVAE, read_program
from vae.import_exported import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mlp(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mlp")
    ck = exported_mlp(root / "elsewhere", root / "models" / "mlp")
    return {"root": root, "src": root / "elsewhere", "ck": ck}


def test_an_exported_mlp_loads_and_matches_its_own_programs(mlp) -> None:
    ck = load_checkpoint(mlp["ck"])
    assert ck.kind == "exported" and isinstance(ck.model, ExportedVAE)
    c = ck.config
    assert c["model"] == {"image_size": MLP_SIZE, "latent_dim": MLP_DZ, "in_channels": 1}
    assert c["preprocessing"]["normalization"]["mode"] == "max"
    for name in (ENCODER, DECODER):
        digest = hashlib.sha256((mlp["src"] / name).read_bytes()).hexdigest()
        assert c["programs"][name] == digest == c["import"]["source"][name]["sha256"]
        assert (mlp["ck"] / name).read_bytes() == (mlp["src"] / name).read_bytes()
    assert ck.id == checkpoint_id(c["programs"]) == c["weights_sha256"]
    # Against the user's programs loaded directly (trusted here: we wrote them).
    enc = torch.export.load(mlp["src"] / ENCODER).module()
    dec = torch.export.load(mlp["src"] / DECODER).module()
    x = torch.rand(5, 1, MLP_SIZE, MLP_SIZE)
    with torch.inference_mode():
        post = ck.model.encode(x)
        mu, logvar = enc(x)
        assert torch.equal(post.mean, mu) and torch.equal(post.logvar, logvar.clamp(-30, 20))
        assert torch.equal(ck.model.decode(mu), dec(mu))
        recon, _ = ck.model(x, sample=False)
        assert recon.shape == x.shape
    with pytest.raises(ValueError, match="expected input of shape"):
        ck.model.encode(torch.rand(2, 1, 8, 8))
    ck.model.eval()  # the programs have no train mode; the wrapper only sets its flag
    assert not ck.model.training


def test_lazy_open_reads_no_torch_and_checks_the_hashes(mlp, tmp_path: Path) -> None:
    code = (
        "import sys; from vae.checkpoint import load_checkpoint; "
        f"ck = load_checkpoint({str(mlp['ck'])!r}, lazy=True); "
        "assert 'torch' not in sys.modules, 'torch imported'; print(ck.kind, ck.id)"
    )
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["exported", load_checkpoint(mlp["ck"], lazy=True).id]
    altered = tmp_path / "altered"
    altered.mkdir()
    for f in mlp["ck"].iterdir():
        (altered / f.name).write_bytes(f.read_bytes())
    (altered / DECODER).write_bytes((altered / DECODER).read_bytes()[:-10])
    with pytest.raises(CheckpointError, match=r"decoder.pt2: content hash does not match"):
        load_checkpoint(altered, lazy=True)


# ------------------------------------------------------------------ crafted archives


def _rewrite(src: Path, dst: Path, edit: Callable[[str, bytes], bytes | None], extra=None) -> Path:
    """Copy a .pt2 archive, passing each entry (name below the root folder, bytes) through
    `edit`; None drops it. `extra` adds entries."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        root = zin.namelist()[0].split("/")[0]
        for name in zin.namelist():
            body = edit(name[len(root) + 1 :], zin.read(name))
            if body is not None:
                zout.writestr(name, body)
        for name, body in (extra or {}).items():
            zout.writestr(f"{root}/{name}", body)
    return dst


class Marker:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def _json_edit(entry: str, change: Callable[[dict], None]):
    def edit(name: str, body: bytes) -> bytes:
        if name != entry:
            return body
        obj = json.loads(body)
        change(obj)
        return json.dumps(obj).encode()

    return edit


def _pickled_weight(marker: Path):
    def edit(name: str, body: bytes) -> bytes:
        if name == "data/weights/model_weights_config.json":
            obj = json.loads(body)
            next(iter(obj["config"].values()))["use_pickle"] = True
            return json.dumps(obj).encode()
        if name == "data/weights/weight_0":
            return pickle.dumps(Marker(marker))
        return body

    return edit


def _pickled_sample_inputs(marker: Path):
    def edit(name: str, body: bytes) -> bytes:
        if name != "data/sample_inputs/model.pt":
            return body
        buf = io.BytesIO()
        torch.save(((torch.zeros(1),), {"evil": Marker(marker)}), buf)
        return buf.getvalue()

    return edit


def _expr_code(marker: Path):
    code = f"__import__('pathlib').Path({str(marker)!r}).touch() or 1"

    def change(obj: dict) -> None:
        old = next(iter(obj["range_constraints"]))
        obj["range_constraints"][code] = obj["range_constraints"].pop(old)

    return _json_edit("models/model.json", change)


def _os_target(marker: Path):
    def change(obj: dict) -> None:
        obj["graph_module"]["graph"]["nodes"][0]["target"] = "torch.os.system"

    return _json_edit("models/model.json", change)


def _guards(marker: Path):
    def change(obj: dict) -> None:
        obj["guards_code"] = [f"__import__('pathlib').Path({str(marker)!r}).touch()"]

    return _json_edit("models/model.json", change)


def _file_reader(marker: Path):
    def change(obj: dict) -> None:
        obj["graph_module"]["graph"]["nodes"][0]["target"] = "torch.ops.aten.from_file.default"

    return _json_edit("models/model.json", change)


def _malformed(marker: Path):
    def change(obj: dict) -> None:
        obj["graph_module"]["graph"]["nodes"].append(5)

    return _json_edit("models/model.json", change)


CRAFTED = {
    "a malformed program": (_malformed, "malformed program (TypeError"),
    "a call that reads files": (_file_reader, "graph calls 'torch.ops.aten.from_file.default'"),
    "pickled weight": (_pickled_weight, "is a pickle"),
    "pickled sample inputs": (_pickled_sample_inputs, "sample inputs hold more than tensors"),
    "code in a shape expression": (_expr_code, "holds code"),
    "a call outside ATen": (_os_target, "graph calls 'torch.os.system'"),
    "guard code": (_guards, "guard code"),
}


@pytest.mark.parametrize("kind", ["pickled weight", "pickled sample inputs", "guard code"])
def test_torch_export_load_runs_a_crafted_payload(mlp, tmp_path: Path, kind: str) -> None:
    """Why programs are vetted and loaded only from the command line and the model roots: the
    plain loader unpickles a weight marked use_pickle, falls back to a full unpickle of sample
    inputs the safe unpickler refuses, and runs a program's guard code at its first call."""
    marker = tmp_path / "ran"
    evil = _rewrite(mlp["src"] / ENCODER, tmp_path / "evil.pt2", CRAFTED[kind][0](marker))
    with contextlib.suppress(Exception):  # each fails, after running its payload
        torch.export.load(evil).module()(torch.rand(1, 1, MLP_SIZE, MLP_SIZE))
    assert marker.exists()


@pytest.mark.parametrize("kind", list(CRAFTED))
def test_a_crafted_program_is_refused_in_one_line_unrun(
    mlp, tmp_path: Path, kind: str, capsys
) -> None:
    craft, message = CRAFTED[kind]
    marker = tmp_path / "ran"
    evil = _rewrite(mlp["src"] / ENCODER, tmp_path / "encoder.pt2", craft(marker))
    argv = [
        "--encoder",
        str(evil),
        "--decoder",
        str(mlp["src"] / DECODER),
        "--out",
        str(tmp_path / "m"),
    ]
    argv += ["--image-size", str(MLP_SIZE), "--latent-dim", str(MLP_DZ)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"error: {evil}:") and message in err, err
    assert not marker.exists() and not (tmp_path / "m").exists()


def test_compiled_code_or_unknown_entries_are_refused(mlp, tmp_path: Path) -> None:
    so = {"data/aotinductor/model/model.so": b"\x7fELF"}
    evil = _rewrite(mlp["src"] / DECODER, tmp_path / "d.pt2", lambda n, b: b, extra=so)
    with pytest.raises(CheckpointError, match=r"d.pt2: unexpected entry 'data/aotinductor"):
        read_program(evil, 1)
    (tmp_path / "plain.pt2").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(CheckpointError, match=r"plain.pt2: not a torch.export archive"):
        read_program(tmp_path / "plain.pt2", 1)


def test_mismatched_shapes_and_unexpected_graphs_name_the_file(mlp, tmp_path: Path, capsys) -> None:
    enc, dec = str(mlp["src"] / ENCODER), str(mlp["src"] / DECODER)

    def run(*args: str) -> str:
        assert main([*args, "--out", str(tmp_path / "m")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        return err

    sizes = ["--image-size", str(MLP_SIZE), "--latent-dim", str(MLP_DZ)]
    err = run(
        "--encoder", enc, "--decoder", dec, "--image-size", str(MLP_SIZE), "--latent-dim", "7"
    )
    assert err.startswith(f"error: {enc}: on input (1, 1, {MLP_SIZE}, {MLP_SIZE}) returned")
    err = run("--encoder", enc, "--decoder", dec, "--image-size", "16", "--latent-dim", str(MLP_DZ))
    assert err.startswith(f"error: {enc}: fails on input (1, 1, 16, 16)")
    # The decoder where the encoder goes: one output where two are expected.
    err = run("--encoder", dec, "--decoder", dec, *sizes)
    assert err.startswith(f"error: {dec}:") and "expected 2 tensor output(s)" in err

    class TwoInputs(torch.nn.Module):
        def forward(self, x, y):
            return x + y

    two = tmp_path / "two.pt2"
    b = torch.export.Dim("b")
    ep = torch.export.export(
        TwoInputs(), (torch.rand(2, MLP_DZ), torch.rand(2, MLP_DZ)), dynamic_shapes=({0: b}, {0: b})
    )
    torch.export.save(ep, two)
    err = run("--encoder", enc, "--decoder", str(two), *sizes)
    assert err.startswith(f"error: {two}:") and "expected one tensor input" in err


# ------------------------------------------------------------------ commands on it


@pytest.fixture(scope="module")
def pairs(mlp) -> Path:
    """Simulated pattern/speckle pairs at the MLP's size."""
    out = mlp["root"] / "pairs"
    cmd = [sys.executable, "-m", "speckle", "mmf", "--n", "64", "--size", str(MLP_SIZE)]
    p = subprocess.run(
        [*cmd, "--seed", "0", "--out", str(out)], cwd=ROOT, capture_output=True, text=True
    )
    assert p.returncode == 0, p.stderr
    return out


def test_evaluate_and_encode_run_on_it(mlp, pairs: Path, capsys) -> None:
    # Lazy: these commands import the app's data stack, needed by these two tests only.
    from explorer.encode import main as encode_main
    from vae.evaluate import main as evaluate_main

    assert evaluate_main(["--checkpoint", str(mlp["ck"]), "--data", str(pairs), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["checkpoint_id"] == load_checkpoint(mlp["ck"], lazy=True).id
    assert report["n"] == 64 and np.isfinite(report["mse"]) and np.isfinite(report["ev"])
    assert encode_main(["--checkpoint", str(mlp["ck"]), "--data", str(pairs)]) == 0
    assert "encoded 64 of 64 frames" in capsys.readouterr().err


def test_diffusion_trains_and_samples_on_it(mlp, pairs: Path, tmp_path: Path) -> None:
    from diffusion import checkpoint as gck
    from diffusion.sampling import sample_latents
    from diffusion.train import main as train_main
    from vae.inference import decode

    out = tmp_path / "gen"
    argv = ["--vae", str(mlp["ck"]), "--data", str(pairs), "--out", str(out), "--max-steps", "6"]
    argv += ["--width", "32", "--depth", "2", "--cond-dim", "16", "--batch-size", "16"]
    argv += ["--warmup-steps", "2", "--no-progress", "--threads", "1", "--checkpoint-every", "3"]
    assert train_main(argv) == 0
    gen = gck.load_generator(out)
    vae = load_checkpoint(mlp["ck"])
    assert gen.vae_id == vae.id
    pattern = np.random.default_rng(0).random((1, 16, 16)).astype(np.float32)
    s = sample_latents(gen.model, pattern, 2, 3, "ddim", 1.0, 0)
    images = decode(vae.model, s.latents.reshape(-1, MLP_DZ))
    assert images.shape == (2, MLP_SIZE, MLP_SIZE) and np.isfinite(images).all()


def test_export_checkpoint_refuses_the_exported_kind(mlp, tmp_path: Path) -> None:
    from vae.checkpoint import export_checkpoint

    with pytest.raises(CheckpointError, match="copied as a folder"):
        export_checkpoint(mlp["ck"], tmp_path / "copy")
    assert os.path.isdir(mlp["ck"])


def test_vae_train_refuses_to_fine_tune_it_in_one_line(mlp, pairs: Path, tmp_path, capsys) -> None:
    # Lazy: the training command is needed by this test only.
    from vae.train import main as vae_main

    argv = ["--data", str(pairs), "--out", str(tmp_path / "ft"), "--init-from", str(mlp["ck"])]
    assert vae_main([*argv, "--max-steps", "1", "--no-progress"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert any("cannot be fine-tuned here" in line and "mlp" in line for line in err), err


def test_a_config_that_does_not_fit_the_programs_is_refused_at_load(mlp, tmp_path: Path) -> None:
    """The hashes still match, the sizes do not: the traced shapes say so, in one line naming
    the program, without running it (lazily, at the first read of .model, as the app opens it)."""
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in mlp["ck"].iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    config = json.loads((bad / "config.json").read_text())
    config["model"]["latent_dim"] = MLP_DZ + 1
    (bad / "config.json").write_text(json.dumps(config))
    ck = load_checkpoint(bad, lazy=True)
    with pytest.raises(CheckpointError) as e:
        _ = ck.model
    msg = str(e.value)
    assert msg.startswith(f"{bad / ENCODER}: traced with shapes (s") and "\n" not in msg
    assert (
        f"expected a dynamic batch B and (B, 1, {MLP_SIZE}, {MLP_SIZE}), (B, {MLP_DZ + 1})" in msg
    )


def test_an_uploaded_program_is_never_loaded(mlp, tmp_path: Path) -> None:
    """Programs load from the command line and the model roots only: a .pt2 given to the
    pages' upload reader (which a crafted one would exploit through torch.export.load) is an
    unreadable upload, and its payload does not run."""
    # Lazy: the upload reader is needed by this test only.
    from explorer.uploads import load_uploads
    from frames import Normalization

    marker = tmp_path / "ran"
    evil = _rewrite(mlp["src"] / ENCODER, tmp_path / "model.pt2", _pickled_weight(marker))
    (upload,) = load_uploads("model.pt2", evil.read_bytes(), MLP_SIZE, Normalization())
    assert upload.error and "model.pt2" in upload.error and upload.image is None
    assert not marker.exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.update(kind="onnx"), "unknown checkpoint kind 'onnx'"),
        (lambda c: c.pop("programs"), "'programs' must give"),
        (lambda c: c["model"].update(image_size=0), "bad model config (image_size must be"),
    ],
)
def test_a_bad_exported_config_is_one_line(mlp, tmp_path: Path, change, message: str) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in mlp["ck"].iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    config = json.loads((bad / "config.json").read_text())
    change(config)
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(bad, lazy=True)
    assert str(e.value).startswith(str(bad)) and message in str(e.value), str(e.value)
    assert "\n" not in str(e.value)


def test_it_loads_on_the_device_auto_picks(mlp) -> None:
    ck = load_checkpoint(mlp["ck"], device="auto")
    assert next(ck.model.parameters()).device.type in ("cpu", "cuda", "mps")
    lazy = load_checkpoint(mlp["ck"], device="auto", lazy=True)
    assert next(lazy.model.parameters()).device == next(ck.model.parameters()).device
