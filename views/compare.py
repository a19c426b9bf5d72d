"""Compare: two checkpoints on the same data: which dims encode the same thing, synchronized
traversals of matched dims, and their two maps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from explorer import serving, sources
from explorer.compare import match_dims
from explorer.latent_ops import set_dims
from vae.inference import decode
from views import figures, state, widgets

checkpoint, dataset, atlas = state.current()
st.title("Compare")
st.caption(
    "Two models, the same images (the dataset in the sidebar). Their latent dims are matched one "
    "to one by the |correlation| of μ (Hungarian algorithm), so you can see whether a retrained or "
    "re-seeded model found the same factors."
)
models = sources.list_models()
c1, c2, c3 = st.columns(3)
name_a = c1.selectbox(
    "Model A",
    models,
    index=models.index(st.session_state.get("model", models[0]))
    if st.session_state.get("model") in models
    else 0,
    key="cmp_a",
)
name_b = c2.selectbox("Model B", models, index=min(1, len(models) - 1), key="cmp_b")
k = int(c3.number_input("Top-K dims of each", 2, 64, 12, key="cmp_k"))
if len(models) < 2:
    st.info("Only one model is available: train or save another (Retrain page, or runs/).")
    st.stop()

ck_a, ck_b = state.load_model(name_a), state.load_model(name_b)
if ck_a.model_config.image_size != ck_b.model_config.image_size:
    st.error("The two models take different image sizes; compare models of the same size.")
    st.stop()
atlas_a = state.atlas_for(ck_a, st.session_state.get("dataset", sources.SIMULATED))
atlas_b = state.atlas_for(ck_b, st.session_state.get("dataset", sources.SIMULATED))
model_a, model_b = serving.model(ck_a), serving.model(ck_b)
dims_a, dims_b = atlas_a.dim_order[:k], atlas_b.dim_order[:k]
m = match_dims(atlas_a.mu, atlas_b.mu, dims_a, dims_b)

left, right = st.columns([3, 2])
with left:
    heat = go.Figure(
        go.Heatmap(
            z=m["corr"],
            x=[f"B z{d}" for d in m["dims_b"]],
            y=[f"A z{d}" for d in m["dims_a"]],
            colorscale="Viridis",
            zmin=0,
            zmax=1,
            colorbar={"title": {"text": "|ρ|"}},
        )
    )
    heat.update_layout(
        height=420, margin={"l": 10, "r": 10, "t": 10, "b": 10}, yaxis={"autorange": "reversed"}
    )
    st.plotly_chart(heat, key="cmp_heat", width="stretch")
    st.caption(
        "|Pearson ρ| of μ between A's and B's top dims by KL; matched pairs on the diagonal."
    )
with right:
    st.dataframe(
        [{"A dim": a, "B dim": b, "|ρ|": round(r, 3)} for a, b, r in m["pairs"]],
        hide_index=True,
        height=420,
    )

st.subheader("Synchronized traversal")
s1, s2, s3 = st.columns(3)
pair = s1.selectbox(
    "Matched pair",
    range(len(m["pairs"])),
    key="cmp_pair",
    format_func=lambda i: (
        f"A z{m['pairs'][i][0]} ↔ B z{m['pairs'][i][1]} (|ρ| {m['pairs'][i][2]:.2f})"
    ),
)
sample = int(s2.number_input("Sample id", 0, len(atlas_a.mu) - 1, 0, key="cmp_sample"))
value = s3.slider("Move (σ)", -3.0, 3.0, 0.0, 0.25, key="cmp_value")
da, db, _ = m["pairs"][pair]
# Correlated dims may run in opposite directions: move B's dim with the sign of the correlation.
sign = float(np.sign(np.corrcoef(atlas_a.mu[:, da], atlas_b.mu[:, db])[0, 1]) or 1.0)
za = set_dims(atlas_a.mu[sample], {da: value}, atlas_a.scale)
zb = set_dims(atlas_b.mu[sample], {db: sign * value}, atlas_b.scale)
steps = np.linspace(-3, 3, 7)
row_a = decode(
    model_a, np.stack([set_dims(atlas_a.mu[sample], {da: v}, atlas_a.scale) for v in steps])
)
row_b = decode(
    model_b,
    np.stack([set_dims(atlas_b.mu[sample], {db: sign * v}, atlas_b.scale) for v in steps]),
)
i1, i2 = st.columns(2)
with i1:
    widgets.show_image(
        serving.decode_interactive(model_a, za[None])[0],
        f"A ({name_a}): z{da} {value:+.2f}σ",
        width=200,
    )
    st.image(
        np.concatenate(list(np.clip(row_a, 0, 1)), axis=1),
        caption="A: −3σ … +3σ",
        clamp=True,
        output_format="PNG",
    )
with i2:
    widgets.show_image(
        serving.decode_interactive(model_b, zb[None])[0],
        f"B ({name_b}): z{db} {sign * value:+.2f}σ",
        width=200,
    )
    st.image(
        np.concatenate(list(np.clip(row_b, 0, 1)), axis=1),
        caption="B: −3σ … +3σ",
        clamp=True,
        output_format="PNG",
    )

st.subheader("Maps")
m1, m2 = st.columns(2)
for col, a, name, key in ((m1, atlas_a, name_a, "cmp_map_a"), (m2, atlas_b, name_b, "cmp_map_b")):
    with col:
        proj, status = state.projection(a, "umap")
        labels = a.labels
        color = labels["digit"].astype(str).to_numpy() if "digit" in labels.columns else None
        fig = figures.map_figure(
            proj.coords,
            color,
            "digit" if color is not None else "",
            figures.hover_text(a),
            height=360,
        )
        st.plotly_chart(fig, key=key, width="stretch")
        st.caption(
            f"{name}: β = {a.checkpoint.beta:g} ({a.checkpoint.recon}), {a.active_units} active units. {status}"
        )

st.subheader("Rate–distortion of every model")
st.caption(
    "Each model on this dataset: rate (mean KL per image, nats) against distortion (MSE per pixel "
    "of the z = μ reconstruction). The shipped β ladder (models/) shows the trade-off between a "
    "faithful reconstruction and a compact code; retrained or saved runs appear beside it."
)
same_size = [
    n for n in models if state.load_model(n).model_config.image_size == ck_a.model_config.image_size
]
if st.button(f"Measure all {len(same_size)} models", key="cmp_rd"):
    st.session_state["cmp_rd_done"] = True
if st.session_state.get("cmp_rd_done"):
    region = state.lit_region(dataset, ck_a.model_config.image_size)
    bar, points = st.progress(0.0, "encoding the dataset with each model"), []
    for i, name in enumerate(same_size):
        bar.progress(i / len(same_size), f"{name}: encoding and reconstructing the dataset")
        ck = state.load_model(name)
        a = state.atlas_for(ck, st.session_state.get("dataset", sources.SIMULATED))
        state.recon_errors(a)
        points.append({"model": name, **state.rate_distortion_of(a, region)})
    bar.empty()
    points.sort(key=lambda p: p["rate_nats"])
    rd = go.Figure(
        go.Scatter(
            x=[p["rate_nats"] for p in points],
            y=[p["distortion_mse"] for p in points],
            mode="lines+markers+text",
            text=[f"{p['model'].split('/')[-1]} (β {p['beta']:g})" for p in points],
            textposition="top center",
            hovertext=[p["model"] for p in points],
        )
    )
    rd.update_layout(
        height=360,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        xaxis_title="rate: KL per image (nats)",
        yaxis_title="distortion: MSE per pixel",
        yaxis_type="log",
    )
    st.plotly_chart(rd, key="cmp_rd_plot", width="stretch")
    st.dataframe(pd.DataFrame(points).round(5), hide_index=True)
    st.caption(f"Contrast ratio in the lit region: {region.source}.")
