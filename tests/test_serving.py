"""explorer.serving: the interactive thread and the app's use of lazily built models."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from explorer import serving
from vae import checkpoint as ckpt
from vae.inference import decode
from vae.model import VAE, VAEConfig

META = {
    "preprocessing": {"image_size": 16, "normalization": {"mode": "max"}},
    "beta": 0.5,
    "recon": "sse",
}


def test_interactive_thread_decodes_the_same_with_one_thread(tiny_config: VAEConfig) -> None:
    model = VAE(tiny_config).eval()
    z = torch.randn(2, tiny_config.latent_dim).numpy()
    np.testing.assert_allclose(serving.decode_interactive(model, z), decode(model, z), atol=1e-6)
    if "OpenMP" not in torch.__config__.parallel_info():
        pytest.skip("a thread's own intra-op count needs torch's OpenMP backend")
    assert serving.on_interactive_thread(torch.get_num_threads) == 1
    # A worker starting now leaves the default that threads begin with alone. (The default is
    # set to 2 first: other tests may have left it at 1, which would prove nothing.)
    prior = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with ThreadPoolExecutor(1, initializer=serving._one_intra_op_thread) as fresh:
            assert fresh.submit(torch.get_num_threads).result() == 1
        seen = []
        later = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        later.start()
        later.join()
        assert seen == [2]
    finally:
        torch.set_num_threads(prior)
    # Asked from the worker itself, it runs there instead of waiting on itself forever.
    worker = serving.on_interactive_thread(threading.get_ident)
    inner = serving.on_interactive_thread(
        lambda: serving.on_interactive_thread(threading.get_ident)
    )
    assert inner == worker != threading.get_ident()


@pytest.mark.parametrize("first", ["page", "worker"])
def test_a_lazy_build_and_a_queued_decode_of_the_same_model_do_not_deadlock(
    tmp_path: Path, tiny_config: VAEConfig, monkeypatch, first: str
) -> None:
    """A page thread building the model (a click on a cold start) while a slider decode waits on
    the interactive thread for the same model, in either order: nothing app-side runs under
    the checkpoint's lock, so both finish."""
    ckpt.save_checkpoint(tmp_path / "c", VAE(tiny_config), META | {"model": tiny_config.to_dict()})
    lazy = ckpt.load_checkpoint(tmp_path / "c", lazy=True)
    building, go_on = threading.Event(), threading.Event()
    real = ckpt._build_model

    def slow_build(*args):
        building.set()
        assert go_on.wait(30)
        return real(*args)

    monkeypatch.setattr(ckpt, "_build_model", slow_build)
    calls = {
        "page": lambda: serving.model(lazy),
        "worker": lambda: serving.on_interactive_thread(serving.model, lazy),
    }
    second = "worker" if first == "page" else "page"
    with ThreadPoolExecutor(2) as pool:
        a = pool.submit(calls[first])
        assert building.wait(30)  # the first holds the checkpoint's lock, building
        b = pool.submit(calls[second])
        go_on.set()
        assert a.result(60) is b.result(60) is lazy.loaded is not None
