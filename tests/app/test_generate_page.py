"""The Generate page with the shipped demo generator: the first visit generates from the first
dataset pattern, Generate reruns with the settings, bad uploads and models without a generator
are explained. Drawing on the canvas is driven in a real browser (tests/e2e)."""

from __future__ import annotations

import io
import re

import h5py
import numpy as np

from diffusion.sampling import STEPS
from explorer.generate import canvas_pattern
from tests.app.conftest import all_text, image_captions


def _samples(at) -> list[str]:
    """The captions of the samples' grid: one image each."""
    return [c for c in image_captions(at) if c.startswith("sample ")]


def _pcc(caption: str) -> float:
    return float(re.search(r"PCC (-?[0-9.]+)", caption).group(1))


def test_first_visit_generates_and_generate_uses_the_settings(app) -> None:
    app.switch_page("views/generate.py").run()
    assert not app.exception
    assert app.title[0].value == "Generate"
    captions = image_captions(app)
    # The demo generator on the demo model's fibre: its mean is close to the true speckle.
    mean = next(c for c in captions if c.startswith("mean of 8 samples"))
    assert _pcc(mean) > 0.5
    assert any(c.startswith("true speckle") for c in captions)
    assert _pcc(next(c for c in captions if c.startswith("VAE reconstruction"))) > 0.9
    samples = _samples(app)
    assert len(samples) == 8 and all(0.3 < _pcc(c) <= 1 for c in samples)
    assert [c for c in captions if c.startswith("step ")][-1] == f"step {STEPS} of {STEPS}"
    text = all_text(app)
    assert "cosine similarity to the nearest" in text.lower()
    assert re.search(r"8 samples in [0-9.]+ s", text)
    assert not app.warning  # a training digit is not out of distribution

    app.number_input(key="gen_n").set_value(4)
    app.run()
    assert len(_samples(app)) == 8  # nothing recomputed until Generate is pressed
    assert "press Generate" in all_text(app)
    app.button(key="gen_run").click().run()
    assert not app.exception
    assert len(_samples(app)) == 4
    assert any(c.startswith("mean of 4 samples") for c in image_captions(app))


def test_broken_upload_is_one_error_naming_the_file(app) -> None:
    app.switch_page("views/generate.py").run()
    app.radio(key="gen_source").set_value("Upload").run()
    app.file_uploader(key="gen_upload").upload("broken.png", b"not an image", "image/png")
    app.run()
    assert not app.exception
    assert len(app.error) == 1 and "broken.png" in app.error[0].value
    assert app.button(key="gen_run").disabled


def test_an_uploaded_recording_offers_each_pattern_and_generates(app) -> None:
    """A paired HDF5 recording as the upload: one pattern per frame of its pattern array, picked
    by number, named by its frame name, and generated from."""
    patterns = np.zeros((3, 16, 16), np.uint8)
    for k in range(3):
        patterns[k, 3:13, 4 + 3 * k : 7 + 3 * k] = 255  # a bar, further right in each frame
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f["speckle"] = np.random.default_rng(0).integers(0, 60000, (3, 64, 64), np.uint16)
        f["patterns"] = patterns
    app.switch_page("views/generate.py").run()
    app.radio(key="gen_source").set_value("Upload").run()
    app.file_uploader(key="gen_upload").upload("rec.h5", buf.getvalue(), "application/x-hdf5")
    app.run()
    assert not app.exception and not app.error
    app.number_input(key="gen_upload_frame").set_value(2).run()
    assert any(
        c.startswith("what the generator sees: rec.h5#/patterns#2") for c in image_captions(app)
    )
    app.button(key="gen_run").click().run()
    assert not app.exception
    assert "input pattern (rec.h5#/patterns#2)" in image_captions(app)
    assert len(_samples(app)) == 8


def test_model_without_generator_says_how_to_train_one(app) -> None:
    app.session_state["model"] = "models/beta-0.2"
    app.switch_page("views/generate.py").run()
    assert not app.exception
    info = app.info[0].value
    assert "No generator" in info
    assert "python -m diffusion.train --vae models/beta-0.2 --data " in info
    assert not image_captions(app)


def test_a_drawing_becomes_a_pattern() -> None:
    rgba = np.zeros((256, 256, 4), np.uint8)
    rgba[..., 3] = 255  # the canvas's black background
    assert canvas_pattern(rgba, 16) is None  # nothing drawn
    rgba[:, 128:144, :3] = 255  # a white stroke down column 8 of 16, and half of column 9
    rgba[:, 144:152, :3] = 255
    pattern = canvas_pattern(rgba, 16)
    assert pattern.shape == (16, 16) and pattern.dtype == np.float32
    assert np.allclose(pattern[:, 8], 1.0) and np.allclose(pattern[:, 9], 0.5)  # area-resampled
    assert np.allclose(np.delete(pattern, [8, 9], axis=1), 0.0)
