"""Every page on a model of the "exported" kind (an MLP VAE trained and exported by a script
outside the repository, tests/foreign_models.py): each opens without an exception and shows the
model's own sizes; Retrain says in one line why it cannot retrain it; Generate samples with a
generator trained on it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from explorer import sources
from tests.app.conftest import all_text, image_captions
from tests.foreign_models import MLP_DZ, MLP_SIZE, exported_mlp

MODEL = "runs/mlp-exported"
PAGES = [
    "views/atlas.py",
    "views/traverse.py",
    "views/interpolate.py",
    "views/reconstruct.py",
    "views/compare.py",
    "views/model.py",
    "views/inverse.py",
]


@pytest.fixture(scope="module")
def exported(app_env, tmp_path_factory) -> Path:
    """The model in the session's runs root, removed afterwards with the generator made for it:
    the other page tests see the model list they expect."""
    out = sources.runs_root() / "mlp-exported"
    if not out.exists():
        exported_mlp(tmp_path_factory.mktemp("elsewhere"), out)
    yield out
    for name in ("mlp-exported", "gen-mlp"):
        shutil.rmtree(sources.runs_root() / name, ignore_errors=True)


@pytest.fixture
def on_exported(app, exported):
    app.run()
    app.session_state["model"] = MODEL
    return app


@pytest.mark.parametrize("page", PAGES)
def test_every_page_opens_on_an_exported_model(on_exported, page: str) -> None:
    on_exported.session_state["cmp_b"] = MODEL  # Compare: the demo takes another image size
    on_exported.switch_page(page).run()
    assert not on_exported.exception, on_exported.exception
    assert not on_exported.error, [e.value for e in on_exported.error]
    text = all_text(on_exported)
    assert f"dz {MLP_DZ}" in text and f"{MLP_SIZE}² px" in text


def test_the_model_card_says_what_it_is(on_exported) -> None:
    on_exported.switch_page("views/model.py").run()
    text = all_text(on_exported)
    assert "exported program (torch.export)" in text and "β = unknown" in text
    assert "imported (torch.export) from `encoder.pt2` (sha256 `" in text
    assert any("python -m vae.import_exported" in c.value for c in on_exported.code)


def test_retrain_says_why_not_in_one_line(on_exported) -> None:
    on_exported.switch_page("views/retrain.py").run()
    assert not on_exported.exception
    notes = [i.value for i in on_exported.info]
    assert len(notes) == 1 and "exported" in notes[0] and "\n" not in notes[0]
    assert not on_exported.button  # nothing to start


def test_generate_samples_with_a_generator_made_for_it(on_exported, exported, tmp_path) -> None:
    # Lazy: the generator's training is needed by this test only.
    from diffusion.train import main as train_main

    data = Path(sources.ensure_simulated())
    gen = sources.runs_root() / "gen-mlp"
    argv = ["--vae", str(exported), "--data", str(data), "--out", str(gen), "--max-steps", "6"]
    argv += ["--width", "32", "--depth", "2", "--cond-dim", "16", "--batch-size", "16"]
    argv += ["--warmup-steps", "2", "--no-progress", "--threads", "1"]
    assert train_main(argv) == 0
    on_exported.switch_page("views/generate.py").run()
    assert not on_exported.exception
    assert sum(c.startswith("sample ") for c in image_captions(on_exported)) == 8


def test_compare_measures_it_beside_models_of_its_size(on_exported) -> None:
    on_exported.session_state["cmp_b"] = MODEL
    on_exported.switch_page("views/compare.py").run()
    on_exported.button(key="cmp_rd").click().run()
    assert not on_exported.exception
    points = on_exported.dataframe[-1].value
    assert list(points["model"]) == [MODEL] and points["rate_nats"].iloc[0] >= 0
