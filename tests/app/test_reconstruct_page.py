"""AppTest cannot upload files; the upload itself is driven in a real browser in tests/e2e and
the analysis is tested in tests/test_uploads.py. Here: the page's own wiring."""

from __future__ import annotations


def test_empty_state_explains_what_to_do(app) -> None:
    app.switch_page("views/reconstruct.py").run()
    assert not app.exception
    assert app.title[0].value == "Reconstruct"
    assert "Upload one or more images" in app.info[0].value
    assert app.number_input(key="rec_window").value == 7
    assert (
        "normalization `max`" in app.caption[0].value or "normalization `" in app.caption[0].value
    )


def test_upload_latent_starts_a_traversal(app) -> None:
    import numpy as np

    app.run()
    z = np.zeros(512, np.float32)
    z[0] = 2.0
    app.session_state["traverse_start"] = ("upload", "mine.png", z.tolist())
    app.switch_page("views/traverse.py").run()
    assert not app.exception
    assert app.radio(key="trav_source").value == "upload"
    captions = [c for el in app.get("image") for c in el.captions]
    assert any("upload mine.png" in c for c in captions)
