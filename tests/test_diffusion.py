"""The generator on tiny configs: schedules and samplers, the two denoisers, training (the loss
falls, exact resume, NaN stop), its refusal of another VAE, sampling (determinism, bad patterns)
and evaluation with its references."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from common.run_log import read_metrics
from common.training import EXIT_INTERRUPTED, EXIT_NONFINITE, PARENT_ENV
from diffusion import checkpoint as gck
from diffusion.config import DenoiserConfig
from diffusion.evaluate import main as evaluate_main
from diffusion.model import Denoiser
from diffusion.sampling import sample_latents, x0_estimate
from diffusion.schedulers import SAMPLERS, sampler, training_scheduler
from diffusion.train import main as train_main
from vae.train import main as vae_main

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--width",
    "32",
    "--depth",
    "2",
    "--cond-dim",
    "16",
    "--batch-size",
    "32",
    "--warmup-steps",
    "5",
    "--no-progress",
    "--threads",
    "1",
    "--log-every",
    "1",
    "--eval-every",
    "5",
    "--checkpoint-every",
    "5",
]


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, env=_env()
    )
    if check and p.returncode != 0:
        raise AssertionError(p.stderr)
    return p


def _env() -> dict:
    return os.environ | {
        "SPECKLE_VAE_CACHE": os.environ["SPECKLE_VAE_CACHE"],
        "HF_HUB_OFFLINE": "1",
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """Simulated pairs at 32 px (train and held-out handwriting), and two tiny VAEs."""
    root = tmp_path_factory.mktemp("gen")
    old = os.environ.get("SPECKLE_VAE_CACHE")
    os.environ["SPECKLE_VAE_CACHE"] = str(root / "cache")
    train, held = root / "train", root / "held"
    _run("speckle", "mmf", "--n", "96", "--size", "32", "--seed", "0", "--out", str(train))
    _run(
        "speckle",
        "mmf",
        "--n",
        "24",
        "--size",
        "32",
        "--seed",
        "1",
        "--digits",
        "test",
        "--out",
        str(held),
    )
    vaes = []
    for seed in (0, 1):
        run = root / f"vae{seed}"
        argv = [
            "--data",
            str(train),
            "--out",
            str(run),
            "--preset",
            "demo",
            "--image-size",
            "32",
            "--latent-dim",
            "16",
            "--batch-size",
            "16",
            "--max-steps",
            "4",
            "--seed",
            str(seed),
            "--no-progress",
            "--threads",
            "1",
            "--beta",
            "0.01",
        ]
        assert vae_main(argv) == 0
        vaes.append(run)
    yield {"root": root, "train": train, "held": held, "vae": vaes[0], "other_vae": vaes[1]}
    if old is None:
        os.environ.pop("SPECKLE_VAE_CACHE", None)
    else:
        os.environ["SPECKLE_VAE_CACHE"] = old


def _train(world, out: Path, steps: int, extra: list[str] = ()) -> int:
    argv = [
        "--vae",
        str(world["vae"]),
        "--data",
        str(world["train"]),
        "--out",
        str(out),
        "--max-steps",
        str(steps),
        *TINY,
        *extra,
    ]
    return train_main(argv)


@pytest.fixture(scope="module")
def generator(world) -> Path:
    out = world["root"] / "gen"
    assert _train(world, out, 60, ["--lr", "3e-3"]) == 0
    return out


# ------------------------------------------------------------------ schedules and samplers


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_x0_estimate_inverts_the_forward_process(prediction: str) -> None:
    config = DenoiserConfig(latent_dim=8, prediction=prediction)
    sched = training_scheduler(config)
    g = torch.Generator().manual_seed(0)
    x0 = 3 * torch.randn(5, 8, generator=g)  # far outside [-1, 1]: nothing may clip it
    noise = torch.randn(5, 8, generator=g)
    for t in (0, 10, 500, 999):
        tt = torch.full((5,), t)
        xt = sched.add_noise(x0, noise, tt)
        target = noise if prediction == "epsilon" else sched.get_velocity(x0, noise, tt)
        assert torch.allclose(
            x0_estimate(sched, xt, target, torch.tensor(t)), x0, atol=2e-3 * (1 + (t > 900) * 50)
        )


class Oracle(torch.nn.Module):
    """The exact denoiser of data that is one point x*: ε = (x_t − √ᾱ x*)/√(1−ᾱ)."""

    def __init__(self, config: DenoiserConfig, target: torch.Tensor) -> None:
        super().__init__()
        self.config, self.target = config, target
        self.alphas = training_scheduler(config).alphas_cumprod
        self.dummy = torch.nn.Parameter(torch.zeros(()))
        self.register_buffer("latent_mean", torch.zeros(config.latent_dim))
        self.register_buffer("latent_std", torch.ones(config.latent_dim))

    def forward(self, x, t, pattern, keep=None):
        a = self.alphas[t.long()][:, None].float()
        eps = (x - a.sqrt() * self.target) / (1 - a).sqrt()
        if self.config.prediction == "epsilon":
            return eps
        return a.sqrt() * eps - (1 - a).sqrt() * self.target

    def unstandardize(self, x):
        return x

    def standardize(self, mu):
        return mu


@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_every_sampler_lands_on_the_data_point_of_an_exact_denoiser(
    name: str, prediction: str
) -> None:
    """The schedule, spacing and sampler settings agree: with the exact score of a one-point
    distribution at x* = 2.5 (outside [-1, 1], where clip_sample=True would fail), every sampler
    ends at x*."""
    config = DenoiserConfig(latent_dim=6, prediction=prediction)
    target = torch.full((6,), 2.5)
    out = sample_latents(
        Oracle(config, target),
        np.zeros((2, 16, 16)),
        n=3,
        steps=20,
        sampler=name,
        guidance=1.0,
        seed=0,
    ).latents
    assert out.shape == (2, 3, 6)
    np.testing.assert_allclose(out, 2.5, atol=0.05)


class Blind(Oracle):
    """A denoiser that ignores its input (ε = 0): a sample is its starting noise, scaled, so
    two samples differ exactly when their noise does."""

    def forward(self, x, t, pattern, keep=None):
        return torch.zeros_like(x)


def test_noise_is_drawn_per_pattern_and_sample_and_repeats_by_seed() -> None:
    """Sample j of two different patterns gets its own noise (not one draw shared by every
    pattern), the same pattern gets the same noise whatever is sampled beside it, and the seed
    decides it."""
    config = DenoiserConfig(latent_dim=6, prediction="epsilon")
    blind = Blind(config, torch.zeros(6))
    rng = np.random.default_rng(0)
    a, b = rng.random((16, 16)), rng.random((16, 16))

    def draw(patterns, seed=0):
        return sample_latents(
            blind, np.stack(patterns), n=3, steps=4, sampler="ddim", guidance=1.0, seed=seed
        ).latents

    both = draw([a, b])
    assert not np.allclose(both[0], both[1])  # pattern a's sample j is not pattern b's
    np.testing.assert_array_equal(draw([b])[0], both[1])  # b alone: the same samples
    np.testing.assert_array_equal(draw([b, a])[1], both[0])
    np.testing.assert_array_equal(draw([a, b]), both)
    assert not np.allclose(draw([a, b], seed=1), both)
    # The noise of all 6 rows is independent: no two rows are equal or strongly correlated.
    flat = both.reshape(6, -1)
    c = np.corrcoef(flat)
    assert np.abs(c[~np.eye(6, dtype=bool)]).max() < 0.99


@pytest.mark.parametrize("strength", [0.2, 0.5])
def test_a_start_is_noised_to_its_strength_and_run_from_there(strength: float) -> None:
    """SDEdit from a start latent: with ε = 0, DDIM's deterministic steps undo exactly the
    scaling of the noised start, so a sample is start + ε·√((1 − ᾱ)/ᾱ) at the first timestep
    run (strength · 1000 − 1 with trailing spacing), and its noise is the row's own."""
    config = DenoiserConfig(latent_dim=6, prediction="epsilon")
    blind = Blind(config, torch.zeros(6))
    patterns = np.random.default_rng(0).random((2, 16, 16))
    start = np.array([[3.0] * 6, [-1.0] * 6], np.float32)
    kw = dict(n=4, steps=10, sampler="ddim", guidance=1.0, seed=0)
    out = sample_latents(blind, patterns, start=start, strength=strength, **kw).latents
    noise = sample_latents(blind, patterns, **kw).latents  # from t = 999: ε / √ᾱ₉₉₉
    a = training_scheduler(config).alphas_cumprod
    first = round(strength * 1000) - 1
    eps = noise * a[999].sqrt().item()
    expected = start[:, None] + eps * np.sqrt((1 - a[first].item()) / a[first].item())
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
    # A weaker start keeps the samples nearer it.
    spread = np.abs(out - start[:, None]).mean()
    assert spread < np.abs(noise).mean()


def test_a_start_needs_its_shape_and_a_strength_in_range() -> None:
    config = DenoiserConfig(latent_dim=6, prediction="epsilon")
    oracle = Oracle(config, torch.full((6,), 2.5))
    patterns = np.zeros((2, 16, 16))
    with pytest.raises(ValueError, match="strength"):
        sample_latents(oracle, patterns, start=np.zeros((2, 6)), strength=0.0)
    with pytest.raises(ValueError, match="start must be"):
        sample_latents(oracle, patterns, start=np.zeros((3, 6)), strength=0.5)
    # strength 1: pure noise whatever the start, so the exact denoiser still lands on x*.
    out = sample_latents(
        oracle, patterns, n=2, steps=20, start=np.zeros((2, 6)), strength=1.0, guidance=1.0
    )
    np.testing.assert_allclose(out.latents, 2.5, atol=0.05)


def test_sampler_settings_are_the_papers() -> None:
    config = DenoiserConfig(prediction="v_prediction")
    for name in SAMPLERS:
        s = sampler(name, config)
        assert s.config.beta_schedule == "squaredcos_cap_v2"
        assert s.config.num_train_timesteps == 1000
        assert s.config.timestep_spacing == "trailing"
        assert s.config.prediction_type == "v_prediction"
        assert getattr(s.config, "clip_sample", False) is False
        s.set_timesteps(5)
        assert int(s.timesteps[0]) == 999  # few steps start from pure noise
    assert sampler("dpm++", config).config.algorithm_type == "dpmsolver++"


# ------------------------------------------------------------------ denoisers


@pytest.mark.parametrize("arch", ["mlp-adaln", "seed-unet1d"])
def test_denoisers_map_latents_and_ignore_the_pattern_when_dropped(arch: str) -> None:
    config = DenoiserConfig(
        arch=arch,
        latent_dim=32,
        width=16,
        depth=2,
        cond_dim=8,
        channels=(4, 8, 8),
        bottleneck=8,
        heads=2,
    )
    model = Denoiser(config)
    for p in model.parameters():  # leave the zero initialization, so outputs depend on inputs
        torch.nn.init.normal_(p, std=0.2)
    x, t = torch.randn(4, 32), torch.tensor([0, 10, 500, 999])
    pa, pb = torch.rand(4, 16, 16), torch.rand(4, 16, 16)
    keep = torch.tensor([True, True, False, False])
    ya, yb = model(x, t, pa, keep), model(x, t, pb, keep)
    assert ya.shape == (4, 32)
    assert torch.allclose(ya[2:], yb[2:])  # dropped: the null embedding, whatever the pattern
    assert not torch.allclose(ya[:2], yb[:2])


def test_adaln_zero_starts_at_zero_output() -> None:
    model = Denoiser(DenoiserConfig(latent_dim=32, width=16, depth=2, cond_dim=8))
    assert (
        torch.count_nonzero(
            model(torch.randn(3, 32), torch.tensor([1, 2, 3]), torch.rand(3, 16, 16))
        )
        == 0
    )


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="arch"):
        DenoiserConfig(arch="transformer")
    with pytest.raises(ValueError, match="divide"):
        DenoiserConfig(arch="seed-unet1d", latent_dim=20)
    with pytest.raises(ValueError, match="unknown"):
        DenoiserConfig.from_dict({"arch": "mlp-adaln", "evil": 1})


# ------------------------------------------------------------------ training


def test_training_lowers_the_loss_and_records_the_vae(world, generator: Path) -> None:
    rows = [r for r in read_metrics(generator / "metrics.jsonl") if r["split"] == "train"]
    assert len(rows) == 60
    first = np.mean([r["loss"] for r in rows[:10]])
    last = np.mean([r["loss"] for r in rows[-10:]])
    assert last < 0.9 * first
    reg_first = np.mean([r["reg_loss"] for r in rows[:5]])
    assert np.mean([r["reg_loss"] for r in rows[-5:]]) < reg_first
    gen = gck.load_generator(generator)
    from vae.checkpoint import load_checkpoint

    assert gen.vae_id == load_checkpoint(world["vae"]).id
    assert gen.config["step"] == 60 and gen.regressor is not None
    assert gen.config["command"].startswith("python -m diffusion.train --vae")
    # The standardization is in the weights: the stored mean is the training latents' mean.
    assert float(gen.model.latent_std.min()) > 0


def test_resume_continues_exactly(world, tmp_path: Path) -> None:
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert _train(world, straight, 10) == 0
    assert _train(world, split, 5) == 0
    assert _train(world, split, 10, ["--resume"]) == 0
    a, b = gck.load_generator(straight), gck.load_generator(split)
    for x, y in ((a.model, b.model), (a.regressor, b.regressor)):
        for (k, v), w in zip(x.state_dict().items(), y.state_dict().values(), strict=True):
            assert torch.equal(v, w), k
    steps = [r["step"] for r in read_metrics(split / "metrics.jsonl") if r["split"] == "train"]
    assert steps == list(range(1, 11))


def test_a_run_refuses_another_vae_and_an_overwrite(world, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert _train(world, run, 5) == 0
    assert _train(world, run, 5) == 2
    assert "already holds a run" in capsys.readouterr().err
    argv = [
        "--vae",
        str(world["other_vae"]),
        "--data",
        str(world["train"]),
        "--out",
        str(run),
        "--max-steps",
        "10",
        "--resume",
        *TINY,
    ]
    assert train_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "belongs to the VAE" in err and len(err.splitlines()) == 1


def test_nonfinite_loss_stops_training(world, tmp_path: Path, capsys) -> None:
    assert (
        _train(world, tmp_path / "nan", 30, ["--lr", "1e30", "--grad-clip", "0"]) == EXIT_NONFINITE
    )
    assert "non-finite loss" in capsys.readouterr().err


def test_exit_with_parent_saves_and_stops_when_the_launcher_is_gone(
    world, tmp_path: Path, monkeypatch
) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    monkeypatch.setenv(PARENT_ENV, str(dead.pid))
    run = tmp_path / "run"
    try:
        code = _train(world, run, 1000, ["--exit-with-parent", "--deterministic"])
    finally:
        torch.use_deterministic_algorithms(False)  # a process-wide switch: leave it as it was
    assert code == EXIT_INTERRUPTED
    assert gck.load_generator(run).config["step"] == 1  # saved after the first step, then stopped
    monkeypatch.setenv(PARENT_ENV, str(os.getppid()))  # the launcher alive: training goes on
    assert _train(world, run, 3, ["--resume", "--exit-with-parent"]) == 0
    assert gck.load_generator(run).config["step"] == 3


def test_data_without_patterns_is_one_line_error(world, tmp_path: Path, capsys) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    for i in range(20):
        Image.fromarray(np.full((32, 32), 1000 + i, np.uint16)).save(plain / f"{i}.png")
    argv = [
        "--vae",
        str(world["vae"]),
        "--data",
        str(plain),
        "--out",
        str(tmp_path / "r2"),
        "--max-steps",
        "5",
        *TINY,
    ]
    assert train_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "pattern" in err and str(plain) in err


# ------------------------------------------------------------------ sampling


def _patterns(world, tmp_path: Path) -> list[Path]:
    files = sorted((world["held"] / "patterns").glob("*.png"))[:2]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    return [*files, bad]


def test_sample_is_deterministic_by_seed_and_skips_bad_patterns(
    world, generator: Path, tmp_path: Path
) -> None:
    good_a, good_b, bad = _patterns(world, tmp_path)
    common = ["--checkpoint", str(generator), "--n", "3", "--steps", "5"]

    def run(
        out: str, seed: str, *patterns: Path, check: bool = True
    ) -> subprocess.CompletedProcess:
        return _run(
            "diffusion.sample",
            *common,
            "--seed",
            seed,
            "--out",
            str(tmp_path / out),
            "--pattern",
            *map(str, patterns),
            check=check,
        )

    p = run("a", "7", good_a, bad, good_b, check=False)
    assert p.returncode == 1
    skipped = [line for line in p.stderr.splitlines() if "broken.png" in line]
    assert len(skipped) == 1 and skipped[0].startswith("skipped")
    import pandas as pd

    labels = pd.read_csv(tmp_path / "a" / "labels.csv")
    assert len(labels) == 6 and set(labels["sample"]) == {0, 1, 2}
    assert labels["pattern"].str.endswith(good_a.name).sum() == 3
    img = Image.open(tmp_path / "a" / labels["file"][0])
    assert img.mode == "I;16" and img.size == (32, 32)

    run("b", "7", good_a, good_b)
    run("c", "8", good_a, good_b)
    run("d", "7", good_a)  # alone: the same samples as beside another pattern
    files = [f"images/0000_00{j}.png" for j in range(3)]
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
        # Beside another pattern the batch is bigger, and matmul kernels may sum in another
        # order: equal to float rounding, not to the bit.
        alone = np.asarray(Image.open(tmp_path / "d" / f), np.int64)
        beside = np.asarray(Image.open(tmp_path / "b" / f), np.int64)
        assert np.abs(alone - beside).max() <= 64
    assert any(
        (tmp_path / "b" / f).read_bytes() != (tmp_path / "c" / f).read_bytes() for f in files
    )


def test_sample_reads_patterns_by_frame_name(world, generator: Path, tmp_path: Path) -> None:
    """A recording's own pattern (`rec.h5#/patterns#0`) gives the samples that the same pattern
    as a PNG gives. A stack or recording named without a frame index gives one pattern per frame,
    and a bad frame name is skipped in one line naming the file."""
    import h5py
    import pandas as pd
    import scipy.io
    import tifffile

    files = sorted((world["held"] / "patterns").glob("*.png"))[:3]
    patterns = np.stack([np.asarray(Image.open(f)) for f in files])  # (3, 16, 16) uint8
    rec = tmp_path / "rec.h5"
    with h5py.File(rec, "w") as f:
        f["speckle"] = np.random.default_rng(0).integers(0, 60000, (3, 32, 32), np.uint16)
        f["patterns"] = patterns
    tifffile.imwrite(tmp_path / "slm.tif", patterns, photometric="minisblack")
    np.save(tmp_path / "slm.npy", patterns)
    (tmp_path / "mat").mkdir()
    scipy.io.savemat(tmp_path / "mat" / "slm.mat", {"patterns": patterns.transpose(1, 2, 0)})
    (tmp_path / "mat" / "dataset.toml").write_text('axes = "HWN"\n')
    common = ["--checkpoint", str(generator), "--n", "2", "--steps", "3", "--seed", "5"]

    def run(out: str, *names: str, check: bool = True) -> subprocess.CompletedProcess:
        out_dir = str(tmp_path / out)
        return _run("diffusion.sample", *common, "--out", out_dir, "--pattern", *names, check=check)

    run("png", str(files[0]))
    run("rec", f"{rec}#/patterns#0")
    for j in range(2):
        png = (tmp_path / "png" / f"images/0000_00{j}.png").read_bytes()
        assert (tmp_path / "rec" / f"images/0000_00{j}.png").read_bytes() == png
    assert pd.read_csv(tmp_path / "rec" / "labels.csv")["pattern"][0] == f"{rec}#/patterns#0"

    tif, npy, mat = tmp_path / "slm.tif", tmp_path / "slm.npy", tmp_path / "mat" / "slm.mat"
    names = [str(rec), f"{tif}#1", str(npy), f"{mat}#patterns#2", f"{rec}#/patterns#7"]
    p = run("many", *names, check=False)
    assert p.returncode == 1
    skipped = [line for line in p.stderr.splitlines() if line.startswith("skipped")]
    assert skipped == [f"skipped {rec}#/patterns: no frame #7 (3 frames: #0 to #2)"]
    labels = pd.read_csv(tmp_path / "many" / "labels.csv")
    used = list(dict.fromkeys(labels["pattern"]))
    whole = [f"{rec}#/patterns#{k}" for k in range(3)] + [f"{npy}#{k}" for k in range(3)]
    assert used == [*whole[:3], f"{tif}#1", *whole[3:], f"{mat}#patterns#2"]
    assert len(labels) == 2 * len(used)


def test_sample_refuses_a_mismatched_vae(world, generator: Path, tmp_path: Path) -> None:
    good, _, _ = _patterns(world, tmp_path)
    p = _run(
        "diffusion.sample",
        "--checkpoint",
        str(generator),
        "--vae",
        str(world["other_vae"]),
        "--pattern",
        str(good),
        "--out",
        str(tmp_path / "x"),
        check=False,
    )
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and "belongs to the VAE" in p.stderr
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------ evaluation


def test_evaluate_scores_the_generator_beside_every_reference_with_intervals(
    world, generator: Path, tmp_path: Path
) -> None:
    out = tmp_path / "eval.json"
    p = _run(
        "diffusion.evaluate",
        "--checkpoint",
        str(generator),
        "--data",
        str(world["held"]),
        "--n-patterns",
        "12",
        "--samples",
        "2",
        "--steps",
        "5",
        "--tm-steps",
        "30",
        "--sweep-patterns",
        "4",
        "--json",
        "--out",
        str(out),
    )
    result = json.loads(p.stdout)
    assert result == json.loads(out.read_text())
    for key in (
        "pcc",
        "ssim",
        "contrast_ratio",
        "grain_ratio",
        "classifier_accuracy_ratio",
        "vae_ceiling_pcc",
        "regressor_pcc",
        "nearest_pcc",
        "random_pcc",
        "tm_fit_pcc",
    ):
        assert np.isfinite(result[key]), key
    assert -1 <= result["pcc"] <= 1 and result["n_patterns"] == 12
    assert result["mask"].startswith("simulation.json core")
    # The references order as physics says, whatever the (4-step) VAE: through one fibre the
    # nearest training pattern's speckle beats a random one.
    assert result["nearest_pcc"] > result["random_pcc"] + 0.1
    assert result["nearest_cosine"] > 0.5
    assert set(result["sweeps"]["steps"]) == {"5", "10", "20", "50"}
    assert set(result["sweeps"]["samplers"]) == set(SAMPLERS)
    assert result["train_data_source"] == "recorded"
    # The held-out frames are the VAE's own fibre: few beyond its 99th-percentile −ELBO.
    assert 0 <= result["foreign_share"] <= 1 and result["foreign_reference"]
    # Every headline PCC carries a bootstrap 95% interval around it, and a sweep point is the
    # mean over every draw of every pattern, with its own interval.
    rows = [(result["pcc"], result["pcc_ci95"])]
    rows += [(result["mean_of_k"]["pcc"], result["mean_of_k"]["pcc_ci95"])]
    rows += [(m["pcc"], m["pcc_ci95"]) for m in result["references"].values()]
    assert len(rows) == 7
    for mean, (low, high) in rows:
        assert low <= mean <= high and low < high
    sw = result["sweeps"]
    assert sw["samples"] == 2 and sw["patterns"] == 4
    for factor in ("steps", "guidance", "samplers"):
        for label, value in sw[factor].items():
            low, high = sw[f"{factor}_ci95"][label]
            assert low <= value <= high and low < high


def test_evaluate_rebuilds_a_missing_training_set_from_the_record(
    world, generator: Path, tmp_path: Path, capsys
) -> None:
    """A generator whose training folder is gone (a fresh clone) is still scored: its set is
    simulated again from the record into the cache, checked against the recorded intensity
    scale, and reused. Without a record, one line names --train-data; a record the simulator
    no longer reproduces is refused."""
    import shutil

    moved = tmp_path / "gen"
    shutil.copytree(generator / "checkpoint", moved, ignore=shutil.ignore_patterns("resume"))
    config_file = moved / "config.json"
    config = json.loads(config_file.read_text())
    config["dataset"]["path"] = str(tmp_path / "gone")
    config_file.write_text(json.dumps(config))
    args = [
        "diffusion.evaluate",
        "--checkpoint",
        str(moved),
        "--data",
        str(world["held"]),
        "--n-patterns",
        "6",
        "--samples",
        "2",
        "--steps",
        "3",
        "--tm-steps",
        "10",
        "--no-sweeps",
        "--no-progress",
        "--json",
    ]
    first = _run(*args)
    r = json.loads(first.stdout)
    assert r["train_data_source"] == "simulated from the generator's record"
    assert "intensity_scale matched" in r["train_data_check"]
    for key in (
        "vae_ceiling_pcc",
        "regressor_pcc",
        "nearest_pcc",
        "random_pcc",
        "tm_fit_pcc",
        "classifier_accuracy_ratio",
    ):
        assert np.isfinite(r[key]), key
    assert "simulating it again" in first.stderr
    # The rest in this process (the same main()), which skips the interpreter's start-up.
    capsys.readouterr()
    assert evaluate_main(args[1:]) == 0
    second = capsys.readouterr()
    assert "simulating it again" not in second.err  # the cached set is reused
    assert json.loads(second.out)["train_data"] == r["train_data"]

    tampered = dict(config["dataset"]["simulation"], intensity_scale=1.0)
    config["dataset"]["simulation"] = tampered
    config_file.write_text(json.dumps(config))
    assert evaluate_main(args[1:]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "intensity_scale" in errors[0]

    config["dataset"]["simulation"] = None
    config_file.write_text(json.dumps(config))
    assert evaluate_main(args[1:]) == 2
    err = capsys.readouterr().err
    assert "--train-data" in err and len(err.strip().splitlines()) == 1


def test_diversity_reports_the_truth_of_a_moving_fibre(
    world, generator: Path, tmp_path: Path
) -> None:
    states = tmp_path / "states"
    _run(
        "speckle",
        "mmf",
        "--n",
        "16",
        "--size",
        "32",
        "--seed",
        "2",
        "--digits",
        "test",
        "--states",
        "4",
        "--bend",
        "0.8",
        "--out",
        str(states),
    )
    p = _run(
        "diffusion.evaluate",
        "--checkpoint",
        str(generator),
        "--data",
        str(states),
        "--train-data",
        str(world["train"]),
        "--n-patterns",
        "8",
        "--samples",
        "3",
        "--steps",
        "5",
        "--tm-steps",
        "0",
        "--no-sweeps",
        "--json",
    )
    div = json.loads(p.stdout)["diversity"]
    assert div["states"] == 4 and div["expected_state_pcc"] == pytest.approx(0.8**4)
    # Two states' outputs of one pattern correlate about as μ⁴ predicts.
    assert abs(div["state_state_pcc"] - 0.8**4) < 0.2
    assert -1 <= div["sample_sample_pcc"] <= 1 and div["mean_std_true"] > 0
    # Reconstructions through the VAE: the same figures, also measured.
    assert -1 <= div["vae_state_state_pcc"] <= 1 and div["mean_std_vae"] >= 0


def test_torchrun_two_ranks_match_single_process(world, tmp_path: Path) -> None:
    """DDP over two gloo ranks, the regressor included (every parameter must be in its graph),
    ends with the weights of one process on the same global batches."""
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    argv = ["--vae", str(world["vae"]), "--data", str(world["train"]), "--max-steps", "6", *TINY]
    assert train_main([*argv, "--out", str(single)]) == 0
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "diffusion.train",
        *argv,
        "--out",
        str(ddp),
    ]
    res = subprocess.run(cmd, env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = gck.load_generator(single), gck.load_generator(ddp)
    assert b.config["world_size"] == 2
    assert b.config["command"].startswith("torchrun --nproc_per_node=2 -m diffusion.train")
    digests = re.findall(r"rank (\d): final weights (\w+)", res.stderr)
    assert sorted(r for r, _ in digests) == ["0", "1"] and digests[0][1] == digests[1][1]
    for x, y in ((a.model, b.model), (a.regressor, b.regressor)):
        for key, value in x.state_dict().items():
            torch.testing.assert_close(y.state_dict()[key], value, rtol=1e-4, atol=1e-5, msg=key)


def test_sample_never_replaces_a_folder_it_did_not_write(
    world, generator: Path, tmp_path: Path
) -> None:
    good, _, _ = _patterns(world, tmp_path)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    args = [
        "diffusion.sample",
        "--checkpoint",
        str(generator),
        "--pattern",
        str(good),
        "--n",
        "1",
        "--steps",
        "2",
    ]
    p = _run(*args, "--out", str(precious), check=False)
    assert p.returncode == 2 and "--overwrite" in p.stderr and p.stderr.count("\n") == 1
    assert (precious / "notes.txt").read_text() == "keep me"
    out = tmp_path / "samples"
    _run(*args, "--out", str(out))
    _run(*args, "--out", str(out), "--seed", "3")  # an earlier sample output is replaced
    assert sorted(p.name for p in out.iterdir()) == ["images", "labels.csv"]


def test_true_speckle_of_a_dataset_pattern_is_its_recorded_frame(world) -> None:
    """The page's truth for a drawn pattern comes from the simulator's forward model: for a
    dataset's own pattern it must give back that sample's frame, as the VAE reads it."""
    from diffusion.data import dataset_patterns, open_dataset
    from explorer.generate import true_speckle
    from vae.checkpoint import load_checkpoint

    vae = load_checkpoint(world["vae"])
    held = open_dataset(vae, world["held"])
    patterns = dataset_patterns(held, 16)
    for i in (0, 5, 11):
        truth = true_speckle(held.root, patterns[i], vae)
        frame = held.image(i)
        assert truth.shape == frame.shape
        # The stored pattern is 8-bit: close, not equal.
        assert np.corrcoef(truth.ravel(), frame.ravel())[0, 1] > 0.99
        assert np.abs(truth - frame).max() < 0.1


def test_training_patterns_are_rebuilt_from_the_simulation_record(
    world, generator: Path, tmp_path
) -> None:
    """A fresh clone has no training set: the out-of-distribution check draws its patterns again
    from the record in the generator's config, as the simulator drew them."""
    from diffusion.data import dataset_patterns, open_dataset
    from explorer.generate import training_patterns
    from vae.checkpoint import load_checkpoint

    vae = load_checkpoint(world["vae"])
    gen = gck.load_generator(generator)
    stored = dataset_patterns(open_dataset(vae, world["train"]), 16)
    gen.config["dataset"]["path"] = str(tmp_path / "not-here")
    rebuilt = training_patterns(gen, vae)
    assert rebuilt.shape == stored.shape
    assert np.abs(rebuilt - stored).max() < 1 / 255  # the stored patterns are 8-bit PNGs
    gen.config["dataset"]["simulation"] = None
    with pytest.raises(ValueError, match="not here"):
        training_patterns(gen, vae)
