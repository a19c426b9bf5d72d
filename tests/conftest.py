from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import pytest
import torch

# Keep numba's JIT cache across test processes (umap-learn compiles ~25 s at import otherwise).
os.environ.setdefault(
    "NUMBA_CACHE_DIR", os.path.join(os.path.dirname(__file__), "..", ".cache", "numba")
)

from vae.model import VAEConfig  # noqa: E402

SEED = 0


@pytest.fixture(scope="session", autouse=True)
def _cache_folder(tmp_path_factory) -> Iterator[None]:
    """The tests' latent cache, maps and simulated sets go to a temporary folder, never to the
    user's cache folder (a test that needs its own sets SPECKLE_VAE_CACHE itself)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SPECKLE_VAE_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


def _wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.05) -> bool:
    """Call `predicate` every `interval` seconds until it is true (True) or `timeout` seconds have
    passed (False, after one last call). The caller asserts, so its message says what was awaited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


@pytest.fixture(scope="session")
def wait_until() -> Callable[..., bool]:
    """`wait_until(predicate, timeout, interval=0.05)`: poll a background process, job or server."""
    return _wait_until


@pytest.fixture
def wait(wait_until):
    """`wait(manager, job, states)`: poll a retraining job manager until the job is in one of
    `states`."""

    def wait_for(manager, job, states, timeout: float = 120.0) -> None:
        def settled() -> bool:
            if job.state in states:
                return True
            manager.poll()
            return False

        wait_until(settled, timeout)
        assert job.state in states, (job.state, job.error)

    return wait_for


@pytest.fixture
def tiny_config() -> VAEConfig:
    """A VAE small enough to train for a few steps in well under a second."""
    return VAEConfig(image_size=16, channels=(4, 8, 8, 8), latent_dim=8, norm_groups=2)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(SEED)
