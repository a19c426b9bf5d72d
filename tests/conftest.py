from __future__ import annotations

import os

import pytest
import torch

# Keep numba's JIT cache across test processes (umap-learn compiles ~25 s at import otherwise).
os.environ.setdefault(
    "NUMBA_CACHE_DIR", os.path.join(os.path.dirname(__file__), "..", ".cache", "numba")
)

from vae.model import VAEConfig  # noqa: E402

SEED = 0


@pytest.fixture
def tiny_config() -> VAEConfig:
    """A VAE small enough to train for a few steps in well under a second."""
    return VAEConfig(image_size=16, channels=(4, 8, 8, 8), latent_dim=8, norm_groups=2)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(SEED)
