"""The ONNX Runtime decoder (vae/ort_decoder.py) and its use by vae.inference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from vae import inference
from vae.model import VAE, VAEConfig

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from vae.ort_decoder import OrtDecoder, Unsupported  # noqa: E402

DEMO = Path(__file__).resolve().parents[1] / "models" / "demo"


def _torch_decode(model: VAE, z: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model.decoder(torch.as_tensor(z)).numpy()


@pytest.mark.parametrize(
    "config",
    [
        VAEConfig(image_size=16, channels=(4, 8, 8, 8), latent_dim=8, norm_groups=2),
        VAEConfig(image_size=32, channels=(8, 16, 16, 32), latent_dim=16, norm="batch"),
        VAEConfig(image_size=16, in_channels=3, channels=(4, 8, 8, 8), latent_dim=8, norm_groups=2),
        # A group count that does not divide the channels: the model uses gcd(8, 12) = 4.
        VAEConfig(image_size=16, channels=(12, 12, 24, 24), latent_dim=8),
    ],
    ids=["group", "batch-norm", "rgb", "gcd-groups"],
)
def test_matches_the_torch_decoder(config: VAEConfig) -> None:
    model = VAE(config).eval()
    if config.norm == "batch":  # non-trivial running statistics and affine
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.uniform_(-0.2, 0.2)
    fast = OrtDecoder(model.decoder)
    for n in (1, 5):
        z = torch.randn(n, config.latent_dim).numpy() * 2
        out = fast(z)
        assert out.shape == (n, config.in_channels, config.image_size, config.image_size)
        np.testing.assert_allclose(out, _torch_decode(model, z), atol=2e-5)
    assert fast.check(model.decoder) < 2e-5


def test_demo_model_matches_and_is_used_by_decode() -> None:
    from vae.checkpoint import load_checkpoint

    plain = load_checkpoint(DEMO).model.eval()
    app = inference.for_interactive_use(load_checkpoint(DEMO).model)
    assert inference.decoder_backend(app) == "ONNX Runtime (CPU)"
    assert inference.decoder_backend(plain).startswith("PyTorch")
    z = torch.randn(4, 512).numpy()
    want = _torch_decode(plain, z)[:, 0]
    np.testing.assert_allclose(inference.decode(app, z), want, atol=2e-5)
    np.testing.assert_allclose(inference.decode_interactive(app, z[:1]), want[:1], atol=2e-5)
    # Up to FAST_BATCH latents go to ONNX Runtime; past it the torch module decodes (every
    # core): same images either way.
    fast = inference._fast[app].decoder
    calls: list[int] = []
    inference._fast[app].decoder = lambda z: calls.append(len(z)) or fast(z)
    try:
        few = torch.randn(inference.FAST_BATCH, 512).numpy()
        many = torch.randn(inference.FAST_BATCH + 1, 512).numpy()
        np.testing.assert_allclose(
            inference.decode(app, few), _torch_decode(plain, few)[:, 0], atol=2e-5
        )
        np.testing.assert_allclose(
            inference.decode(app, many), _torch_decode(plain, many)[:, 0], atol=2e-5
        )
    finally:
        inference._fast[app].decoder = fast
    assert calls == [inference.FAST_BATCH]


def test_weights_changed_in_place_fall_back_to_torch(tiny_config: VAEConfig) -> None:
    model = inference.for_interactive_use(VAE(tiny_config))
    assert inference.decoder_backend(model) == "ONNX Runtime (CPU)"
    z = torch.randn(2, tiny_config.latent_dim).numpy()
    with torch.no_grad():
        model.decoder.from_latent.weight.mul_(3.0)
    assert inference.decoder_backend(model).startswith("PyTorch")
    # A stale session would still give the old images; the fallback gives the new ones.
    np.testing.assert_allclose(inference.decode(model, z), _torch_decode(model, z)[:, 0], atol=1e-5)


@pytest.mark.parametrize("how", ["data", "attribute", "state_dict"])
def test_weights_replaced_fall_back_to_torch(tiny_config: VAEConfig, how: str) -> None:
    """Changes that leave version counters alone: new storage, a new Parameter, assign=True."""
    model = inference.for_interactive_use(VAE(tiny_config))
    layer = model.decoder.from_latent
    new = layer.weight.detach() * 3.0
    if how == "data":
        layer.weight.data = new
    elif how == "attribute":
        layer.weight = nn.Parameter(new)
    else:
        model.decoder.load_state_dict(
            model.decoder.state_dict() | {"from_latent.weight": new}, assign=True
        )
    assert inference.decoder_backend(model).startswith("PyTorch")
    z = torch.randn(2, tiny_config.latent_dim).numpy()
    np.testing.assert_allclose(inference.decode(model, z), _torch_decode(model, z)[:, 0], atol=1e-5)


def test_without_onnxruntime_the_model_loads_and_decodes_with_torch(
    tiny_config: VAEConfig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
    model = inference.for_interactive_use(VAE(tiny_config))
    assert inference.decoder_backend(model).startswith("PyTorch")
    assert "decoding with PyTorch on the CPU" in caplog.text
    z = torch.randn(2, tiny_config.latent_dim).numpy()
    np.testing.assert_allclose(inference.decode(model, z), _torch_decode(model, z)[:, 0], atol=1e-6)


def test_an_error_without_a_message_still_falls_back(
    tiny_config: VAEConfig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from vae import ort_decoder

    def fail(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(ort_decoder, "OrtDecoder", fail)
    model = inference.for_interactive_use(VAE(tiny_config))
    assert inference.decoder_backend(model).startswith("PyTorch")
    assert "MemoryError" in caplog.text


@pytest.mark.parametrize(
    "layer",
    [nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect"), nn.Conv2d(8, 8, 3, padding=0)],
    ids=["reflect-padding", "shrinking"],
)
def test_convolutions_it_cannot_write_are_refused(tiny_config: VAEConfig, layer: nn.Module) -> None:
    model = VAE(tiny_config).eval()
    model.decoder.body.insert(0, layer)
    with pytest.raises(Unsupported, match="Conv2d with"):
        OrtDecoder(model.decoder)


def test_unknown_layer_is_refused_and_decode_falls_back(
    tiny_config: VAEConfig, caplog: pytest.LogCaptureFixture
) -> None:
    model = VAE(tiny_config).eval()
    model.decoder.body.insert(1, nn.Tanh())
    with pytest.raises(Unsupported, match="layer Tanh"):
        OrtDecoder(model.decoder)
    inference.for_interactive_use(model)
    assert "decoding with PyTorch" in caplog.text and "Tanh" in caplog.text
    z = torch.randn(2, tiny_config.latent_dim).numpy()
    np.testing.assert_allclose(inference.decode(model, z), _torch_decode(model, z)[:, 0], atol=1e-6)


def test_check_catches_a_mismatch(tiny_config: VAEConfig) -> None:
    model = VAE(tiny_config).eval()
    fast = OrtDecoder(model.decoder)
    other = VAE(tiny_config).eval()  # other weights (the seed moved on)
    with pytest.raises(ValueError, match="differs from the module"):
        fast.check(other.decoder)


def test_large_decoders_stay_in_torch() -> None:
    from vae.model import PRESETS

    model = inference.for_interactive_use(VAE(PRESETS["paper"]))
    assert inference.decoder_backend(model).startswith("PyTorch")
    assert model not in inference._fast


def test_wrong_latent_shape_is_a_clear_error(tiny_config: VAEConfig) -> None:
    fast = OrtDecoder(VAE(tiny_config).eval().decoder)
    with pytest.raises(ValueError, match=r"expected z of shape \(B, 8\), got \(1, 9\)"):
        fast(np.zeros((1, 9), np.float32))
