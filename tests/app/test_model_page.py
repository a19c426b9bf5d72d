from __future__ import annotations

from tests.app.conftest import all_text


def test_model_card_curves_and_probes(app) -> None:
    app.switch_page("views/model.py").run()
    assert not app.exception
    text = all_text(app)
    assert "β = " in text and "active units" in text
    assert any("python -m vae.train" in c.value for c in app.code)
    probes = app.dataframe[0].value.set_index("label")
    assert "digit" in probes.index and probes.loc["digit", "metric"] == "accuracy"
    digit = probes.loc["digit"]
    # The code carries the digit far above chance, and every baseline sits beside it.
    chance = float(digit["chance"])
    assert float(digit["code (active dims)"]) > 2 * chance
    for col in ("PCA of the speckle, same K", "all μ (encoder features)", "input patterns"):
        assert 0.0 <= float(digit[col]) <= 1.0, col
    assert "Input pattern read-out" in text
    assert "NMI" in text and "explained variance at equal k" in text.lower()
    assert any("PCA of the speckle reaches" in c.value for c in app.caption)


def test_model_page_caps_k_and_shows_the_readout_ratio(app) -> None:
    """The app's 300 images leave about 225 to train the probes on: K is capped at half of them
    for the demo's 512 active dims, the PCA baseline scores above chance, and the pattern
    read-out is shown beside all pixels, the mean pattern and the read-out ratio."""
    app.switch_page("views/model.py").run()
    assert not app.exception
    digit = app.dataframe[0].value.set_index("label").loc["digit"]
    assert float(digit["PCA of the speckle, same K"]) > 2 * float(digit["chance"])
    k, _, robust = digit["K / robust K"].partition(" (capped from 512) / ")
    assert 100 < int(k) < 120 and int(robust.split()[0]) <= int(k)
    readout = next(c.value for c in app.caption if "Input pattern read-out" in c.value)
    assert "all the speckle's pixels 0." in readout and "the mean pattern (chance) 0." in readout
    ratio = float(readout.split("read-out ratio** reads the 16 dims")[1].split("**")[1])
    assert 0.7 < ratio < 1.2
    ev = next(c.value for c in app.caption if "PCA of the speckle reaches" in c.value)
    assert "K = 512 is past what the training split supports" in ev


def test_a_model_whose_weights_do_not_fit_its_config_gives_one_line(app) -> None:
    """Opened lazily, the broken model is found when a page first builds it: the page says so in
    one line naming the file, the app stays up, and the sidebar can go back to the demo."""
    import json
    import shutil

    from explorer import sources

    bad = sources.runs_root() / "bad-config"
    if not bad.exists():
        shutil.copytree(sources.REPO / "models" / "demo", bad)
        config = json.loads((bad / "config.json").read_text())
        config["model"]["latent_dim"] = 16  # the weights (and their hash) are the demo's
        (bad / "config.json").write_text(json.dumps(config))
    app.run()
    app.session_state["model"] = "runs/bad-config"
    app.switch_page("views/traverse.py").run()
    assert not app.exception
    errors = [e.value for e in app.error]
    assert len(errors) == 1 and "weights do not match the config" in errors[0]
    assert "bad-config/model.safetensors" in errors[0]
    app.session_state["model"] = "models/demo"
    app.run()
    assert not app.exception and not app.error
    assert app.get("image")  # the demo's traversal is back
