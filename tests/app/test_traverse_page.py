from __future__ import annotations

from tests.app.conftest import image_captions, image_urls


def test_slider_move_changes_the_decoded_image(app) -> None:
    app.switch_page("views/traverse.py").run()
    assert not app.exception
    sliders = [s for s in app.slider if s.key and s.key.startswith("trav_")]
    assert len(sliders) == 8  # K defaults to 8, most informative dims first
    before = image_urls(app)[0]
    sliders[0].set_value(2.5).run()
    assert not app.exception
    after = image_urls(app)[0]
    assert after != before
    sliders = [s for s in app.slider if s.key and s.key.startswith("trav_")]
    sliders[0].set_value(0.0).run()
    assert image_urls(app)[0] == before  # back to the start: the same image again


def test_reset_puts_every_slider_back_to_zero(app) -> None:
    app.switch_page("views/traverse.py").run()
    before = image_urls(app)[0]
    sliders = [s for s in app.slider if s.key and s.key.startswith("trav_")]
    sliders[0].set_value(2.0)
    sliders[3].set_value(-1.5).run()
    assert image_urls(app)[0] != before
    app.button(key="trav_reset").click().run()
    assert not app.exception
    assert all(s.value == 0.0 for s in app.slider if s.key and s.key.startswith("trav_"))
    assert image_urls(app)[0] == before


def test_k_controls_the_number_of_sliders_and_grid(app) -> None:
    app.switch_page("views/traverse.py").run()
    app.number_input(key="trav_k").set_value(3).run()
    assert not app.exception
    assert len([s for s in app.slider if s.key and s.key.startswith("trav_")]) == 3
    assert any("rows: z" in c for c in image_captions(app))


def test_start_from_a_selected_sample(app) -> None:
    app.run()
    app.session_state["selection"] = [11]
    app.switch_page("views/traverse.py").run()
    assert not app.exception
    assert app.radio(key="trav_source").value == "selected sample"
    assert any("sample #11" in c for c in image_captions(app))


def test_a_slider_move_reruns_only_the_slider_fragment(app) -> None:
    """What a browser's move asks for: the fragment alone reruns, decodes and redraws; the grid,
    the KL chart and the sidebar are not sent again."""
    from benchmarks.slider import FragmentMoves

    app.switch_page("views/traverse.py").run()
    key = next(s.key for s in app.slider if s.key and s.key.startswith("trav_"))
    moves = FragmentMoves(app, key)
    assert any(h.value == "Traversal grid" for h in moves.page.subheader)
    images = set()
    for i in (0, 3, 9):  # slider values -3.0, -1.5 and +1.5
        moves.move(i)
        images.add(moves.image())
        assert not [h.value for h in app.subheader]  # nothing outside the fragment reran
        assert len([s for s in app.slider if s.key and s.key.startswith("trav_")]) == 8
    assert len(images) == 3
