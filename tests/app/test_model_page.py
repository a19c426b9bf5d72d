from __future__ import annotations

from tests.app.conftest import all_text


def test_model_card_curves_and_probes(app) -> None:
    app.switch_page("views/model.py").run()
    assert not app.exception
    text = all_text(app)
    assert "β = " in text and "active units" in text
    # The demo's decoder is small enough for the ONNX Runtime path, and passed its check.
    assert "single-latent decodes here (sliders, clicks): ONNX Runtime (CPU)" in text
    assert any("python -m vae.train" in c.value for c in app.code)
    probes = app.dataframe[0].value.set_index("label")
    assert "digit" in probes.index
    # The demo model's latents carry the digit far above chance (10%).
    assert probes.loc["digit", "score"] > 0.5
    assert app.radio(key="model_method").value == "mi"
