from __future__ import annotations

import os
from collections.abc import Iterator

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


@pytest.fixture
def tiny_config() -> VAEConfig:
    """A VAE small enough to train for a few steps in well under a second."""
    return VAEConfig(image_size=16, channels=(4, 8, 8, 8), latent_dim=8, norm_groups=2)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(SEED)
