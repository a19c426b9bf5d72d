"""A generator's training pairs, wherever the evaluation runs: the folder its config records,
or, when that folder is not there and the config records a simulation, the same set simulated
again from the record into the user cache, checked against the record and reused afterwards.

The check: the record's parameters, and the set's `intensity_scale` (the 99.99th percentile of
every frame's intensity, which the simulator writes into simulation.json). It depends on every
frame of the set, so another fibre, seed or size changes it (another sample seed of the demo's
set moves it by 5e-3; the same record rebuilt matches it exactly).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from common import cache
from speckle.io import write_dataset
from speckle.mmf import rebuildable, simulate_from_record

SCALE_TOLERANCE = 1e-5  # relative: float rounding across machines, far below a change of seed
# What a rebuilt set's simulation.json must repeat exactly (besides the intensity scale).
CHECKED = (
    "kind",
    "n",
    "seed",
    "size",
    "fibre_seed",
    "shift",
    "rotation",
    "scale",
    "bend",
    "bend_seed",
    "grain",
    "core",
    "states",
    "fibre",
    "modal",
    "camera",
    "family",
    "digits",
    "file_format",
)


@dataclass(frozen=True)
class TrainingSet:
    path: Path
    source: str  # "given", "recorded" or "simulated from the generator's record"
    check: str  # what was checked, in a few words


def simulated_dir(record: dict) -> Path:
    """Where a rebuilt set lives in the cache: keyed by its whole record."""
    return cache.cache_root() / "datasets" / f"sim-{cache.key(json.dumps(record, sort_keys=True))}"


def check_rebuilt(folder: Path, record: dict) -> str:
    """Compare a rebuilt set's simulation.json with the generator's record; raise ValueError on a
    mismatch, else say what matched."""
    try:
        meta = json.loads((folder / "simulation.json").read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{folder}: no readable simulation.json ({e})") from None
    diff = [k for k in CHECKED if k in record and meta.get(k) != record[k]]
    if diff:
        raise ValueError(
            f"{folder}: the rebuilt set differs from the generator's record in {', '.join(diff)}"
        )
    want, got = record.get("intensity_scale"), meta.get("intensity_scale")
    if not isinstance(want, int | float):
        return "record matched; the record has no intensity_scale to compare"
    if not isinstance(got, int | float) or abs(got / want - 1) > SCALE_TOLERANCE:
        raise ValueError(
            f"{folder}: the rebuilt set's intensity_scale {got} is not the recorded {want}: "
            "the simulator no longer makes this set"
        )
    return f"record and intensity_scale matched (relative difference {abs(got / want - 1):.1e})"


def training_set(
    config: dict,
    given: str | Path = "",
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> TrainingSet:
    """The training pairs of the generator whose `config` (its config.json) is given; `given`
    overrides the recorded folder. Raises ValueError in one line, naming the way out, when
    neither the folder nor a rebuildable record is there."""
    if given:
        path = Path(given)
        if not path.exists():
            raise ValueError(f"{path}: no such training set (--train-data)")
        return TrainingSet(path, "given", "none")
    dataset = config.get("dataset") or {}
    recorded = Path(str(dataset.get("path", "")))
    if str(recorded) not in ("", ".") and recorded.exists():
        return TrainingSet(recorded, "recorded", "none")
    record = dataset.get("simulation")
    if not rebuildable(record):
        command = " ".join(map(str, (record or {}).get("command") or [])) or "its recording"
        raise ValueError(
            f"{recorded}: the generator's training set is not here and cannot be simulated again "
            f"from its config; make it ({command}) or pass --train-data FOLDER"
        )
    out = simulated_dir(record)
    with cache.locked(out):
        if not (out / "simulation.json").is_file():
            log(f"{recorded}: not here; simulating it again from the generator's record into {out}")
            _rebuild(record, out, progress)
    return TrainingSet(out, "simulated from the generator's record", check_rebuilt(out, record))


def _rebuild(record: dict, out: Path, progress: bool) -> None:
    with tqdm(total=2, desc="training set", unit="stage", disable=not progress) as bar:
        bar.set_postfix_str(f"simulating {record['n']} frames")
        sim = simulate_from_record(record)
        bar.update()
        bar.set_postfix_str("writing")
        write_dataset(sim, out, overwrite=True, file_format=record.get("file_format", "png"))
        bar.update()
