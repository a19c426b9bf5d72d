"""The camera model both simulators share: photo-electrons, shot noise, full well, read noise and
an ADC (EMVA 1288 linear camera model, QE 1)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from speckle.simulated import N_INPUT


@dataclass(frozen=True)
class Camera:
    """photons: mean photo-electrons per pixel at unit intensity (the exposure, folded in);
    read_noise: e- rms; bit_depth: ADC bits, None for no quantization; full_well: e-, where
    pixels saturate, None for none."""

    photons: float
    read_noise: float = 0.0
    bit_depth: int | None = None
    full_well: float | None = None

    def __post_init__(self) -> None:
        if not self.photons > 0:
            raise ValueError(f"photons must be > 0, got {self.photons}")
        if self.read_noise < 0:
            raise ValueError(f"read noise must be >= 0, got {self.read_noise}")
        if self.bit_depth is not None and not 1 <= self.bit_depth <= 32:
            raise ValueError(f"bit depth must be in 1..32, got {self.bit_depth}")
        if self.full_well is not None and not self.full_well > 0:
            raise ValueError(f"full well must be > 0, got {self.full_well}")


def camera_from_options(
    photons: float | None,
    read_noise: float = 0.0,
    bit_depth: int | None = None,
    full_well: float | None = None,
) -> Camera | None:
    """The camera the command-line options describe; None without --photons."""
    if photons is None:
        if read_noise or bit_depth is not None or full_well is not None:
            raise ValueError("camera options (read noise, bit depth, full well) need photons")
        return None
    return Camera(float(photons), float(read_noise), bit_depth, full_well)


def camera_counts(
    images: np.ndarray,
    shot_rng: np.random.Generator,
    read_rng: np.random.Generator,
    photons: float,
    read_noise: float,
    bit_depth: int | None,
    full_well: float | None,
) -> np.ndarray:
    """Photo-electrons (float32) seen by a camera, QE 1: Poisson shot noise around photons * I,
    clipped at the full well, plus Gaussian read noise (e-), then an ADC of `bit_depth` bits whose
    full scale is the full well (gain 1 e-/ADU without a full well), reported back in e-. Without
    an ADC nothing is clipped at 0: read noise can make a pixel negative, as in a bias-subtracted
    frame."""
    e = shot_rng.poisson(images.astype(np.float64) * photons).astype(np.float64)
    if full_well is not None:
        e = np.minimum(e, full_well)
    if read_noise > 0:
        e = e + read_rng.normal(0.0, read_noise, e.shape)
    if bit_depth is not None:
        levels = 2**bit_depth - 1
        gain = full_well / levels if full_well is not None else 1.0
        e = np.clip(np.rint(e / gain), 0, levels) * gain
    return e.astype(np.float32)


CAMERA_TAG = 0xCA3  # the camera noise's own entropy tag, apart from every factor's stream


def fibre_counts(images: np.ndarray, camera: Camera, seed: int, core_pixels: int) -> np.ndarray:
    """A fibre set's frames through the camera. Intensity is in units of the input power (a
    lossless fibre carries sum(x²) to the output), so the exposure is set by the full SLM: with
    all 256 pixels at amplitude 1 a core pixel gets `photons` photo-electrons on average (a
    bundled digit has about 12% of that power). Noise per frame from the sample seed."""
    shot, read = np.random.SeedSequence([CAMERA_TAG, int(seed)]).spawn(2)
    return camera_counts(
        images * (camera_gain(camera, core_pixels) / camera.photons),
        np.random.default_rng(shot),
        np.random.default_rng(read),
        camera.photons,
        camera.read_noise,
        camera.bit_depth,
        camera.full_well,
    )


def camera_gain(camera: Camera, core_pixels: int) -> float:
    """Mean photo-electrons per unit fibre intensity: `photons` over the mean core intensity of
    the full SLM (256 pixels at amplitude 1) through a lossless fibre, 256 / core_pixels."""
    return camera.photons * core_pixels / N_INPUT
