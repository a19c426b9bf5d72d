"""The generator's parts one at a time, on tiny configs and seeded data: guidance, the sampler's
determinism, config and checkpoint round-trips, the EMA's resume layout, scoring, the
references, pattern reading and the rebuilt training set's check."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers.training_utils import EMAModel

from diffusion import checkpoint as gck
from diffusion.config import DenoiserConfig
from diffusion.data import simulated_counts
from diffusion.embed import timestep_embedding
from diffusion.loss import diffusion_loss, regressor_loss
from diffusion.model import Denoiser
from diffusion.references import nearest_patterns
from diffusion.sampling import (
    GUIDANCE,
    SAMPLES,
    pattern_key,
    regress_latents,
    row_generators,
    sample_latents,
)
from diffusion.schedulers import SAMPLERS, sampler, training_scheduler
from diffusion.scoring import score, summary
from diffusion.train_config import TrainConfig, parse_args
from diffusion.train_set import CHECKED, check_rebuilt, simulated_dir
from speckle.slm_patterns import to_pattern
from speckle.tm_fit import fit_transmission_matrix

SMALL = DenoiserConfig(latent_dim=8, width=16, depth=2, cond_dim=8)
VAE_ID = "0" * 64


def _random_denoiser(config: DenoiserConfig = SMALL, seed: int = 0) -> Denoiser:
    """A denoiser with every weight drawn (the zero initialization would make outputs 0)."""
    torch.manual_seed(seed)
    model = Denoiser(config)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return model.eval()


class Mixed(torch.nn.Module):
    """Classifier-free guidance written out by hand: uncond + w (cond − uncond), one call each."""

    def __init__(self, model: Denoiser, w: float) -> None:
        super().__init__()
        self.model, self.w, self.config, self.calls = model, w, model.config, []

    def forward(self, x, t, pattern, keep=None):
        self.calls.append(len(x))
        on = torch.ones(len(x), dtype=torch.bool)
        cond = self.model(x, t, pattern, on)
        uncond = self.model(x, t, pattern, ~on)
        return uncond + self.w * (cond - uncond)

    def unstandardize(self, x):
        return self.model.unstandardize(x)


class Counting(torch.nn.Module):
    """A model that records the batch size of every call."""

    def __init__(self, model: Denoiser) -> None:
        super().__init__()
        self.model, self.config, self.calls = model, model.config, []

    def forward(self, x, t, pattern, keep=None):
        self.calls.append((len(x), keep is None))
        return self.model(x, t, pattern, keep)

    def unstandardize(self, x):
        return self.model.unstandardize(x)


def _patterns(k: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((k, 16, 16)).astype(np.float32)


# ------------------------------------------------------------------ guidance and determinism


@pytest.mark.parametrize("w", [0.0, GUIDANCE, 3.0])
def test_guidance_mixes_uncond_and_cond_as_written(w: float) -> None:
    model = _random_denoiser()
    kw = {"n": 3, "steps": 4, "sampler": "ddim", "seed": 5}
    guided = sample_latents(model, _patterns(), guidance=w, **kw).latents
    by_hand = sample_latents(Mixed(model, w), _patterns(), guidance=1.0, **kw).latents
    # Batched (cond and uncond in one pass) against two passes: float32 rounding only.
    np.testing.assert_allclose(guided, by_hand, rtol=1e-4, atol=1e-4)


def test_guidance_one_is_the_conditional_model_alone() -> None:
    model = _random_denoiser()
    spy = Counting(model)
    kw = {"n": 3, "steps": 4, "sampler": "ddpm", "seed": 1}
    plain = sample_latents(spy, _patterns(), guidance=1.0, **kw).latents
    assert spy.calls == [(6, True)] * 4  # one conditional pass of K·n rows per step, no more
    by_hand = sample_latents(Mixed(model, 1.0), _patterns(), guidance=1.0, **kw).latents
    np.testing.assert_allclose(plain, by_hand, rtol=1e-5, atol=1e-6)


def test_guided_sampling_makes_one_batched_pass_per_step() -> None:
    spy = Counting(_random_denoiser())
    sample_latents(spy, _patterns(), n=3, steps=4, sampler="ddim", guidance=2.0, seed=0)
    assert spy.calls == [(12, False)] * 4  # cond and uncond of 6 rows together


@pytest.mark.parametrize("name", SAMPLERS)
def test_each_sampler_repeats_by_seed_pattern_and_sample(name: str) -> None:
    model = _random_denoiser()
    p = _patterns(3)

    def draw(patterns, seed=0, n=4):
        kw = {"steps": 3, "sampler": name, "guidance": 1.5, "seed": seed}
        return sample_latents(model, patterns, n=n, **kw).latents

    first = draw(p)
    np.testing.assert_array_equal(draw(p), first)
    # The same noise whatever is sampled beside it; only the batch's float rounding differs.
    np.testing.assert_allclose(draw(p[1:2])[0], first[1], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(draw(p, n=2), first[:, :2], rtol=1e-4, atol=1e-4)
    assert not np.allclose(draw(p, seed=1), first)


def test_row_generators_are_keyed_by_content_at_16_bit_precision() -> None:
    # An 8-bit image's pattern, in float32 or float64: the same key, so the same noise.
    p = np.random.default_rng(0).integers(0, 256, (16, 16)) / 255.0
    assert pattern_key(p) == pattern_key(p.astype(np.float32))
    assert pattern_key(p) != pattern_key(np.roll(p, 1))
    a = [torch.randn(4, generator=g) for g in row_generators(0, p[None], 2)]
    b = [torch.randn(4, generator=g) for g in row_generators(0, p[None], 2)]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0], a[1])


def test_default_sample_count_is_the_shared_constant() -> None:
    out = sample_latents(_random_denoiser(), _patterns(1), steps=1, sampler="ddim")
    assert out.latents.shape == (1, SAMPLES, SMALL.latent_dim)


def test_trajectory_keeps_the_estimate_after_evenly_spaced_steps() -> None:
    out = sample_latents(
        _random_denoiser(), _patterns(2), n=2, steps=6, sampler="ddim", seed=0, trajectory=3
    )
    assert out.trajectory_steps == [1, 3, 6]  # steps 0, 2.5 → 2 and 5, counted from 1
    assert out.trajectory.shape == (3, 2, 2, SMALL.latent_dim)


def test_bad_counts_and_sampler_names_are_refused() -> None:
    with pytest.raises(ValueError, match="n and steps"):
        sample_latents(_random_denoiser(), _patterns(1), n=0)
    with pytest.raises(ValueError, match="sampler must be one of"):
        sampler("euler", SMALL)


def test_regressor_output_is_in_the_vae_mu_space() -> None:
    model = _random_denoiser()
    model.set_latent_stats(torch.full((8,), 2.0), torch.full((8,), 3.0))
    out = regress_latents(model, _patterns(2))
    standardized = model.regress(torch.from_numpy(_patterns(2))).detach().numpy()
    np.testing.assert_allclose(out, standardized * 3.0 + 2.0, rtol=1e-5)


def test_latent_std_is_floored() -> None:
    model = Denoiser(SMALL)
    model.set_latent_stats(torch.zeros(8), torch.zeros(8))
    assert float(model.latent_std.min()) == pytest.approx(1e-3)


def test_training_scheduler_matches_the_samplers() -> None:
    train = training_scheduler(SMALL)
    for name in SAMPLERS:
        s = sampler(name, SMALL)
        assert torch.allclose(s.alphas_cumprod, train.alphas_cumprod)
    # The cosine schedule ends at (almost) pure noise and starts (almost) clean.
    assert float(train.alphas_cumprod[-1]) < 1e-3 < 0.99 < float(train.alphas_cumprod[0])


# ------------------------------------------------------------------ configs and checkpoints


@pytest.mark.parametrize(
    "config",
    [
        SMALL,
        DenoiserConfig(arch="seed-unet1d", latent_dim=32, channels=(4, 8), bottleneck=8, heads=2),
        DenoiserConfig(prediction="epsilon", train_timesteps=50, pattern_size=8),
    ],
)
def test_denoiser_config_round_trips_through_json(config: DenoiserConfig) -> None:
    back = DenoiserConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert back == config
    assert all(getattr(back, f.name) == getattr(config, f.name) for f in fields(config))


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"latent_dim": 0}, "latent_dim must be a positive integer"),
        ({"width": True}, "width must be a positive integer"),
        ({"width": 10**6}, "width must be at most"),
        ({"prediction": "x0"}, "prediction must be one of"),
        ({"channels": []}, "channels must be in"),
        ({"arch": "seed-unet1d", "bottleneck": 9, "heads": 2}, "must divide by heads"),
    ],
)
def test_denoiser_config_refuses_bad_values_in_one_line(bad: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message) as e:
        DenoiserConfig.from_dict(SMALL.to_dict() | bad)
    assert "\n" not in str(e.value)


def test_generator_round_trips_config_and_weights(tmp_path: Path) -> None:
    config = DenoiserConfig(
        arch="seed-unet1d", latent_dim=16, cond_dim=8, channels=(4, 8), bottleneck=8, heads=2
    )
    model, regressor = _random_denoiser(config, 0), _random_denoiser(config, 1)
    meta = {"denoiser": config.to_dict(), "vae": {"id": VAE_ID, "path": "models/demo"}}
    gid = gck.save_generator(tmp_path / "g", model, regressor, meta)
    gen = gck.load_generator(tmp_path / "g", vae_id=VAE_ID)
    assert gen.id == gid and gen.denoiser_config == config and gen.vae_id == VAE_ID
    for a, b in ((model, gen.model), (regressor, gen.regressor)):
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    with pytest.raises(gck.GeneratorError, match="belongs to the VAE models/demo"):
        gck.load_generator(tmp_path / "g", vae_id="1" * 64)


def test_generator_with_a_bad_denoiser_config_is_one_line_error(tmp_path: Path) -> None:
    meta = {"denoiser": SMALL.to_dict(), "vae": {"id": VAE_ID}}
    gck.save_generator(tmp_path / "g", _random_denoiser(), None, meta)
    file = tmp_path / "g" / "config.json"
    config = json.loads(file.read_text())
    config["denoiser"]["depth"] = -1
    file.write_text(json.dumps(config))
    with pytest.raises(gck.GeneratorError, match="bad denoiser config") as e:
        gck.load_generator(tmp_path / "g")
    assert "\n" not in str(e.value)


def test_train_config_round_trips_through_its_command_line() -> None:
    config = TrainConfig(vae="v", data="d", out="o", width=32, lr=3e-4, regressor=False)
    argv = []
    for f in fields(config):
        value = getattr(config, f.name)
        flag = "--" + f.name.replace("_", "-")
        argv += (
            [flag if value else "--no-" + flag[2:]]
            if isinstance(value, bool)
            else [flag, str(value)]
        )
    assert parse_args(argv) == config
    assert config.denoiser_config(16, latent_dim=8).width == 32


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"ema_decay": 1.0}, "--ema-decay"),
        ({"cfg_dropout": 1.0}, "--cfg-dropout"),
        ({"lr": 0.0}, "--lr"),
        ({"max_steps": 0}, "--max-steps"),
    ],
)
def test_train_config_refuses_bad_values(bad: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(vae="v", data="d", out="o", **bad)


def test_ema_state_saved_and_read_back_continues_identically(tmp_path: Path) -> None:
    # The layout diffusion.train writes for --resume: shadows as "ema.{i}", the step in state.
    model = _random_denoiser()
    ema = EMAModel(model.parameters(), decay=0.9, foreach=True)
    for _ in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
        ema.step(model.parameters())
    tensors = {f"ema.{i}": p for i, p in enumerate(ema.shadow_params)}
    meta = {"denoiser": SMALL.to_dict(), "vae": {"id": VAE_ID}}
    gck.save_generator(
        tmp_path / "g", model, None, meta, tensors, {"ema_step": ema.optimization_step}
    )
    saved, state = gck.read_resume(tmp_path / "g")
    again = EMAModel(model.parameters(), decay=0.9, foreach=True)
    again.shadow_params = [saved[f"ema.{i}"] for i in range(len(ema.shadow_params))]
    again.optimization_step = int(state["ema_step"])
    assert all(
        torch.equal(a, b) for a, b in zip(ema.shadow_params, again.shadow_params, strict=True)
    )
    ema.step(model.parameters())
    again.step(model.parameters())  # the decay warms up by step: the step count matters too
    assert all(
        torch.equal(a, b) for a, b in zip(ema.shadow_params, again.shadow_params, strict=True)
    )


# ------------------------------------------------------------------ scoring and references


def _speckle(n: int = 4, size: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    field = rng.normal(size=(n, size, size)) + 1j * rng.normal(size=(n, size, size))
    smooth = np.fft.ifft2(
        np.fft.fft2(field) * (np.hypot(*np.meshgrid(*[np.fft.fftfreq(size)] * 2)) < 0.15)
    )
    intensity = np.abs(smooth) ** 2
    return intensity / intensity.max(axis=(1, 2), keepdims=True)


def test_identical_images_score_pcc_one_and_ratios_one() -> None:
    x, mask = _speckle(), np.ones((32, 32), bool)
    s = score(x, x, mask)
    np.testing.assert_allclose(s["pcc"], 1.0, atol=1e-9)
    np.testing.assert_allclose(s["ssim"], 1.0, atol=1e-6)
    np.testing.assert_allclose(s["contrast_ratio"], 1.0)
    np.testing.assert_allclose(s["histogram_distance"], 0.0, atol=1e-9)
    assert summary(s)["pcc"] == pytest.approx(1.0)


def test_a_flat_prediction_scores_pcc_zero_not_nan() -> None:
    x, mask = _speckle(), np.ones((32, 32), bool)
    s = score(x, np.full_like(x, 0.5), mask)
    np.testing.assert_array_equal(s["pcc"], 0.0)
    np.testing.assert_allclose(s["contrast_ratio"], 0.0, atol=1e-9)


def test_nearest_patterns_finds_each_query_by_cosine() -> None:
    train = np.random.default_rng(0).random((5000, 4, 4)).astype(np.float32)  # over one block
    idx = np.array([3, 4500, 17])
    best, sim = nearest_patterns(train, 2.0 * train[idx])  # cosine: the scale does not matter
    np.testing.assert_array_equal(best, idx)
    np.testing.assert_allclose(sim, 1.0, atol=1e-5)


def test_transmission_matrix_fit_recovers_intensities_of_a_known_t() -> None:
    rng = np.random.default_rng(0)
    n_in, size = 16, 6
    t = rng.normal(size=(size * size, n_in)) + 1j * rng.normal(size=(size * size, n_in))
    patterns = rng.random((400, 4, 4)).astype(np.float32)
    y = np.abs(patterns.reshape(400, -1) @ t.T) ** 2
    intensities = y.reshape(400, size, size).astype(np.float32)
    mask = np.ones((size, size), bool)
    tm = fit_transmission_matrix(patterns[:300], intensities[:300], mask, steps=1500, batch=300)
    pred, held = tm.predict(patterns[300:]), intensities[300:]
    r = np.corrcoef(pred.ravel(), held.ravel())[0, 1]
    assert r > 0.99 and tm.final_loss < 0.01


# ------------------------------------------------------------------ patterns and training sets


def test_to_pattern_crops_scales_and_resamples() -> None:
    pixels = np.zeros((20, 40), np.uint16)
    pixels[:, 10:30] = 255  # the centred 20×20 square, full scale
    out = to_pattern(pixels, 255.0, 10)
    assert out.shape == (10, 10) and out.dtype == np.float32
    np.testing.assert_allclose(out, 1.0, atol=1e-6)
    small = to_pattern(np.full((4, 4), 510.0), 255.0, 8)  # upsampled, and clipped to 1
    assert small.shape == (8, 8) and small.max() == 1.0
    half = to_pattern(np.eye(4, dtype=np.float32) * 2, 2.0, 2)  # box-averaged 2×2 blocks
    np.testing.assert_allclose(half, [[0.5, 0.0], [0.0, 0.5]])


def _record(**kw) -> dict:
    return {k: 1 for k in CHECKED} | {"intensity_scale": 2.0} | kw


def test_check_rebuilt_accepts_the_same_record(tmp_path: Path) -> None:
    (tmp_path / "simulation.json").write_text(json.dumps(_record()))
    assert "matched" in check_rebuilt(tmp_path, _record())
    assert "no intensity_scale" in check_rebuilt(tmp_path, _record(intensity_scale=None))


@pytest.mark.parametrize(
    "meta, message",
    [
        (_record(seed=2), "differs from the generator's record in seed"),
        (_record(intensity_scale=2.1), "is not the recorded 2.0"),
        (None, "no readable simulation.json"),
    ],
)
def test_check_rebuilt_refuses_a_different_set(tmp_path: Path, meta, message: str) -> None:
    if meta is not None:
        (tmp_path / "simulation.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=message):
        check_rebuilt(tmp_path, _record())


# ------------------------------------------------------------------ losses, embedding, data


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_diffusion_loss_is_zero_for_the_exact_target(prediction: str) -> None:
    config = DenoiserConfig(latent_dim=6, prediction=prediction)
    sched = training_scheduler(config)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    t = torch.tensor([0, 10, 500, 999])
    target = noise if prediction == "epsilon" else sched.get_velocity(x0, noise, t)

    def exact(xt, tt, pattern, keep):
        return target

    def wrong(xt, tt, pattern, keep):
        return target + 1.0

    pattern, keep = torch.zeros(4, 16, 16), torch.ones(4, dtype=torch.bool)
    assert float(diffusion_loss(exact, sched, x0, pattern, noise, t, keep)) == 0.0
    assert float(diffusion_loss(wrong, sched, x0, pattern, noise, t, keep)) == pytest.approx(1.0)


def test_regressor_loss_reads_the_network_at_x_zero_and_t_zero() -> None:
    x0 = torch.randn(3, 5)
    seen = {}

    def net(x, t, pattern, keep):
        seen.update(x=x, t=t, keep=keep)
        return x0

    assert float(regressor_loss(net, x0, torch.zeros(3, 16, 16))) == 0.0
    assert not seen["x"].any() and not seen["t"].any() and seen["keep"].all()


def test_timestep_embedding_tells_timesteps_apart() -> None:
    e = timestep_embedding(torch.tensor([0, 1, 500, 999]), 64)
    assert e.shape == (4, 64) and e.abs().max() <= 1.0
    d = torch.cdist(e, e)
    assert (d + torch.eye(4) * 1e9).min() > 0.1  # no two timesteps share an embedding


def test_an_unknown_sampler_is_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match="sampler must be one of"):
        sampler("euler", DenoiserConfig())


def test_simulated_counts_follow_the_sets_intensity_scale() -> None:
    intensity = np.array([[0.0, 0.5], [1.0, 2.0]])
    np.testing.assert_allclose(
        simulated_counts(intensity, {"intensity_scale": 100.0}), intensity * 100
    )
    # Without a recorded scale, the peak maps to 60,000 counts.
    assert simulated_counts(intensity, {}).max() == pytest.approx(60000.0)


def test_a_rebuilt_set_is_cached_under_its_whole_record(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SPECKLE_VAE_CACHE", str(tmp_path))
    record = {"kind": "mmf", "n": 10, "seed": 0, "fibre_seed": 1234, "digits": "train"}
    assert simulated_dir(record) == simulated_dir(dict(record))
    assert simulated_dir(record) != simulated_dir(dict(record, fibre_seed=7))
    assert simulated_dir(record).parent == tmp_path / "datasets"
