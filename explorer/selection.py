"""Plot selections to sample ids: read the event with dict access, so tests can inject one."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.path import Path


def selected_ids(event: Mapping | None, n: int) -> list[int]:
    """Sample ids in a plotly selection event ({"selection": {"points": [...]}}). Each point
    carries its sample id as customdata (the first entry when it is a list); points of other
    traces (markers, paths) carry none and are ignored. Ids outside 0..n-1 are dropped."""
    if not event:
        return []
    selection = event.get("selection") or {}
    ids: list[int] = []
    seen: set[int] = set()
    for point in selection.get("points") or []:
        custom = point.get("customdata")
        if isinstance(custom, (list, tuple)):
            custom = custom[0] if custom else None
        if custom is None:
            continue
        try:
            i = int(custom)
        except (TypeError, ValueError):
            continue
        if 0 <= i < n and i not in seen:
            seen.add(i)
            ids.append(i)
    return ids


def inside_box(coords: np.ndarray, x: list[float], y: list[float]) -> np.ndarray:
    """Mask of the (N, 2) points in the box spanned by x = [x0, x1], y = [y0, y1] (either
    order), edges included."""
    (x0, x1), (y0, y1) = sorted(map(float, x)), sorted(map(float, y))
    return (coords[:, 0] >= x0) & (coords[:, 0] <= x1) & (coords[:, 1] >= y0) & (coords[:, 1] <= y1)


def inside_lasso(coords: np.ndarray, x: list[float], y: list[float]) -> np.ndarray:
    """Mask of the points inside the closed polygon through (x[i], y[i]); fewer than three
    vertices enclose nothing. Only points in the polygon's bounding box are tested."""
    mask = np.zeros(len(coords), bool)
    if len(x) < 3 or len(x) != len(y):
        return mask
    vertices = np.column_stack([np.asarray(x, float), np.asarray(y, float)])
    lo, hi = vertices.min(0), vertices.max(0)
    near = np.flatnonzero(inside_box(coords, [lo[0], hi[0]], [lo[1], hi[1]]))
    mask[near] = Path(vertices).contains_points(coords[near])
    return mask


def region_ids(event: Mapping | None, coords: np.ndarray) -> list[int] | None:
    """Every point's id inside the event's box and lasso selections (their union: shift-drag
    adds a region), in increasing order; None when the event holds no region, so that the
    caller reads its clicked points instead. The event is Streamlit's plotly selection state:
    {"selection": {"box": [{"x": [x0, x1], "y": [y0, y1]}], "lasso": [{"x": [...], "y": [...]}]}}
    in data coordinates."""
    if not event:
        return None
    selection = event.get("selection") or {}
    boxes, lassos = selection.get("box") or [], selection.get("lasso") or []
    if not boxes and not lassos:
        return None
    mask = np.zeros(len(coords), bool)
    for box in boxes:
        if len(box.get("x") or []) == 2 and len(box.get("y") or []) == 2:
            mask |= inside_box(coords, box["x"], box["y"])
    for lasso in lassos:
        mask |= inside_lasso(coords, lasso.get("x") or [], lasso.get("y") or [])
    return np.flatnonzero(mask).tolist()
