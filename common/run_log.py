"""A run's `metrics.jsonl`: one JSON record per logged step or validation. Torch-free, so that
the app's Model page reads training curves without importing torch."""

from __future__ import annotations

import json
from pathlib import Path

from common.atomic import atomic_write

METRICS = "metrics.jsonl"


def read_metrics(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
    return rows


def truncate_metrics(path: Path, step: int) -> None:
    """After a resume, drop records from steps that will be run again."""
    rows = [r for r in read_metrics(path) if r.get("step", 0) <= step]
    atomic_write(path, "".join(json.dumps(r) + "\n" for r in rows))
