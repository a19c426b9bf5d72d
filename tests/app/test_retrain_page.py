from __future__ import annotations

import json

from explorer import sources
from vae.checkpoint import load_checkpoint


def _run_until(app, wait_until, predicate, timeout: float = 240.0) -> None:
    # run_every fragments do not tick in AppTest: rerun the page until the job is done.
    def ran() -> bool:
        app.run()
        assert not app.exception, app.exception
        return predicate(app)

    assert wait_until(ran, timeout, interval=0.5), "timed out"


def _has_results(app) -> bool:
    return any(s.value == "Results" for s in app.subheader)


def test_sweep_runs_in_background_and_results_can_be_used_and_saved(
    app, app_env, wait_until
) -> None:
    app.switch_page("views/retrain.py").run()
    assert not app.exception
    assert app.number_input(key="rt_cap").value == 2048
    app.radio(key="rt_mode").set_value("random sample").run()
    app.number_input(key="rt_n").set_value(32).run()
    app.text_input(key="rt_beta").set_value("0.05, 20").run()
    app.number_input(key="rt_steps").set_value(10).run()
    assert "32 images" in "\n".join(m.value for m in app.markdown)
    app.button(key="rt_start_btn").click().run()
    assert not app.exception
    _run_until(app, wait_until, _has_results)
    table = app.dataframe[0].value
    assert list(table["model"]) == ["base (loaded)", "β = 0.05", "β = 20"]
    assert (table["rate_nats"] > 0).all() and (table["distortion_mse"] > 0).all()
    # The sweep's higher β spends fewer nats.
    rate = dict(zip(table["model"], table["rate_nats"], strict=True))
    assert rate["β = 20"] < rate["β = 0.05"]
    # Picking a point of the rate-distortion plot selects that model.
    app.session_state["rt_rd"] = {"selection": {"points": [{"customdata": "β = 20"}]}}
    app.run()
    assert app.selectbox(key="rt_choice").value == "β = 20"
    # ... and loads it into the explorer, while the comparison keeps the job's base.
    assert app.session_state["model"].endswith("beta-20")
    assert app.dataframe[0].value["model"].iloc[0] == "base (loaded)"
    assert "β = 20" in "\n".join(m.value for m in app.sidebar.markdown)
    app.session_state["model"] = "models/demo"
    app.run()
    app.text_input(key="rt_name").set_value("../escape").run()
    app.button(key="rt_save").click().run()
    assert any("Not saved" in e.value for e in app.error)
    app.text_input(key="rt_name").set_value("beta20-test").run()
    app.button(key="rt_save").click().run()
    assert any("Saved as runs/beta20-test" in s.value for s in app.success)
    assert load_checkpoint(sources.runs_root() / "beta20-test").config["beta"] == 20.0
    app.button(key="rt_use").click().run()
    assert app.session_state["model"].startswith("jobs/") and app.session_state["model"].endswith(
        "beta-20"
    )
    sidebar = "\n".join(m.value for m in app.sidebar.markdown)
    assert "β = 20" in sidebar


def test_capacity_job_reaches_the_pages_c_max(app, app_env, wait_until) -> None:
    # Every schedule setting on the page reaches vae.train: C climbs to the chosen C max within
    # the chosen steps (TrainConfig's 10000 would leave a 10-step job at C = 0.025 of C max).
    app.switch_page("views/retrain.py").run()
    app.radio(key="rt_mode").set_value("random sample").run()
    app.number_input(key="rt_n").set_value(16).run()
    app.text_input(key="rt_beta").set_value("1").run()
    app.number_input(key="rt_steps").set_value(10).run()
    app.selectbox(key="rt_schedule").set_value("capacity").run()
    # C reaches its max at three quarters of the job's steps by default: the page's own setting.
    assert app.number_input(key="rt_capacity_steps").value == 7
    app.number_input(key="rt_capacity_max").set_value(3.5).run()
    app.button(key="rt_start_btn").click().run()
    assert not app.exception
    _run_until(app, wait_until, _has_results)
    (job_id,) = app.session_state["rt_base"]
    metrics = sources.jobs_root() / job_id / "beta-1" / "metrics.jsonl"
    train = [r for r in map(json.loads, metrics.read_text().splitlines()) if r["split"] == "train"]
    assert train[-1]["step"] == 10 and train[-1]["capacity"] == 3.5
