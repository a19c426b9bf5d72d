"""Where models and datasets come from: the pickers offer only what lies under the allowed roots.

No free-form paths: a name that resolves outside its root (`..`, absolute paths, symlinks that
leave it) is refused.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

from common import cache

REPO = Path(__file__).resolve().parents[1]
DEMO_MODEL = "models/demo"
MODEL_ROOTS = ("models", "runs")
DATA_ROOT_ENV = "SPECKLE_VAE_DATA_ROOT"
RUNS_ROOT_ENV = "SPECKLE_VAE_RUNS_ROOT"
SIMULATED = "simulated fibre speckle"
# The default map: fibre speckle through the demo model's fibre (same fibre seed), drawn with a
# sample seed the demo model was not trained on.
SIMULATED_N = 2000
SIMULATED_SEED = 1
SIMULATED_N_ENV = "SPECKLE_VAE_SIM_N"  # a smaller default set, for tests and slow machines
MODAL_MODEL = "models/modal"
SIMULATED_MODAL = "simulated modal fibre speckle"
# The simulated sets on offer, each with the shipped model whose training set's simulation
# record it redraws with the sample seed SIMULATED_SEED (new samples through that model's fibre
# and pattern families); None: the Gaussian fibre at the simulator's defaults, the demo's.
SIMULATED_SETS = {SIMULATED: None, SIMULATED_MODAL: MODAL_MODEL}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class PathError(ValueError):
    pass


def data_root() -> Path:
    return Path(os.environ.get(DATA_ROOT_ENV, REPO / "data")).resolve()


def runs_root() -> Path:
    return Path(os.environ.get(RUNS_ROOT_ENV, REPO / "runs")).resolve()


def inside(root: Path, relative: str) -> Path:
    """root/relative, refusing anything that resolves outside root."""
    if not relative or os.path.isabs(relative) or ".." in Path(relative).parts:
        raise PathError(f"{relative!r}: must be a relative path inside {root.name}/")
    root = root.resolve()
    path = (root / relative).resolve()
    if path != root and root not in path.parents:
        raise PathError(f"{relative!r}: resolves outside {root.name}/")
    return path


def safe_name(name: str) -> str:
    """A run name usable as one directory: letters, digits, '.', '_' and '-' only."""
    if not _NAME.match(name or "") or name in (".", ".."):
        raise PathError(
            f"{name!r}: use 1-64 letters, digits, '.', '_' or '-' (not starting with '.')"
        )
    return name


def _is_checkpoint(path: Path) -> bool:
    """A VAE checkpoint or run; a generator (diffusion/) or a reconstructor (inverse/) has its
    own format and is not a model to explore."""
    for config in (path / "config.json", path / "checkpoint" / "config.json"):
        if config.is_file():
            head = config.read_bytes()[:4096]
            return not any(f.encode() in head for f in (GENERATOR_FORMAT, INVERSE_FORMAT))
    return False


GENERATOR_FORMAT = "speckle-diffusion-checkpoint"  # diffusion.checkpoint.FORMAT, without torch
INVERSE_FORMAT = "speckle-inverse-checkpoint"  # inverse.checkpoint.FORMAT, without torch


def list_models() -> list[str]:
    """Checkpoints under models/ and runs/, as repo-relative names; the demo first."""
    found = []
    roots = {"models": REPO / "models", "runs": runs_root()}
    for label, root in roots.items():
        if not root.is_dir():
            continue
        for child in sorted(root.iterdir()):
            try:
                resolved = inside(root, child.name)
            except PathError:
                continue
            if child.is_dir() and _is_checkpoint(resolved):
                found.append(f"{label}/{child.name}")
    jobs = jobs_root()
    if jobs.is_dir():  # finished retraining runs, until they are saved under runs/
        for config in sorted(jobs.glob("*/*/checkpoint/config.json")):
            found.append("jobs/" + config.parent.parent.relative_to(jobs).as_posix())
    found.sort(key=lambda m: (m != DEMO_MODEL, m.startswith("jobs/"), m))
    return found


def checkpoint_dirs(shipped: str, accept: Callable[[Path], bool]) -> list[Path]:
    """Every directory `accept` takes under models/<shipped>/ and under runs/, up to two folders
    deep (a run holds its checkpoint in checkpoint/): shipped ones first."""
    found: list[Path] = []
    for root in (REPO / "models" / shipped, runs_root()):
        for pattern in (
            "*/config.json",
            "*/checkpoint/config.json",
            "*/*/config.json",
            "*/*/checkpoint/config.json",
        ):
            for config in sorted(root.glob(pattern)) if root.is_dir() else []:
                if accept(config.parent) and config.parent not in found:
                    found.append(config.parent)
    return found


def jobs_root() -> Path:
    return cache.cache_root() / "jobs"


def model_path(name: str) -> Path:
    label, _, rest = name.partition("/")
    roots = {"models": REPO / "models", "runs": runs_root(), "jobs": jobs_root()}
    if label not in roots:
        raise PathError(f"{name!r}: models live under models/, runs/ or jobs/")
    return inside(roots[label], rest)


def list_datasets() -> list[str]:
    """The simulated sets (each whose model ships), then folders directly under the data root."""
    names = [n for n, m in SIMULATED_SETS.items() if m is None or simulated_record(n) is not None]
    root = data_root()
    if root.is_dir():
        for child in sorted(root.iterdir()):
            if child.is_dir() and not child.name.startswith("."):
                try:
                    inside(root, child.name)
                except PathError:
                    continue
                names.append(child.name)
    return names


def dataset_path(name: str) -> Path:
    if name in SIMULATED_SETS:
        return simulated_dir(simulated_n(), SIMULATED_SEED, name)
    return inside(data_root(), name)


def simulated_n() -> int:
    return int(os.environ.get(SIMULATED_N_ENV, SIMULATED_N))


def simulated_record(name: str) -> dict | None:
    """The simulation record that a simulated set redraws: its model's training set's, read from
    the model's config.json; None for the demo's set, and for a model that is not there or holds
    no fibre record."""
    model = SIMULATED_SETS[name]
    if model is None:
        return None
    try:
        config = json.loads((REPO / model / "config.json").read_text())
        record = config["dataset"]["simulation"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record if isinstance(record, dict) and record.get("kind") == "mmf" else None


def simulated_dir(n: int, seed: int, name: str = SIMULATED) -> Path:
    """Where a simulated set is written in the cache; a redrawn record's folder is keyed by it."""
    record = simulated_record(name)
    if record is None:
        return cache.cache_root() / "datasets" / f"mmf-n{n}-seed{seed}"
    key = cache.key(json.dumps(record, sort_keys=True))[:16]
    return cache.cache_root() / "datasets" / f"sim-n{n}-seed{seed}-{key}"


def ensure_simulated(
    n: int | None = None, seed: int = SIMULATED_SEED, progress=None, name: str = SIMULATED
) -> Path:
    """Generate a simulated set once, outside git; later starts reuse it."""
    # Lazy: the simulators load only to write a simulated set, not on the cached open.
    from speckle.io import write_dataset
    from speckle.mmf import simulate_from_record, simulate_mmf

    n = n or simulated_n()
    out = simulated_dir(n, seed, name)
    if (out / "labels.csv").is_file():
        return out
    record = simulated_record(name)
    if SIMULATED_SETS[name] is not None and record is None:
        raise ValueError(f"{SIMULATED_SETS[name]}/config.json: no simulation record to redraw")
    with cache.locked(out):
        if not (out / "labels.csv").is_file():
            if progress:
                progress(0.1, f"simulating {n} fibre speckle images")
            if record is None:
                sim = simulate_mmf(n, seed)
            else:
                sim = simulate_from_record(record | {"n": n, "seed": seed})
            if progress:
                progress(0.6, "writing images")
            write_dataset(sim, out)
    return out
