"""Plot selections to sample ids: read the event with dict access, so tests can inject one."""

from __future__ import annotations

from collections.abc import Mapping


def selected_ids(event: Mapping | None, n: int) -> list[int]:
    """Sample ids in a plotly selection event ({"selection": {"points": [...]}}). Each point
    carries its sample id as customdata (the first entry when it is a list); points of other
    traces (markers, paths) carry none and are ignored. Ids outside 0..n-1 are dropped."""
    if not event:
        return []
    selection = event.get("selection") or {}
    ids: list[int] = []
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
        if 0 <= i < n and i not in ids:
            ids.append(i)
    return ids
