from __future__ import annotations


def test_frames_and_path(app) -> None:
    app.run()
    app.session_state["selection"] = [3, 9]
    app.switch_page("views/interpolate.py").run()
    assert not app.exception
    assert (
        app.number_input(key="interp_a").value == 3 and app.number_input(key="interp_b").value == 9
    )
    strip = app.get("image")[0].value
    assert len(strip) == 10
    table = app.dataframe[0].value
    assert len(table) == 10 and (table["distance to nearest sample"] >= 0).all()
    # The endpoints are real samples: their nearest-sample distance is zero.
    assert table["distance to nearest sample"].iloc[0] < 1e-3
    app.slider(key="interp_n").set_value(5).run()
    assert len(app.get("image")[0].value) == 5
    app.radio(key="interp_method").set_value("lerp").run()
    assert not app.exception
