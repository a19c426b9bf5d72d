"""The Inverse page with the shipped reconstructors: the first visit reconstructs the first
dataset frame with every method beside its true pattern, the round trip sends a reconstruction
through the demo generator, a bad upload is one error naming the file."""

from __future__ import annotations

import io
import re

import numpy as np

from inverse.methods import METHOD_NAMES
from tests.app.conftest import all_text, image_captions


def _pcc(caption: str) -> float:
    return float(re.search(r"PCC (-?[0-9.]+)", caption).group(1))


def test_first_visit_reconstructs_with_every_method(app) -> None:
    app.switch_page("views/inverse.py").run()
    assert not app.exception
    assert app.title[0].value == "Inverse"
    captions = image_captions(app)
    assert any(c.startswith("speckle (sample #0") for c in captions)
    assert "true pattern" in captions
    methods = {c.split(" · ")[0]: c for c in captions if " · PCC " in c}
    assert set(methods) == set(METHOD_NAMES)
    # The shipped reconstructors read a training-fibre frame well; the mean pattern scores ~0.6.
    assert max(_pcc(c) for c in methods.values()) > 0.9
    assert all(_pcc(c) > 0.5 for c in methods.values())

    app.number_input(key="inv_index").set_value(3).run()
    assert not app.exception
    assert any(c.startswith("speckle (sample #3") for c in image_captions(app))

    app.selectbox(key="inv_trip_method").set_value("ridge-pixels")
    app.button(key="inv_trip").click().run()
    assert not app.exception
    trip = [c for c in image_captions(app) if c.startswith("generated from the ridge-pixels")]
    assert len(trip) == 1 and _pcc(trip[0]) > 0.5
    assert "Mean of 4 generator samples" in all_text(app)


def test_uploaded_stack_and_a_bad_upload(app) -> None:
    app.switch_page("views/inverse.py").run()
    app.radio(key="inv_source").set_value("Upload").run()
    app.file_uploader(key="inv_upload").upload("broken.png", b"not an image", "image/png")
    app.run()
    assert not app.exception
    assert len(app.error) == 1 and "broken.png" in app.error[0].value

    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    np.save(buf, rng.exponential(1.0, (3, 64, 64)).astype(np.float32))
    app.file_uploader(key="inv_upload").upload(
        "stack.npy", buf.getvalue(), "application/octet-stream"
    )
    app.run()
    assert not app.exception
    captions = image_captions(app)
    assert any(c.startswith("speckle (stack.npy#0") for c in captions)
    assert "no true pattern" in all_text(app)
    app.number_input(key="inv_frame").set_value(2).run()
    assert any(c.startswith("speckle (stack.npy#2") for c in image_captions(app))
