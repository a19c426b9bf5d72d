"""Figures: the map of the latents (interactive, or as a small picture with a marker), the grey
context map for paths and markers, the drift of a recording against time, and the KL bar
chart."""

from __future__ import annotations

import weakref

import numpy as np
import plotly.graph_objects as go

from explorer.atlas import Atlas
from explorer.density import PALETTE, density_image


def map_figure(
    coords: np.ndarray,
    color: np.ndarray | None,
    color_name: str,
    hover: list[str],
    height: int = 520,
) -> go.Figure:
    """A WebGL scatter, interactive at 50k points; customdata carries each sample's id."""
    categorical = color is not None and color.dtype.kind in "OUSb"
    fig = go.Figure()
    ids = np.arange(len(coords))
    if categorical:
        for value in sorted(set(color.tolist()), key=str):
            m = color == value
            fig.add_trace(
                go.Scattergl(
                    x=coords[m, 0],
                    y=coords[m, 1],
                    mode="markers",
                    name=str(value),
                    customdata=ids[m],
                    text=np.asarray(hover, dtype=object)[m],
                    hovertemplate="%{text}<extra></extra>",
                    marker={"size": 5},
                )
            )
    else:
        marker = {"size": 5}
        if color is not None:
            marker |= {
                "color": color,
                "colorscale": "Viridis",
                "showscale": True,
                "colorbar": {"title": {"text": color_name}},
            }
        fig.add_trace(
            go.Scattergl(
                x=coords[:, 0],
                y=coords[:, 1],
                mode="markers",
                name="samples",
                customdata=ids,
                text=hover,
                hovertemplate="%{text}<extra></extra>",
                marker=marker,
                showlegend=False,
            )
        )
    # A top margin for the toolbar, which would otherwise cover the legend's title.
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        dragmode="select",
        legend={"title": {"text": color_name}},
        xaxis={"showticklabels": False},
        yaxis={"showticklabels": False, "scaleanchor": "x"},
    )
    return fig


def density_figure(
    coords: np.ndarray,
    color: np.ndarray | None,
    color_name: str,
    ids: np.ndarray,
    hover: list[str],
    height: int = 520,
) -> go.Figure:
    """The map of many points: a density image drawn on the server (explorer.density) under a
    faint scatter of a fixed random sample of the points, which carries their ids (customdata)
    for hover and click: `ids` (explorer.density.sample_ids), `hover` their texts. Box and lasso
    regions are resolved to every point on the server (explorer.selection.region_ids)."""
    image = density_image(coords, color)
    x0, x1, y0, y1 = image.extent
    fig = go.Figure()
    fig.add_layout_image(
        source=image.data_uri(),
        xref="x",
        yref="y",
        x=x0,
        y=y1,
        sizex=x1 - x0,
        sizey=y1 - y0,
        sizing="stretch",
        layer="below",
    )
    text = np.asarray(hover, dtype=object)
    faint = {"size": 4, "opacity": 0.35, "line": {"width": 0}}
    if image.categories is not None:
        values = np.asarray(color).astype(str)[ids]
        for k, value in enumerate(image.categories):
            m = values == value
            fig.add_trace(
                go.Scatter(
                    x=coords[ids[m], 0],
                    y=coords[ids[m], 1],
                    mode="markers",
                    name=value,
                    customdata=ids[m],
                    text=text[m],
                    hovertemplate="%{text}<extra></extra>",
                    marker=faint | {"color": PALETTE[k % len(PALETTE)]},
                )
            )
    else:
        marker = faint | {"color": "rgba(40, 40, 40, 1)"}
        if image.vrange is not None:
            lo, hi = image.vrange
            marker |= {
                "color": np.asarray(color, float)[ids],
                "colorscale": "Viridis",
                "cmin": lo,
                "cmax": hi,
                "showscale": True,
                "colorbar": {"title": {"text": color_name}},
            }
        fig.add_trace(
            go.Scatter(
                x=coords[ids, 0],
                y=coords[ids, 1],
                mode="markers",
                name="samples",
                customdata=ids,
                text=text,
                hovertemplate="%{text}<extra></extra>",
                marker=marker,
                showlegend=False,
            )
        )
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        dragmode="select",
        legend={"title": {"text": color_name}, "itemsizing": "constant"},
        xaxis={"showticklabels": False, "range": [x0, x1], "showgrid": False, "zeroline": False},
        yaxis={
            "showticklabels": False,
            "range": [y0, y1],
            "showgrid": False,
            "zeroline": False,
            "scaleanchor": "x",
        },
        plot_bgcolor="white",
    )
    return fig


def drift_figure(
    x: np.ndarray,
    distances: np.ndarray,
    smooth: np.ndarray,
    noise: float,
    x_title: str,
    selected: list[int],
    height: int = 300,
) -> go.Figure:
    """Each frame's drift against time (selectable: customdata is the frame's id), its moving
    average, and the reference window's noise level."""
    ids = np.arange(len(distances))
    fig = go.Figure()
    fig.add_trace(
        go.Scattergl(
            x=x,
            y=distances,
            mode="markers",
            name="frames",
            customdata=ids,
            hovertemplate="frame %{customdata}: %{y:.3f}<extra></extra>",
            marker={"size": 3, "color": "rgba(70, 110, 180, 0.45)"},
        )
    )
    fig.add_trace(go.Scattergl(x=x, y=smooth, mode="lines", name="moving average"))
    if selected:
        sel = np.asarray(selected[:200])
        fig.add_trace(
            go.Scattergl(
                x=x[sel],
                y=distances[sel],
                mode="markers",
                name="selected",
                marker={"size": 9, "symbol": "circle-open", "color": "black"},
            )
        )
    fig.add_hline(y=noise, line_dash="dot", annotation_text="reference spread (95%)")
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        dragmode="select",
        xaxis={"title": {"text": x_title}},
        yaxis={"title": {"text": "‖μ − μ̄_ref‖"}},
    )
    return fig


# Backdrops of the marker map, one per coordinate array (a cached projection's), found by
# identity: hashing 50k coordinates on every slider move would cost more than drawing the map.
_backdrops: dict[int, tuple[weakref.ref, int, np.ndarray, np.ndarray, np.ndarray]] = {}

MAP_PALETTE = [255, 255, 255, 150, 150, 150, 220, 20, 60]  # background, samples, marker


def _backdrop(coords: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    hit = _backdrops.get(id(coords))
    if hit is not None and hit[0]() is coords and hit[1] == size:
        return hit[2:]
    xy = np.asarray(coords, np.float32)
    lo, hi = xy.min(0), xy.max(0)
    img = np.zeros((size, size), np.uint8)
    px = _to_pixels(xy, lo, hi, size)
    for dx in (0, 1):  # 2×2-pixel dots
        for dy in (0, 1):
            img[np.clip(px[:, 1] + dy, 0, size - 1), np.clip(px[:, 0] + dx, 0, size - 1)] = 1
    key = id(coords)
    _backdrops[key] = (weakref.ref(coords, lambda _: _backdrops.pop(key, None)), size, img, lo, hi)
    return img, lo, hi


def _to_pixels(
    xy: np.ndarray, lo: np.ndarray, hi: np.ndarray, size: int, pad: int = 8
) -> np.ndarray:
    scaled = (xy - lo) / np.maximum(hi - lo, 1e-9)
    px = pad + scaled * (size - 2 * pad - 1)
    px[:, 1] = size - 1 - px[:, 1]  # y up, as on the Atlas
    return np.clip(px.round().astype(int), 0, size - 1)


def marker_map(coords: np.ndarray, where: np.ndarray, size: int = 256) -> np.ndarray:
    """The map as a small (size, size) image of MAP_PALETTE indices (0 background, 1 samples,
    2 marker) with a cross at `where`: a tenth of a millisecond, and cheap for the browser to
    swap on every slider move."""
    base, lo, hi = _backdrop(coords, size)
    img = base.copy()
    x, y = _to_pixels(np.asarray(where, np.float32)[None], lo, hi, size)[0]
    for d in range(-6, 7):
        for t in (-1, 0, 1):  # a 3-px-thick cross
            for cx, cy in ((x + d, y + d + t), (x + d, y - d + t)):
                if 0 <= cx < size and 0 <= cy < size:
                    img[cy, cx] = 2
    return img


def context_map(coords: np.ndarray, height: int = 260) -> go.Figure:
    """The map as a grey backdrop for markers and paths: no hover or ids, so it builds in a few
    milliseconds (a slider move redraws it)."""
    fig = go.Figure(
        go.Scattergl(
            x=coords[:, 0],
            y=coords[:, 1],
            mode="markers",
            hoverinfo="skip",
            marker={"size": 4, "color": "lightgrey"},
            showlegend=False,
        )
    )
    fig.update_layout(
        height=height,
        margin={"l": 5, "r": 5, "t": 5, "b": 5},
        showlegend=False,
        xaxis={"showticklabels": False},
        yaxis={"showticklabels": False, "scaleanchor": "x"},
    )
    return fig


def hover_text(atlas: Atlas, max_cols: int = 6, ids: np.ndarray | None = None) -> list[str]:
    """Hover texts of every sample, or of `ids` only (a density map's drawn sample)."""
    labels = atlas.labels
    cols = [c for c in labels.columns if c not in ("pattern",)][:max_cols]
    ids = np.arange(len(labels)) if ids is None else np.asarray(ids)
    rows = labels[cols].iloc[ids].astype(str).to_numpy()
    return [
        f"id {i}<br>" + "<br>".join(f"{c}: {v}" for c, v in zip(cols, row, strict=True))
        for i, row in zip(ids.tolist(), rows, strict=True)
    ]


def add_points(
    fig: go.Figure,
    xy: np.ndarray,
    name: str,
    symbol: str = "x",
    size: int = 14,
    color: str = "red",
    text: list[str] | None = None,
    line: bool = False,
) -> None:
    fig.add_trace(
        go.Scatter(
            x=xy[:, 0],
            y=xy[:, 1],
            mode="lines+markers" if line else "markers",
            name=name,
            text=text,
            hovertemplate="%{text}<extra></extra>" if text else None,
            marker={
                "symbol": symbol,
                "size": size,
                "color": color,
                "line": {"width": 1, "color": "black"},
            },
        )
    )


def kl_bar_spec(atlas: Atlas, dims: tuple[int, ...]) -> dict:
    """Vega-Lite bar chart of the top 64 dims' mean KL, slider dims in red, with the active-unit
    threshold. Vega-Lite rather than plotly: the spec is sent as is, where a plotly figure is
    copied and validated on every rerun."""
    top = atlas.dim_order[:64]
    values = [{"dim": f"z{d}", "kl": float(atlas.kl_per_dim[d]), "slider": d in dims} for d in top]
    return {
        "height": 240,
        "layer": [
            {
                "data": {"values": values},
                "mark": "bar",
                "encoding": {
                    "x": {"field": "dim", "type": "nominal", "sort": None, "title": None},
                    "y": {"field": "kl", "type": "quantitative", "title": "mean KL (nats)"},
                    "color": {
                        "field": "slider",
                        "type": "nominal",
                        "title": "slider",
                        "scale": {"domain": [True, False], "range": ["crimson", "steelblue"]},
                    },
                    "tooltip": [{"field": "dim"}, {"field": "kl", "format": ".3f"}],
                },
            },
            {
                "data": {"values": [{"y": 0.01}]},
                "mark": {"type": "rule", "strokeDash": [4, 4], "color": "grey"},
                "encoding": {"y": {"field": "y", "type": "quantitative"}},
            },
        ],
    }
