from __future__ import annotations

from tests.app.conftest import all_text
from views import common


def test_model_card_curves_and_probes(app) -> None:
    app.switch_page("views/model.py").run()
    assert not app.exception
    text = all_text(app)
    assert "β = " in text and "active units" in text
    # The demo's decoder is small enough for the ONNX Runtime path, and passed its check. It is
    # built in the background once the page is sent (usually after this first run): torch until
    # then, and the card says so.
    line = "single-latent decodes here (sliders, clicks): "
    assert (f"{line}PyTorch (cpu) until the ONNX Runtime decoder, being built in the background" in text
            or f"{line}ONNX Runtime (CPU)" in text)  # fmt: skip
    common.wait_for_decoders()
    app.run()
    text = all_text(app)
    assert f"{line}ONNX Runtime (CPU)" in text and "until" not in text.split(line)[1].split("\n")[0]
    assert any("python -m vae.train" in c.value for c in app.code)
    probes = app.dataframe[0].value.set_index("label")
    assert "digit" in probes.index
    # The demo model's latents carry the digit far above chance (10%).
    assert probes.loc["digit", "score"] > 0.5
    assert app.radio(key="model_method").value == "mi"
