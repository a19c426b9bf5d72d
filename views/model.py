"""Model: the loaded checkpoint's card, its training curves, KL per dim, and how well the latents
carry each label."""

from __future__ import annotations

import json

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from explorer.probes import dim_label_scores, probe_scores
from vae.train import read_metrics
from views import state

checkpoint, dataset, atlas = state.current()
c = checkpoint.config
st.title("Model")

left, right = st.columns([1, 1])
with left:
    st.subheader("Checkpoint")
    st.markdown(
        f"- **β = {c.get('beta')}**, reconstruction term **{c.get('recon')}** "
        f"({'sum of squared errors per image' if c.get('recon') == 'sse' else 'mean squared error per pixel'})\n"
        f"- schedule: `{c.get('schedule', {}).get('kind', '?')}`\n"
        f"- architecture: {checkpoint.model_config.image_size}² px, channels "
        f"{list(checkpoint.model_config.channels)}, dz {checkpoint.model_config.latent_dim}\n"
        f"- normalization: `{json.dumps(c['preprocessing']['normalization'])}`\n"
        f"- trained for {c.get('step', '?')} steps on {c.get('dataset', {}).get('n_train', '?')} images "
        f"(dataset fingerprint `{str(c.get('dataset', {}).get('fingerprint', ''))[:12]}`)\n"
        f"- id `{checkpoint.id[:16]}`, package {c.get('version')}, torch {c.get('torch')}"
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
        fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                            subplot_titles=("reconstruction", "KL (nats)", "active units (validation)"))  # fmt: skip
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
fig.update_layout(height=240, margin={"l": 10, "r": 10, "t": 10, "b": 10}, xaxis_title="rank",
                  yaxis_title="mean KL (nats)", yaxis_type="log")  # fmt: skip
st.plotly_chart(fig, key="model_kl", width="stretch")
st.caption(
    f"{atlas.active_units} active units (mean KL > 0.01 nats) of {len(kl)}, total KL {kl.sum():.1f} nats, on this dataset."
)

st.subheader("What the latents carry")


@st.cache_data(show_spinner="fitting linear probes", max_entries=8)
def _probes(checkpoint_id: str, dataset_fp: str) -> object:
    # Probe from the active units only: the inactive dims are posterior noise, and 512 noisy
    # features overfit a few hundred labelled samples.
    return probe_scores(atlas.mu_active, atlas.labels)


@st.cache_data(show_spinner="scoring dims against labels", max_entries=16)
def _scores(checkpoint_id: str, dataset_fp: str, k: int, method: str) -> object:
    return dim_label_scores(atlas.mu, atlas.labels, atlas.dim_order[:k], method)


probes = _probes(checkpoint.id, dataset.fingerprint())
if probes.empty:
    st.caption("This dataset has no label columns (add a labels.csv to the folder).")
else:
    st.markdown("A linear probe from μ of the active units, scored on a held-out 25%: accuracy for categorical labels, "
                "R² for continuous ones.")  # fmt: skip
    st.dataframe(probes.round(3), hide_index=True)
    h1, h2 = st.columns([1, 3])
    k = int(h1.number_input("Top-K dims", 2, 64, 16, key="model_k"))
    method = h1.radio("Score", ["mi", "spearman"], key="model_method",
                      format_func=lambda m: "mutual information / H(label)" if m == "mi" else "|Spearman ρ|")  # fmt: skip
    scores = _scores(checkpoint.id, dataset.fingerprint(), k, method)
    heat = go.Figure(go.Heatmap(z=scores.score.T, x=[f"z{d}" for d in scores.dims], y=scores.labels,
                                colorscale="Viridis", zmin=0))  # fmt: skip
    heat.update_layout(
        height=80 + 30 * len(scores.labels), margin={"l": 10, "r": 10, "t": 10, "b": 10}
    )
    h2.plotly_chart(heat, key="model_heat", width="stretch")
    gap = {lab: round(float(g), 3) for lab, g in zip(scores.labels, scores.gap, strict=True)}
    h1.markdown(
        "**MIG-style gap** (top dim − second, per label): a large gap means one dim isolates the label."
    )
    h1.dataframe(gap, column_config={"value": "gap"})
