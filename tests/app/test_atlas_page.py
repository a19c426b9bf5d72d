from __future__ import annotations

import base64
import json
import threading

import numpy as np
from matplotlib.path import Path

from tests.app.conftest import all_text, image_captions, image_urls


def test_opens_on_demo_model_and_shows_what_is_loaded(app) -> None:
    app.run()
    assert not app.exception
    assert app.title[0].value == "Atlas"
    sidebar = "\n".join(m.value for m in app.sidebar.markdown)
    assert "β = " in sidebar and "sse reconstruction" in sidebar
    assert "300 images" in sidebar and "active units" in sidebar
    assert app.sidebar.selectbox(key="model").value == "models/demo"
    assert "Nothing selected yet" in all_text(app)


def test_injected_selection_shows_that_sample(app) -> None:
    app.run()
    app.session_state["atlas_map"] = {
        "selection": {"points": [{"customdata": 42}, {"customdata": 7}]}
    }
    app.run()
    assert not app.exception
    assert app.session_state["selection"] == [42, 7]
    text = all_text(app)
    assert "2 selected; showing id 42" in text
    # input, SLM pattern, reconstruction, |error|
    assert len(image_urls(app)) == 4
    captions = image_captions(app)
    assert "input #42" in captions and "input pattern (SLM)" in captions
    # The metrics table is of sample 42 and holds real numbers.
    table = app.dataframe[0].value
    assert 0 < float(table["pcc"][0]) <= 1 and float(table["K_in"][0]) > 0
    # Choosing the other selected sample shows it instead.
    app.selectbox(key="atlas_show").set_value(7).run()
    assert "input #7" in image_captions(app)


def test_colour_by_label_and_latent_dim(app) -> None:
    app.run()
    app.selectbox(key="atlas_color").set_value("latent dim").run()
    assert not app.exception
    assert app.selectbox(key="atlas_dim").value is not None
    app.selectbox(key="atlas_color").set_value("digit").run()
    assert not app.exception


def _marker_colours(app) -> np.ndarray:
    spec = json.loads(app.get("plotly_chart")[0].proto.spec)
    color = spec["data"][0]["marker"]["color"]
    if isinstance(color, dict):  # plotly's typed-array encoding
        return np.frombuffer(base64.b64decode(color["bdata"]), np.dtype(color["dtype"]))
    return np.asarray(color, np.float64)


def test_first_start_draws_the_map_before_the_reconstruction_errors(
    app, tmp_path, monkeypatch
) -> None:
    """A first build returns μ for the map at once; the errors follow from a background task,
    and colouring by them waits for that task rather than showing a wrong map."""
    from vae import inference as inference_mod  # explorer.atlas imports it on use

    monkeypatch.setenv("SPECKLE_VAE_CACHE", str(tmp_path / "fresh"))
    release, real = threading.Event(), inference_mod.reconstruction_errors

    def held(*args, **kwargs):
        assert release.wait(120)
        return real(*args, **kwargs)

    monkeypatch.setattr(inference_mod, "reconstruction_errors", held)
    app.run()
    assert not app.exception
    assert "computed in the background" in all_text(app)
    assert app.get("plotly_chart")  # the map is drawn while the errors are still held back
    assert not list((tmp_path / "fresh" / "latents").glob("*.npz"))
    timer = threading.Timer(1.0, release.set)
    timer.start()
    app.selectbox(key="atlas_color").set_value("reconstruction error").run()
    timer.join()
    assert not app.exception
    assert "computed in the background" not in all_text(app)
    (npz,) = (tmp_path / "fresh" / "latents").glob("*.npz")  # cached once they were done
    with np.load(npz) as f:
        errors = f["recon_error"]
    assert len(errors) == 300 and errors.min() > 0
    np.testing.assert_allclose(_marker_colours(app), errors, rtol=1e-6)


def test_a_first_atlas_is_preceded_by_a_placeholder_that_then_goes(app) -> None:
    """Before this process's first atlas, a placeholder map is sent ahead of the heavy imports
    (the browser loads plotly.js meanwhile); once the atlas is there it is cleared, and later
    runs send none."""
    from views import start

    start.served = False
    drawn = []
    real = start.map_placeholder

    def spy(page):
        slot = real(page)
        drawn.append(slot)
        return slot

    start.map_placeholder = spy
    try:
        app.run()
        assert not app.exception
        assert drawn and drawn[0] is not None and start.served
        charts = app.get("plotly_chart")
        assert (
            len(charts) == 1
            and "the map appears here" not in str(charts[0].proto)
            and len(app.title) == 1
        )
        app.run()
        assert drawn[1] is None  # served: no placeholder on later runs
        assert len(app.get("plotly_chart")) == 1
    finally:
        start.map_placeholder = real


CACHED_OPEN = """
import base64, importlib.abc, json, sys
import numpy as np
from streamlit.testing.v1 import AppTest

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")

sys.meta_path.insert(0, NoTorch())
at = AppTest.from_file(sys.argv[1], default_timeout=120)
at.session_state["atlas_method"] = "PCA"
at.run()
charts = at.get("plotly_chart")
points = 0
for trace in json.loads(charts[0].proto.spec)["data"] if charts else []:  # one per label value
    x = trace["x"]
    if isinstance(x, dict):  # plotly's typed-array encoding
        x = np.frombuffer(base64.b64decode(x["bdata"]), np.dtype(x["dtype"]))
    points += len(x)
print(json.dumps({"exception": [str(e.value) for e in at.exception], "points": points,
                  "title": at.title[0].value if at.title else None,
                  "sidebar": "\\n".join(m.value for m in at.sidebar.markdown)}))
"""


def test_cached_atlas_page_is_drawn_without_torch(app, app_env) -> None:
    """A second start: with the latents and the map cached, the Atlas page (sidebar, map) needs
    no torch; the model is built later, in the background or when a page decodes."""
    import os
    import subprocess
    import sys

    from explorer import sources
    from explorer.atlas import build_atlas, build_projection
    from frames import ImageFolder, Normalization
    from tests.app.conftest import ROOT
    from vae.checkpoint import load_checkpoint

    ck = load_checkpoint(sources.REPO / sources.DEMO_MODEL)
    norm = Normalization.from_dict(ck.config["preprocessing"]["normalization"])
    atlas = build_atlas(ck, ImageFolder(sources.ensure_simulated(), 64, norm))
    build_projection(atlas, "pca")
    res = subprocess.run(
        [sys.executable, "-c", CACHED_OPEN, str(ROOT / "app.py")],
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["exception"] == [] and out["title"] == "Atlas"
    assert out["points"] == len(atlas.mu) == 300
    assert f"{atlas.active_units} active units" in out["sidebar"] and "300 images" in out["sidebar"]


def test_a_paired_hdf5_recording_shows_its_patterns(app, tmp_path, monkeypatch) -> None:
    """A lab recording, one HDF5 file holding /speckle (N, H, W) and /patterns (N, h, w), picked
    as the dataset: a selected sample shows the SLM pattern that produced it."""
    import h5py

    from explorer import sources
    from speckle.mmf import simulate_mmf

    sim = simulate_mmf(40, 9)
    root = tmp_path / "data"
    (root / "lab-run").mkdir(parents=True)
    with h5py.File(root / "lab-run" / "run.h5", "w") as f:
        f["speckle"] = (sim.images / sim.images.max() * 65535).astype("uint16")
        f["patterns"] = (sim.patterns * 255).astype("uint8")
        f["digit"] = sim.labels["digit"].to_numpy()
    monkeypatch.setenv(sources.DATA_ROOT_ENV, str(root))
    app.session_state["dataset"] = "lab-run"
    app.run()
    assert not app.exception
    app.session_state["atlas_map"] = {"selection": {"points": [{"customdata": 12}]}}
    app.run()
    assert not app.exception
    captions = image_captions(app)
    assert "input pattern (SLM)" in captions and "no input pattern" not in all_text(app)
    assert len(image_urls(app)) == 4  # input, pattern, reconstruction, |error|
    assert "input #12" in captions


def test_frame_index_colour_and_drift_selection(app) -> None:
    app.run()
    app.selectbox(key="atlas_color").set_value("frame index").run()
    assert not app.exception
    colours = _marker_colours(app)
    np.testing.assert_array_equal(colours, np.arange(len(colours)))
    assert len(app.get("plotly_chart")) == 1  # the drift is drawn only when asked for
    app.toggle(key="atlas_drift_on").set_value(True).run()
    assert not app.exception and len(app.get("plotly_chart")) == 2
    text = all_text(app)
    assert "Reference: the first 15 frames" in text  # 5% of the demo set's 300
    # A box on the drift chart selects those frames ...
    app.session_state["atlas_drift"] = {
        "selection": {"points": [{"customdata": 250}, {"customdata": 251}]}
    }
    app.run()
    assert app.session_state["selection"] == [250, 251]
    # ... and a later map selection is not taken back by the drift chart's old event.
    app.session_state["atlas_map"] = {"selection": {"points": [{"customdata": 3}]}}
    app.run()
    assert not app.exception
    assert app.session_state["selection"] == [3]
    app.number_input(key="atlas_fps").set_value(1.0).run()  # 1 Hz: the first minute, 60 frames
    assert "Reference: the first 60 frames" in all_text(app)


def test_a_large_map_is_a_density_image_and_a_box_selects_every_point_in_it(
    app, monkeypatch
) -> None:
    """Above the threshold (lowered here to 100 points) the map is a density image under a
    sample of points; a box selection event is resolved on the server to every point inside,
    a lasso too, and a click on a drawn point selects that frame."""
    from explorer import density

    monkeypatch.setattr(density, "DENSITY_ABOVE", 100)
    monkeypatch.setattr(density, "SAMPLE", 50)
    app.run()
    assert not app.exception
    spec = json.loads(app.get("plotly_chart")[0].proto.spec)
    (image,) = spec["layout"]["images"]
    assert image["source"].startswith("data:image/png;base64,") and image["layer"] == "below"
    assert "density image" in all_text(app)
    assert "300 points" in all_text(app) and "sample of 50" in all_text(app)
    coords = _pca_coords(app)
    x0, x1 = np.quantile(coords[:, 0], [0.2, 0.7])
    y0, y1 = np.quantile(coords[:, 1], [0.1, 0.9])
    inside = np.flatnonzero(
        (coords[:, 0] >= x0) & (coords[:, 0] <= x1) & (coords[:, 1] >= y0) & (coords[:, 1] <= y1)
    )
    assert 50 < len(inside) < 300
    app.session_state["atlas_map"] = {
        "selection": {
            "points": [],
            "box": [{"xref": "x", "yref": "y", "x": [float(x1), float(x0)], "y": [y0, y1]}],
            "lasso": [],
        }
    }
    app.run()
    assert not app.exception
    assert app.session_state["selection"] == inside.tolist()
    assert f"{len(inside)} selected; showing id {inside[0]}" in all_text(app)
    assert f"input #{inside[0]}" in image_captions(app)
    # A lasso: a triangle over the whole map holds about half of it.
    (lx0, lx1), (ly0, ly1) = np.quantile(coords, [0, 1], axis=0).T
    app.session_state["atlas_map"] = {
        "selection": {
            "points": [],
            "box": [],
            "lasso": [{"x": [lx0 - 1, lx1 + 1, lx1 + 1], "y": [ly0 - 1, ly0 - 1, ly1 + 1]}],
        }
    }
    app.run()
    triangle = Path([(lx0 - 1, ly0 - 1), (lx1 + 1, ly0 - 1), (lx1 + 1, ly1 + 1)])
    expected = np.flatnonzero(triangle.contains_points(coords)).tolist()
    assert app.session_state["selection"] == expected and 50 < len(expected) < 250
    # A click on a drawn point: that frame alone.
    app.session_state["atlas_map"] = {
        "selection": {"points": [{"customdata": 17}], "box": [], "lasso": []}
    }
    app.run()
    assert not app.exception
    assert app.session_state["selection"] == [17]
    assert "1 selected: id 17" in all_text(app)


def _pca_coords(app) -> np.ndarray:
    """The PCA map the page drew, as the session remembers it (views.state.projection)."""
    proj = app.session_state["_maps"][("pca", 15, 0.1, "euclidean")][1]()
    return np.asarray(proj.coords, np.float64)
