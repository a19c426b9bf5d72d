"""`python -m vae.speckle`: the same command as `python -m speckle`, under the name that existing
scripts call. The simulators and statistics live in the `speckle` package."""

from speckle.cli import main
from speckle.free import PUPILS, simulate_free
from speckle.gaussian_fibre import DEFAULT_FIBRE_SEED, core_mask, transmission_matrix
from speckle.io import png_scale, write_dataset
from speckle.mmf import simulate_mmf
from speckle.simulated import SimulatedSet

__all__ = [
    "DEFAULT_FIBRE_SEED",
    "PUPILS",
    "SimulatedSet",
    "core_mask",
    "main",
    "png_scale",
    "simulate_free",
    "simulate_mmf",
    "transmission_matrix",
    "write_dataset",
]

if __name__ == "__main__":
    raise SystemExit(main())
