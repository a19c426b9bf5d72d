from __future__ import annotations

import shutil

import numpy as np

from explorer import sources


def test_identical_models_match_dim_for_dim(app) -> None:
    copy = sources.runs_root() / "demo-copy"
    if not copy.exists():
        shutil.copytree(sources.REPO / "models" / "demo", copy)
    app.switch_page("views/compare.py").run()
    assert not app.exception
    app.selectbox(key="cmp_a").set_value("models/demo")
    app.selectbox(key="cmp_b").set_value("runs/demo-copy").run()
    assert not app.exception
    pairs = app.dataframe[0].value
    assert len(pairs) == 12
    # The same weights: every dim is matched to itself with |ρ| = 1.
    assert (pairs["A dim"] == pairs["B dim"]).all()
    assert np.allclose(pairs["|ρ|"], 1.0, atol=1e-3)
    before = [url for el in app.get("image") for url in el.value]
    app.slider(key="cmp_value").set_value(2.0).run()
    after = [url for el in app.get("image") for url in el.value]
    assert before[0] != after[0] and before[2] != after[2]  # both decoded images moved
    captions = [c for el in app.get("image") for c in el.captions]
    assert any("+2.00σ" in c for c in captions)


def test_rate_distortion_of_every_model(app) -> None:
    """The button measures every model of the picker on the dataset: one point each, with the
    trade-off of the β ladder (more rate, less distortion) when models of several β are there."""
    app.switch_page("views/compare.py").run()
    app.button(key="cmp_rd").click().run()
    assert not app.exception
    points = app.dataframe[-1].value
    models = set(sources.list_models())
    assert set(points["model"]) <= models and "models/demo" in set(points["model"])
    assert (points["rate_nats"] > 0).all() and (points["distortion_mse"] > 0).all()
    assert points["rate_nats"].is_monotonic_increasing
    # The β ladder: the models trained on this set's fibre. The modal VAE learned another fibre,
    # so this set is foreign to it and its point is off the ladder's trade-off.
    ladder = points[points["model"] != sources.MODAL_MODEL]
    if ladder["beta"].nunique() > 1:
        low, high = ladder.iloc[0], ladder.iloc[-1]
        assert low["beta"] > high["beta"] and low["distortion_mse"] > high["distortion_mse"]
    assert any("Contrast ratio in the lit region" in c.value for c in app.caption)
