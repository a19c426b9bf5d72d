"""What the training loops share (`vae.train` and `diffusion.train`): exit codes, the stop flag
that SIGINT/SIGTERM and an orphaned job raise, the per-rank batches of each epoch, optimizer state
as safetensors-ready tensors, the recorded command line, and the simulation record kept with a
model."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
from pathlib import Path

import torch
from torch.utils.data import DistributedSampler

from common.distributed import Dist

EXIT_INTERRUPTED = 130
EXIT_NONFINITE = 3
EXIT_USAGE = 2

# The launcher's pid, for --exit-with-parent (see launcher_pid).
PARENT_ENV = "SPECKLE_VAE_PARENT_PID"


class StopFlag:
    """SIGINT/SIGTERM ask the loop to save and exit at the next step boundary."""

    def __init__(self) -> None:
        self.requested = False
        self._old = {}

    def __enter__(self) -> StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            # Outside the main thread signal() raises: leave signals alone there.
            with contextlib.suppress(ValueError):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def launcher_pid() -> int:
    """The process that --exit-with-parent watches: the one named by the launcher in PARENT_ENV,
    else our parent now. The name matters when the launcher dies before training starts: by then
    getppid() already returns the reaper's pid, and comparing against it would never fire."""
    try:
        return int(os.environ[PARENT_ENV])
    except (KeyError, ValueError):
        return os.getppid()


def optimizer_tensors(
    opt: torch.optim.Optimizer, prefix: str = ""
) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer's state as (tensors named `{prefix}optim.{param}.{key}`, the JSON rest), for
    a checkpoint's resume/; `prefix` tells two optimizers in one file apart."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, state in sd["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}optim.{pid}.{key}"] = value
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict, info: dict, prefix: str = "") -> None:
    """Restore what optimizer_tensors saved with the same `prefix`."""
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith(f"{prefix}optim."):
            _, pid, key = name[len(prefix) :].split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    for name, value in info.get("scalars", {}).items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    opt.load_state_dict({"state": state, "param_groups": info["param_groups"]})


class Batches:
    """The per-rank index batches of each epoch, from a DistributedSampler (one replica when not
    distributed). Epoch e's order depends only on (seed, e), so a resumed run skips straight to
    its position without loading the skipped images."""

    def __init__(self, n: int, batch_size: int, seed: int, dist: Dist) -> None:
        if batch_size % dist.world:
            raise ValueError(f"--batch-size {batch_size} must divide by {dist.world} ranks")
        self.per_rank = batch_size // dist.world
        self.sampler = DistributedSampler(
            range(n),
            num_replicas=dist.world,
            rank=dist.rank,
            shuffle=True,
            seed=seed,
            drop_last=True,
        )
        self.steps_per_epoch = len(self.sampler) // self.per_rank
        if self.steps_per_epoch < 1:
            raise ValueError(f"training split has {n} images, fewer than --batch-size {batch_size}")

    def epoch(self, e: int, start: int = 0) -> list[list[int]]:
        self.sampler.set_epoch(e)
        order = list(self.sampler)
        b = self.per_rank
        return [order[i * b : (i + 1) * b] for i in range(start, self.steps_per_epoch)]


def command_line(module: str, argv: list[str], dist: Dist) -> str:
    """The exact command of a run, as recorded in its checkpoint."""
    prefix = (
        f"torchrun --nproc_per_node={dist.world} -m {module}"
        if dist.enabled
        else f"python -m {module}"
    )
    return f"{prefix} {shlex.join(argv)}"


def simulation_record(data: str | Path) -> dict | None:
    """The simulation.json in which a simulated data set records how it was made (seeds,
    options, command), to keep with the model; None for any other data."""
    path = Path(data) / "simulation.json"
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        return None
