"""Retrain: fine-tune or retrain on a small subset with one β or a sweep, in the background, and
see the trade-off between reconstruction and KL as a rate–distortion curve."""

from __future__ import annotations

import os
import uuid
from dataclasses import fields

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from explorer import serving, sources
from explorer.atlas import build_atlas
from explorer.compare import rate_distortion
from explorer.jobs import (
    DONE,
    FAILED,
    QUEUED,
    RUNNING,
    SUBSET_CAP,
    JobLimitError,
    JobManager,
    JobRequest,
)
from explorer.runs import save_run
from vae.inference import decode
from vae.schedule import SCHEDULES
from vae.train_config import TrainConfig
from views import state

MAX_JOBS_ENV = "SPECKLE_VAE_MAX_JOBS"  # concurrent jobs per server (default 1, for 2 cores)
PER_SESSION_ENV = "SPECKLE_VAE_JOBS_PER_SESSION"  # running or queued jobs per browser session
TRAIN_HELP = {f.name: f.metadata["help"] for f in fields(TrainConfig)}  # vae.train's --help


@st.cache_resource
def manager() -> JobManager:
    """One job manager per server process, shared by every session."""
    m = JobManager(
        sources.jobs_root(),
        max_running=int(os.environ.get(MAX_JOBS_ENV, "1")),
        per_session=int(os.environ.get(PER_SESSION_ENV, "1")),
    )
    m.start_watcher()
    return m


checkpoint, dataset, atlas = state.current()
session = st.session_state.setdefault("session_id", uuid.uuid4().hex)
jobs = manager()
n = len(atlas.mu)
st.title("Retrain")
if checkpoint.kind != "vae":
    st.info(
        "Retraining is not available for this model: it was imported as exported programs "
        "(torch.export), and its training code is yours; this page trains only the app's own "
        "architecture."
    )
    st.stop()
st.caption(
    "Train on a small subset in the background, with one β or a sweep, and watch reconstruction "
    "trade against KL. β too high collapses the posterior; β too low leaves a latent space that is "
    f"hard to use. The page stays usable while a job runs; at most {jobs.max_running} job(s) run at "
    "once on this server, the others queue."
)

# --- subset
st.subheader("Subset")
c1, c2 = st.columns([2, 1])
selection = st.session_state.get("selection", [])
modes = (["map selection"] if selection else []) + ["label filter", "random sample"]
mode = c1.radio("Images", modes, horizontal=True, key="rt_mode")
cap = int(
    c2.number_input(
        "Cap",
        16,
        100_000,
        SUBSET_CAP,
        64,
        key="rt_cap",
        help="Larger subsets take proportionally longer per epoch",
    )
)
if mode == "map selection":
    ids = list(selection)
elif mode == "label filter":
    cols = [c for c in atlas.labels.columns if c not in ("file", "pattern")]
    if not cols:
        st.warning("This dataset has no labels; use a random sample or a map selection.")
        ids = []
    else:
        f1, f2 = st.columns(2)
        col = f1.selectbox("Label", cols, key="rt_label")
        values = sorted(atlas.labels[col].dropna().unique().tolist(), key=str)[:200]
        chosen = f2.multiselect("Values", values, default=values[:2], key="rt_values")
        ids = np.flatnonzero(atlas.labels[col].isin(chosen).to_numpy()).tolist()
else:
    k = int(st.number_input("N random samples", 16, n, min(512, n), key="rt_n"))
    ids = np.sort(np.random.default_rng(0).choice(n, k, replace=False)).tolist()
capped = len(ids) > cap
ids = ids[:cap]
st.markdown(f"**{len(ids)} images** in the subset" + (f" (capped at {cap})" if capped else ""))

# --- settings
st.subheader("Settings")
s1, s2, s3, s4, s5 = st.columns(5)
beta_text = s1.text_input(
    "β (a list sweeps)",
    str(checkpoint.beta),
    key="rt_beta",
    help=f"In the {checkpoint.recon} convention, like the loaded model",
)
schedule = s2.selectbox("Schedule", SCHEDULES, key="rt_schedule", help=TRAIN_HELP["schedule"])
steps = int(s3.number_input("Steps", 10, 20000, JobRequest.steps, 50, key="rt_steps"))
lr = float(
    s4.select_slider(
        "Learning rate", [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3], JobRequest.lr, key="rt_lr"
    )
)
start = s5.radio("Start from", ["loaded model", "scratch"], key="rt_start")
# The chosen schedule's own settings, under TrainConfig's field names. Step counts default to
# fractions of this job's steps: TrainConfig's are for a full run, which a 300-step job never reaches.
schedule_settings: dict = {}
if schedule == "warmup":
    schedule_settings["warmup_steps"] = int(
        st.number_input(
            "Warmup steps",
            1,
            20000,
            max(1, steps // 3),
            key="rt_warmup_steps",
            help=TRAIN_HELP["warmup_steps"] + "; a third of the job's steps by default",
        )
    )
elif schedule == "cyclical":
    k1, k2 = st.columns(2)
    schedule_settings["cycles"] = int(
        k1.number_input(
            "Cycles", 1, 100, TrainConfig.cycles, key="rt_cycles", help=TRAIN_HELP["cycles"]
        )
    )
    schedule_settings["cycle_ratio"] = float(
        k2.slider(
            "Ramp fraction",
            0.05,
            1.0,
            TrainConfig.cycle_ratio,
            0.05,
            key="rt_cycle_ratio",
            help=TRAIN_HELP["cycle_ratio"],
        )
    )
elif schedule == "capacity":
    k1, k2 = st.columns(2)
    schedule_settings["capacity_max"] = float(
        k1.number_input(
            "C max (nats)",
            0.0,
            1000.0,
            TrainConfig.capacity_max,
            key="rt_capacity_max",
            help=TRAIN_HELP["capacity_max"] + "; β above is the weight γ of |KL − C|",
        )
    )
    schedule_settings["capacity_steps"] = int(
        k2.number_input(
            "Steps to reach C max",
            1,
            20000,
            max(1, steps * 3 // 4),
            key="rt_capacity_steps",
            help=TRAIN_HELP["capacity_steps"]
            + "; three quarters of the job's steps by default, so that its last quarter trains "
            "at C max",
        )
    )
try:
    betas = tuple(float(b) for b in beta_text.replace(";", ",").split(",") if b.strip())
except ValueError:
    betas = ()
    st.error(f"β must be a number or a comma-separated list, got {beta_text!r}")

names = tuple(atlas.labels["file"].iloc[ids])
preset = checkpoint.config.get("train", {}).get("preset", "demo")
request = None
if betas and len(ids) >= 4:
    try:
        request = JobRequest(
            data=str(dataset.root),
            names=names,
            betas=betas,
            steps=steps,
            lr=lr,
            schedule=schedule,
            **schedule_settings,
            init_from=str(checkpoint.path) if start == "loaded model" else "",
            preset=preset,
            recon=checkpoint.recon,
            normalization=checkpoint.config["preprocessing"]["normalization"]["mode"],
            batch_size=min(32, max(4, len(ids) // 4)),
        )
    except ValueError as e:
        st.error(str(e))
if st.button("Start", type="primary", disabled=request is None, key="rt_start_btn"):
    try:
        submitted = jobs.submit(session, request)
        # The base of the comparison stays the model the job started from, whatever is loaded later.
        st.session_state.setdefault("rt_base", {})[submitted.id] = st.session_state.get(
            "model", sources.DEMO_MODEL
        )
    except JobLimitError as e:
        st.error(str(e))


# --- the job, polled without rerunning the page
@st.fragment(run_every=1.0)
def job_status() -> None:
    jobs.heartbeat(session)
    jobs.poll()
    mine = jobs.session_jobs(session)
    if not mine:
        st.caption("No job yet.")
        return
    job = mine[-1]
    st.session_state.setdefault("rt_seen", {})
    if job.state == QUEUED:
        st.info(f"Queued: position {jobs.queue_position(job.id)} (other sessions' jobs run first).")
    elif job.state == RUNNING:
        p = job.progress()
        eta = f", about {p['eta_s']:.0f} s left" if p["eta_s"] is not None else ""
        beta = job.runs[max(job.current, 0)].beta
        st.progress(
            p["fraction"],
            f"run {job.current + 1} of {len(job.runs)} (β = {beta:g}); "
            f"{p['done']} of {p['total']} steps over all runs{eta}",
        )
        if p["rows"]:
            rows = pd.DataFrame(p["rows"])
            l1, l2, l3 = st.columns(3)
            l1.line_chart(rows, x="step", y="recon", height=160)
            l2.line_chart(rows, x="step", y="kl", height=160)
            l3.line_chart(rows, x="step", y="active_units", height=160)
        if st.button("Cancel", key="rt_cancel"):
            jobs.cancel(job.id)
            st.rerun()
    elif job.state == FAILED:
        st.error(f"The job failed: {job.error}")
    else:
        st.success(f"Job {job.id}: {job.state}.")
    if job.state in (DONE, FAILED) and st.session_state["rt_seen"].get(job.id) != job.state:
        st.session_state["rt_seen"][job.id] = job.state
        st.rerun()  # show the results below


st.subheader("Job")
job_status()

# --- results of this session's latest finished job
finished = [j for j in jobs.session_jobs(session) if j.state == DONE]
if not finished:
    st.stop()
job = finished[-1]
st.subheader("Results")


@st.cache_resource(max_entries=32, show_spinner="measuring the models on the subset")
def _measure(model_name: str, dataset_fp: str, names: tuple[str, ...]):
    ck = state.load_model(model_name)
    sub = dataset.subset(list(names))
    sub_atlas = build_atlas(ck, sub)
    region = state.lit_region(dataset, ck.model_config.image_size)
    return sub_atlas, rate_distortion(sub_atlas, mask=region.mask)


jobs_prefix = f"jobs/{job.id}"
base_name = st.session_state.get("rt_base", {}).get(
    job.id, st.session_state.get("model", sources.DEMO_MODEL)
)
candidates = {"base (loaded)": base_name}
candidates |= {f"β = {r.beta:g}": f"{jobs_prefix}/{r.dir.name}" for r in job.runs}
measured = {
    label: _measure(name, dataset.fingerprint(), job.request.names)
    for label, name in candidates.items()
}
table = pd.DataFrame([{"model": label, **m} for label, (_, m) in measured.items()])
st.dataframe(table.round(5), hide_index=True)

rd = go.Figure()
for label, (_, m) in measured.items():
    base = label.startswith("base")
    rd.add_trace(
        go.Scatter(
            x=[m["rate_nats"]],
            y=[m["distortion_mse"]],
            mode="markers+text",
            text=[label],
            textposition="top center",
            customdata=[label],
            name=label,
            marker={
                "size": 16 if base else 12,
                "symbol": "star" if base else "circle",
                "color": "black" if base else "crimson",
            },
        )
    )
runs_only = [m for label, (_, m) in measured.items() if not label.startswith("base")]
if len(runs_only) > 1:
    order = sorted(runs_only, key=lambda m: m["rate_nats"])
    rd.add_trace(
        go.Scatter(
            x=[m["rate_nats"] for m in order],
            y=[m["distortion_mse"] for m in order],
            mode="lines",
            line={"dash": "dot", "color": "crimson"},
            showlegend=False,
            hoverinfo="skip",
        )
    )
rd.update_layout(
    height=360,
    xaxis_title="rate: KL (nats per image)",
    yaxis_title="distortion: MSE per pixel",
    margin={"l": 10, "r": 10, "t": 10, "b": 10},
    showlegend=False,
    clickmode="event+select",
)
r1, r2 = st.columns([3, 2])
with r1:
    st.plotly_chart(rd, key="rt_rd", on_select="rerun", selection_mode=("points",), width="stretch")
    st.caption(
        "Rate–distortion on the subset: one point per β of the sweep, the base model as a star. Click a point to pick it."
    )
picked = None
event = st.session_state.get("rt_rd") or {}
for point in (event.get("selection") or {}).get("points") or []:
    custom = point.get("customdata")
    picked = custom[0] if isinstance(custom, (list, tuple)) else custom
run_labels = [label for label in candidates if not label.startswith("base")]
if picked in run_labels and picked != st.session_state.get("rt_last_pick"):
    # A click on a point loads that model into the explorer (and picks it below).
    st.session_state["rt_choice"] = picked
    st.session_state["rt_last_pick"] = picked
    state.switch_model(candidates[picked])
with r2:
    choice = st.selectbox("Model", run_labels, key="rt_choice")
    if st.button("Use this model", key="rt_use"):
        state.switch_model(candidates[choice])
    name = st.text_input(
        "Save as runs/…", f"retrain-{job.id}-{choice.split('= ')[-1]}", key="rt_name"
    )
    if st.button("Save", key="rt_save"):
        try:
            save_run(sources.model_path(candidates[choice]) / "checkpoint", name)
            state.refresh_choices()
            st.success(f"Saved as runs/{name}; it is now in the model picker.")
        except (sources.PathError, OSError, ValueError) as e:
            st.error(f"Not saved: {e}")

# Side by side on the same samples: base and the chosen run.
base_atlas, base_m = measured["base (loaded)"]
run_atlas, run_m = measured[choice]
show = np.arange(min(6, len(base_atlas.mu)))
x = [base_atlas.dataset.image(int(i)) for i in show]
rec_base = decode(serving.model(base_atlas.checkpoint), base_atlas.mu[show])
rec_run = decode(serving.model(run_atlas.checkpoint), run_atlas.mu[show])
st.markdown(f"**Inputs, base reconstructions, and {choice}** (the same subset images)")
st.image(
    [np.clip(i, 0, 1) for i in x],
    width=96,
    caption=[f"input {i}" for i in show],
    clamp=True,
    output_format="PNG",
)
st.image(
    [np.clip(i, 0, 1) for i in rec_base],
    width=96,
    caption=["base"] * len(show),
    clamp=True,
    output_format="PNG",
)
st.image(
    [np.clip(i, 0, 1) for i in rec_run],
    width=96,
    caption=[choice] * len(show),
    clamp=True,
    output_format="PNG",
)
kl_fig = go.Figure()
for label, a in (("base", base_atlas), (choice, run_atlas)):
    kl_fig.add_trace(
        go.Scatter(y=np.sort(a.kl_per_dim)[::-1][:128], name=f"{label}: {a.active_units} active")
    )
kl_fig.add_hline(y=0.01, line_dash="dot")
kl_fig.update_layout(
    height=260,
    yaxis_type="log",
    xaxis_title="dim rank",
    yaxis_title="KL (nats)",
    margin={"l": 10, "r": 10, "t": 10, "b": 10},
)
st.plotly_chart(kl_fig, key="rt_kl", width="stretch")
st.caption(
    f"Speckle contrast ratio K_rec/K_in in the lit region ({state.lit_region(dataset, checkpoint.model_config.image_size).source}): "
    f"base {base_m['contrast_ratio']:.3f}, {choice} {run_m['contrast_ratio']:.3f}."
)
