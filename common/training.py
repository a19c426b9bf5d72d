"""The one training scaffold of `vae.train` and `diffusion.train`. `fit` runs the loop: data
position, the stop flag that SIGINT/SIGTERM and an orphaned job raise, the ranks' agreement on a
non-finite loss or a stop, metrics.jsonl, the progress bar, checkpoints, the weight digest of each
DDP rank and the exit codes. A model brings a `Task` (its step, update, validation and save) and
its config; `run_cli`, `open_run`, `check_resume` and the RNG and optimizer-state helpers cover
the start and the resume around it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import signal
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from common.checkpoint_files import CONFIG
from common.device import pick_device
from common.distributed import Dist, log, setup_distributed
from common.run_log import METRICS, truncate_metrics

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


def run_cli(module: str, argv: list[str] | None, parse_args: Callable, train: Callable) -> int:
    """A training CLI's `main`: parse, join the process group, train. Bad input (ValueError, of
    which ImageError and CheckpointError are kinds) or a read-only or full output directory
    (OSError; the last good checkpoint is intact) is one line on stderr and EXIT_USAGE."""
    argv = sys.argv[1:] if argv is None else list(argv)
    cfg = parse_args(argv)
    dist = setup_distributed(cfg.device)
    try:
        return train(cfg, dist, command_line(module, argv, dist))
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if dist.enabled:
            torch.distributed.destroy_process_group()


@dataclass(frozen=True)
class Run:
    """A run folder (--out), the device it trains on, and whether it already holds a run."""

    out: Path
    device: torch.device
    exists: bool

    @property
    def checkpoint(self) -> Path:
        return self.out / "checkpoint"

    @property
    def resume_from(self) -> Path:
        """The checkpoint, or the run folder while a save is between its two renames."""
        return self.checkpoint if self.checkpoint.exists() else self.out


def open_run(cfg, dist: Dist) -> Run:
    """Apply --threads and --deterministic, pick the device, and refuse to overwrite a run."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    device = pick_device(cfg.device, dist.local_rank)
    out = Path(cfg.out)
    exists = (out / "checkpoint" / CONFIG).is_file() or (out / ".checkpoint.old").is_dir()
    if exists and not cfg.resume:
        raise ValueError(f"{out}: already holds a run; pass --resume or choose another --out")
    return Run(out, device, exists)


def check_resume(path: Path, cfg, state: dict, must_match: Iterable[str]) -> None:
    """Refuse a --resume whose settings would silently break its exactness."""
    old = state.get("train", {})
    changed = [k for k in must_match if k in old and old[k] != getattr(cfg, k)]
    if changed:
        raise ValueError(
            f"{path}: --resume with changed settings {changed}; they must match the run"
        )


def resumed(dist: Dist, run: Run, step: int) -> None:
    """Say where a resumed run continues, and drop the metrics of the steps it will run again."""
    log(dist, f"resumed {run.out} at step {step}")
    if dist.main:
        truncate_metrics(run.out / METRICS, step)


def rng_tensors(noise_gen: torch.Generator) -> dict[str, torch.Tensor]:
    """The training noise generator's and torch's global RNG state, for a checkpoint's resume/."""
    return {"rng.noise": noise_gen.get_state(), "rng.torch": torch.get_rng_state()}


def load_rng(tensors: dict, noise_gen: torch.Generator) -> None:
    noise_gen.set_state(tensors["rng.noise"])
    torch.set_rng_state(tensors["rng.torch"])


def data_parallel(module: torch.nn.Module, run: Run, dist: Dist) -> torch.nn.Module:
    """DistributedDataParallel under torchrun, else the module itself."""
    if not dist.enabled:
        return module
    ids = [run.device.index] if run.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)


def dataset_record(cfg, fingerprint: str, n_train: int, n_val: int) -> dict:
    """What a checkpoint records of its training data, the simulation record included."""
    return {
        "path": str(cfg.data),
        "fingerprint": fingerprint,
        "n_train": n_train,
        "n_val": n_val,
        "seed": cfg.seed,
        "simulation": simulation_record(cfg.data),
    }


@dataclass(frozen=True)
class StepResult:
    """One forward and backward pass on this rank's batch, before the optimizer step."""

    finite: bool  # the loss and the gradient norms
    record: Callable[[], dict]  # the step's terms for metrics.jsonl, built only on logged steps
    terms: Callable[[], str]  # what the non-finite message names, e.g. "recon=nan, kl=3.1"


@dataclass(frozen=True)
class Task:
    """What one model brings to `fit`: its step, its update, its validation and its save."""

    banner: str  # the line that opens the run: what trains on what, where
    step: Callable[[int, list[int]], StepResult]  # (step, this rank's sample indices)
    update: Callable[[], None]  # optimizer step(s) and EMA, once every rank's loss is finite
    save: Callable[[int, dict], None]  # rank 0: the checkpoint at (step, last validation)
    parameters: Callable[[], Iterable[torch.Tensor]]  # the trained weights, for the DDP digest
    validate: Callable[[], dict] | None  # rank 0; None when nothing is held out
    eval_every: int
    begin_epoch: Callable[[list[list[int]]], None] = field(default=lambda batches: None)
    rate: str = "samples_per_s"  # metrics.jsonl's name for the throughput
    postfix: tuple[str, ...] = ("loss",)  # the record's terms on the progress bar
    saved_as: str = "checkpoint"  # the done line's word for what the checkpoint holds
    advice: str = "check the data"  # after a non-finite loss


def fit(task: Task, cfg, dist: Dist, run: Run, batches: Batches, step: int) -> int:
    """Train from `step` to cfg.max_steps. Returns 0, EXIT_NONFINITE (the last good checkpoint
    is kept) or EXIT_INTERRUPTED (a stop request or a dead launcher; saved at that step)."""
    if dist.main:
        run.out.mkdir(parents=True, exist_ok=True)
    metrics = open(run.out / METRICS, "a") if dist.main else None  # noqa: SIM115
    bar = None
    if dist.main and cfg.progress:
        bar = tqdm(total=cfg.max_steps, initial=step, unit="step", dynamic_ncols=True)
    log(dist, task.banner)

    def write(record: dict) -> None:
        if metrics:
            metrics.write(json.dumps(record) + "\n")
            metrics.flush()

    def save() -> None:
        if dist.main:
            task.save(step, last_val)
        if dist.enabled:
            torch.distributed.barrier()

    last_val: dict = {}
    t_last, seen = time.perf_counter(), 0
    code = 0
    parent = launcher_pid()
    with StopFlag() as stop:
        while step < cfg.max_steps and not code:
            epoch, pos = divmod(step, batches.steps_per_epoch)
            epoch_batches = batches.epoch(epoch, pos)
            task.begin_epoch(epoch_batches)
            for idx in epoch_batches:
                if step >= cfg.max_steps:
                    break
                result = task.step(step, idx)
                if cfg.exit_with_parent and os.getppid() != parent:
                    stop.requested = True  # orphaned: the server that started this job is gone
                # On the device: NCCL reduces CUDA tensors only.
                flags = torch.tensor(
                    [float(not result.finite), float(stop.requested)], device=run.device
                )
                if dist.enabled:
                    torch.distributed.all_reduce(flags)  # ranks agree on when to stop
                if flags[0] > 0:
                    log(
                        dist,
                        f"error: non-finite loss at step {step} ({result.terms()}); stopped. "
                        f"Last good checkpoint: {run.checkpoint} ({task.advice})",
                    )
                    code = EXIT_NONFINITE
                    break
                task.update()
                step += 1
                seen += len(idx) * dist.world
                if step % cfg.log_every == 0 or step == cfg.max_steps:
                    now = time.perf_counter()
                    record = {"split": "train", "step": step, "epoch": epoch, **result.record()}
                    record |= {task.rate: seen / max(now - t_last, 1e-9), "time": time.time()}
                    t_last, seen = now, 0
                    write(record)
                    if bar:
                        bar.set_postfix({k: f"{record[k]:.4g}" for k in task.postfix})
                if bar:
                    bar.update(1)
                last = step == cfg.max_steps
                if dist.main and task.validate and (step % task.eval_every == 0 or last):
                    last_val = task.validate()
                    write({"split": "val", "step": step, "epoch": epoch, **last_val})
                if step % cfg.checkpoint_every == 0 or last:
                    save()
                if flags[1] > 0:
                    if step % cfg.checkpoint_every and not last:
                        save()
                    log(
                        dist,
                        f"interrupted at step {step}; checkpoint saved in {run.checkpoint}; "
                        "continue with --resume",
                    )
                    code = EXIT_INTERRUPTED
                    break
    if bar:
        bar.close()
    if metrics:
        metrics.close()
    if dist.enabled:
        print_digest(dist, task.parameters())
    if code == 0:
        summary = ", ".join(
            f"{k}={v:.4g}" for k, v in last_val.items() if isinstance(v, int | float)
        )
        log(
            dist,
            f"done: {step} steps, {task.saved_as} {run.checkpoint}"
            + (f" ({summary})" if summary else ""),
        )
    return code


def print_digest(dist: Dist, parameters: Iterable[torch.Tensor]) -> None:
    """Every rank reports a digest of its weights, so users (and tests) can check they agree."""
    digest = hashlib.sha256(b"".join(p.detach().cpu().numpy().tobytes() for p in parameters))
    # One write of the whole line: two ranks share stderr, and print() may write the text and its
    # newline separately, letting the other rank's line in between.
    sys.stderr.flush()
    os.write(2, f"rank {dist.rank}: final weights {digest.hexdigest()[:16]}\n".encode())
