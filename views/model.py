"""Model: the loaded checkpoint's card, its training curves, KL per dim, and how well the latents
carry each label."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from common.run_log import read_metrics
from explorer.probes import dim_label_scores, probe_table
from vae.probes import (
    ROBUST_NATS,
    curve_ks,
    figure_text,
    holdout_split,
    pca_at_k,
    pca_ev_curve,
)
from views import state


def imported_from(record: dict | None) -> str:
    """The model card's line on where an imported model came from (vae.import_weights,
    vae.import_exported), or nothing for one trained here."""
    if not record:
        return ""
    src = record.get("source", {})
    files = [src] if "path" in src else list(src.values())
    names = ", ".join(
        f"`{Path(f.get('path', '?')).name}` (sha256 `{str(f.get('sha256'))[:12]}`)" for f in files
    )
    return f"\n- imported ({record.get('kind')}) from {names}"


checkpoint, dataset, atlas = state.current()
c = checkpoint.config
st.title("Model")

left, right = st.columns([1, 1])
with left:
    st.subheader("Checkpoint")
    st.markdown(
        f"- **β = {c.get('beta') if c.get('beta') is not None else 'unknown'}**, "
        f"reconstruction term **{c.get('recon')}** "
        f"({'sum of squared errors per image' if c.get('recon') == 'sse' else 'mean squared error per pixel'})\n"
        f"- schedule: `{c.get('schedule', {}).get('kind', '?')}`\n"
        f"- architecture: {checkpoint.model_config.describe()}\n"
        f"- normalization: `{json.dumps(c['preprocessing']['normalization'])}`\n"
        f"- trained for {c.get('step', '?')} steps on {c.get('dataset', {}).get('n_train', '?')} images "
        f"(dataset fingerprint `{str(c.get('dataset', {}).get('fingerprint', ''))[:12]}`)\n"
        f"- id `{checkpoint.id[:16]}`, package {c.get('version')}, torch {c.get('torch')}"
        + imported_from(c.get("import"))
    )
    st.markdown("**Training command**")
    st.code(c.get("command", "(not recorded)"), language="bash")
    if c.get("metrics"):
        st.markdown("**Final validation metrics**")
        st.json(c["metrics"], expanded=False)
with right:
    st.subheader("Training curves")
    log = checkpoint.path / "metrics.jsonl"
    if not log.exists():
        log = checkpoint.path.parent / "metrics.jsonl"
    rows = read_metrics(log)
    train = [r for r in rows if r.get("split") == "train"]
    val = [r for r in rows if r.get("split") == "val"]
    if not rows:
        st.caption("No metrics.jsonl beside this checkpoint.")
    else:
        fig = make_subplots(
            rows=3,
            cols=1,
            shared_xaxes=True,
            vertical_spacing=0.06,
            subplot_titles=("reconstruction", "KL (nats)", "active units (validation)"),
        )
        fig.add_trace(
            go.Scatter(
                x=[r["step"] for r in train], y=[r["recon"] for r in train], name="train recon"
            ),
            1,
            1,
        )
        fig.add_trace(
            go.Scatter(
                x=[r["step"] for r in val],
                y=[r["recon"] for r in val],
                name="val recon",
                mode="lines+markers",
            ),
            1,
            1,
        )
        fig.add_trace(
            go.Scatter(x=[r["step"] for r in train], y=[r["kl"] for r in train], name="train KL"),
            2,
            1,
        )
        fig.add_trace(
            go.Scatter(
                x=[r["step"] for r in val],
                y=[r["kl"] for r in val],
                name="val KL",
                mode="lines+markers",
            ),
            2,
            1,
        )
        fig.add_trace(
            go.Scatter(
                x=[r["step"] for r in val],
                y=[r["active_units"] for r in val],
                name="active units",
                mode="lines+markers",
            ),
            3,
            1,
        )
        fig.update_layout(height=520, margin={"l": 10, "r": 10, "t": 30, "b": 10}, showlegend=False)
        fig.update_xaxes(title_text="step", row=3, col=1)
        fig.update_yaxes(type="log", row=1, col=1)  # the first steps would flatten the rest
        st.plotly_chart(fig, key="model_curves", width="stretch")

st.subheader("KL per dimension")
kl = atlas.kl_per_dim
order = atlas.dim_order
fig = go.Figure(go.Bar(x=np.arange(len(kl)), y=kl[order], hovertext=[f"z{d}" for d in order]))
fig.add_hline(y=0.01, line_dash="dot", annotation_text="0.01 nats")
fig.update_layout(
    height=240,
    margin={"l": 10, "r": 10, "t": 10, "b": 10},
    xaxis_title="rank",
    yaxis_title="mean KL (nats)",
    yaxis_type="log",
)
st.plotly_chart(fig, key="model_kl", width="stretch")
st.caption(
    f"{atlas.active_units} active units (mean KL > 0.01 nats) of {len(kl)}, total KL {kl.sum():.1f} nats, on this dataset."
)

st.subheader("What the latents carry")


@st.cache_data(show_spinner="fitting linear probes and their PCA baselines", max_entries=8)
def _probes(checkpoint_id: str, dataset_fp: str) -> tuple:
    idx, images, patterns = state.dataset_arrays(dataset)
    labels = atlas.labels.iloc[idx].reset_index(drop=True)
    return probe_table(atlas.mu[idx], atlas.kl_per_dim, images, labels, patterns)


@st.cache_data(show_spinner="scoring dims against labels", max_entries=16)
def _scores(checkpoint_id: str, dataset_fp: str, k: int) -> object:
    return dim_label_scores(
        atlas.mu, atlas.labels, atlas.dim_order[:k], np.flatnonzero(atlas.active)
    )


@st.cache_data(show_spinner="fitting PCA at every K", max_entries=8)
def _ev_curve(checkpoint_id: str, dataset_fp: str) -> tuple[dict, float, float]:
    idx, images, _ = state.dataset_arrays(dataset)
    labels = atlas.labels.iloc[idx]
    groups = labels["source_index"].to_numpy() if "source_index" in labels else None
    split = holdout_split(len(images), groups)
    robust = int((atlas.kl_per_dim > ROBUST_NATS).sum())
    ks = curve_ks(atlas.active_units, robust, top=min(256, len(split.train) - 1))
    curve = pca_ev_curve(images, split, ks)
    test, mean = images[split.test], images[split.train].mean(0)
    errors = state.errors_of(atlas, idx[split.test], test)
    vae_ev = 1.0 - float(np.mean(errors) / np.mean((test - mean) ** 2))
    return curve, vae_ev, robust


table, readout = _probes(checkpoint.id, dataset.fingerprint())
if table.empty:
    st.caption("This dataset has no label columns (add a labels.csv to the folder).")
else:
    st.markdown(
        "Held-out linear probes (accuracy for classes, R² for continuous labels), on one split "
        "that keeps each source sample on one side. The **code** is the active dims (KL > 0.01 "
        "nats); each probe sits beside PCA of the speckle with the same number of components, "
        "fitted on the training split. K is at most half the labelled training split (past "
        "that a linear probe can fit any labels); a capped K says so, and the code then reads "
        "its K dims with the most KL. A baseline below chance shows as *failed*: it gives no "
        "number to beat. *All μ* reads the inactive dims too: encoder features the decoder "
        "ignores, not the code. The same numbers as `python -m vae.evaluate --probe-label LABEL` "
        "(on up to 4,096 images)."
    )
    st.dataframe(table, hide_index=True)
    if readout:
        top = readout["readout_k"]
        st.caption(
            "Input pattern read-out (ridge regression to the pattern, held-out PCC): code "
            f"{figure_text(readout, 'pattern_readout_pcc')}, PCA at the same K "
            f"{figure_text(readout, 'pca_pattern_readout_pcc')}, all the speckle's pixels "
            f"{figure_text(readout, 'pixel_pattern_readout_pcc')}, the mean pattern (chance) "
            f"{figure_text(readout, 'mean_pattern_pcc')}. Through all its dims any rich code reads "
            f"about as well as the pixels; the **read-out ratio** reads the {top} dims with the "
            f"most KL against PCA at {top}, above the mean pattern: "
            f"**{figure_text(readout, 'pattern_readout_ratio')}** (about 1 for a model trained on "
            "this fibre, well below for one trained on another: docs/validation.md)."
        )
    h1, h2 = st.columns([1, 3])
    k = int(h1.number_input("Top-K dims", 2, 64, 16, key="model_k"))
    scores = _scores(checkpoint.id, dataset.fingerprint(), k)
    heat = go.Figure(
        go.Heatmap(
            z=scores.score.T,
            x=[f"z{d}" for d in scores.dims],
            y=[f"{lab} ({m})" for lab, m in zip(scores.labels, scores.measures, strict=True)],
            colorscale="Viridis",
            zmin=0,
        )
    )
    heat.update_layout(
        height=80 + 30 * len(scores.labels), margin={"l": 10, "r": 10, "t": 10, "b": 10}
    )
    h2.plotly_chart(heat, key="model_heat", width="stretch")
    gap = {lab: round(float(g), 3) for lab, g in zip(scores.labels, scores.gap, strict=True)}
    h1.markdown(
        f"**MIG-style gap** (top dim − second, over all {scores.gap_dims} active dims): a large gap "
        "means one dim isolates the label. Classes are scored by NMI with the shuffled-label bias "
        "removed (an unrelated dim scores about 0), continuous labels by |Spearman ρ|."
    )
    h1.dataframe(gap, column_config={"value": "gap"})

st.subheader("Explained variance at equal K")
curve, vae_ev, robust = _ev_curve(checkpoint.id, dataset.fingerprint())
ev = go.Figure(go.Scatter(x=list(curve), y=list(curve.values()), mode="lines+markers", name="PCA"))
for kk, name in ((atlas.active_units, "active dims"), (robust, "robust dims")):
    ev.add_trace(
        go.Scatter(
            x=[kk],
            y=[vae_ev],
            mode="markers",
            marker={"size": 12, "symbol": "star"},
            name=f"this VAE ({name}: {kk})",
        )
    )
ev.update_layout(
    height=300,
    margin={"l": 10, "r": 10, "t": 10, "b": 10},
    xaxis_type="log",
    xaxis_title="K (components or dims)",
    yaxis_title="held-out EV",
)
st.plotly_chart(ev, key="model_ev", width="stretch")
st.caption(
    f"This VAE's EV is {vae_ev:.3f} with {atlas.active_units} active dims ({robust} with KL > 0.1). "
    f"PCA of the speckle reaches {pca_at_k(curve, atlas.active_units)}"
    + (f" and {pca_at_k(curve, robust)}." if robust else ".")
)
