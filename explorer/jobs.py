"""Background retraining jobs: our own `python -m vae.train` in subprocesses, with a queue.

A job is one request from one browser session: a subset of a dataset and one β or a sweep of
them, run one after another. The manager caps concurrent jobs (default 1, for 2 cores) and jobs
per session (default 1); later requests wait in a FIFO queue with a visible position. Progress
is read from each run's metrics.jsonl, so nothing here touches Streamlit, and a page polls
`JobManager.poll()` from a fragment. A cancel sends SIGTERM (the trainer saves and exits at the
next step) and SIGKILL one second later; a job whose session stops sending heartbeats is
cancelled and its files removed. Checkpoints are written atomically by the trainer, so a crashed
or killed run never leaves a half-written one.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

from common.training import PARENT_ENV
from vae.train_config import TrainConfig

REPO = Path(__file__).resolve().parents[1]
QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
ACTIVE = (QUEUED, RUNNING)
# Benchmark switch only (benchmarks/concurrency.py): run `vae.train` in a server thread instead of
# a subprocess, to measure what the subprocess buys the sliders of every session.
PLAIN = "jobs" in os.environ.get("SPECKLE_VAE_BENCH_PLAIN", "").split(",")
SUBSET_CAP = 2048  # default cap on a retraining subset: minutes, not hours, on 2 cores


class JobLimitError(RuntimeError):
    pass


@dataclass(frozen=True)
class JobRequest:
    """One job: a subset, its β values, and the settings of each run. A field named like one of
    `TrainConfig`'s reaches `vae.train` under that name, with that default unless the job's own
    differs (a short run at a higher learning rate on a small subset)."""

    data: str  # dataset folder
    names: tuple[str, ...]  # sample names of the subset
    betas: tuple[float, ...]  # one β, or a sweep
    steps: int = 300  # TrainConfig.max_steps of each run
    lr: float = 1e-3
    schedule: str = TrainConfig.schedule
    warmup_steps: int = TrainConfig.warmup_steps
    cycles: int = TrainConfig.cycles
    cycle_ratio: float = TrainConfig.cycle_ratio
    capacity_max: float = TrainConfig.capacity_max
    capacity_steps: int = TrainConfig.capacity_steps
    init_from: str = TrainConfig.init_from  # fine-tune from this checkpoint; "" = from scratch
    preset: str = TrainConfig.preset
    recon: str = TrainConfig.recon
    batch_size: int = 32
    normalization: str = TrainConfig.normalization

    def __post_init__(self) -> None:
        if not self.betas or any(b < 0 for b in self.betas):
            raise ValueError(f"need one or more β ≥ 0, got {self.betas}")
        if len(self.names) < 4:
            raise ValueError(f"a subset needs at least 4 images, got {len(self.names)}")
        if self.steps < 1:
            raise ValueError("steps must be ≥ 1")
        self.train_config(self.betas[0], subset="", out="")  # TrainConfig's own checks, now

    def train_config(self, beta: float, subset: str, out: str) -> TrainConfig:
        """The `TrainConfig` of the run for `beta`, writing to `out`."""
        shared = {f.name for f in fields(TrainConfig)}
        settings = {f.name: getattr(self, f.name) for f in fields(self) if f.name in shared}
        return TrainConfig(
            **settings,
            beta=beta,
            subset=subset,
            out=out,
            max_steps=self.steps,
            log_every=5,  # the page's live curves
            eval_every=self.steps,  # validate and save once, at the end
            checkpoint_every=self.steps,
            progress=False,
            exit_with_parent=True,
        )


def train_argv(config: TrainConfig) -> list[str]:
    """The `python -m vae.train` arguments that give back `config`: a flag for each field that is
    required or differs from its default (the CLI is generated from the same fields)."""
    argv = []
    for f in fields(config):
        value = getattr(config, f.name)
        if value == f.default and f.default is not MISSING and not f.metadata.get("required"):
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        else:
            argv += [flag, repr(value) if isinstance(value, float) else str(value)]
    return argv


class ThreadRun:
    """The benchmark's plain variant of a job's process: `vae.train.main` in a daemon thread of
    the server. It offers what the manager reads of a `Popen` (poll, returncode), and no way to
    stop it: a cancel marks the job and leaves the thread to run out."""

    def __init__(self, argv: list[str]) -> None:
        self.returncode: int | None = None
        self._thread = threading.Thread(target=self._run, args=(argv,), daemon=True)
        self._thread.start()

    def _run(self, argv: list[str]) -> None:
        # Lazy: only the benchmark's plain variant trains inside the server.
        from vae.train import main

        try:
            self.returncode = main(argv)
        except BaseException:  # noqa: BLE001 (a failed run is a nonzero code, as a process's)
            self.returncode = 1

    def poll(self) -> int | None:
        return None if self._thread.is_alive() else self.returncode


@dataclass
class Run:
    beta: float
    dir: Path
    state: str = QUEUED
    error: str | None = None
    returncode: int | None = None


@dataclass
class Job:
    id: str
    session: str
    request: JobRequest
    dir: Path
    runs: list[Run]
    state: str = QUEUED
    error: str | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    proc: subprocess.Popen | ThreadRun | None = field(default=None, repr=False)
    current: int = -1

    def rows(self, run: Run) -> list[dict]:
        path = run.dir / "metrics.jsonl"
        rows = []
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line being written
        return rows

    def progress(self) -> dict:
        """Steps done over all runs, the fraction, an ETA from the measured step rate, and the
        current run's train records (for live curves)."""
        steps = self.request.steps
        total = steps * len(self.runs)
        done, rows = 0, []
        for i, run in enumerate(self.runs):
            if run.state == DONE:
                done += steps
            elif i == self.current:
                rows = [r for r in self.rows(run) if r.get("split") == "train"]
                done += rows[-1]["step"] if rows else 0
        eta = None
        if self.started and done:
            eta = (time.time() - self.started) / done * (total - done)
        return {
            "done": done,
            "total": total,
            "fraction": done / total if total else 0.0,
            "eta_s": eta,
            "rows": rows,
            "run": self.current,
        }


class JobManager:
    def __init__(
        self,
        root: str | Path,
        max_running: int = 1,
        per_session: int = 1,
        stale_after: float = 120.0,
        python: str = sys.executable,
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_running = max_running
        self.per_session = per_session
        self.stale_after = stale_after
        self.python = python
        self.jobs: dict[str, Job] = {}
        self.heartbeats: dict[str, float] = {}
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._watcher: threading.Thread | None = None
        self._stopping: set[subprocess.Popen] = set()  # SIGTERMed, not yet reaped
        self.recover()

    def recover(self) -> list[Path]:
        """After a restart: remove temporary checkpoint directories that a killed run left
        behind (finished and interrupted checkpoints are whole, thanks to atomic writes), and
        return the run directories that hold a loadable checkpoint."""
        for tmp in self.root.glob("*/*/.checkpoint.tmp-*"):
            shutil.rmtree(tmp, ignore_errors=True)
        return sorted(p.parent.parent for p in self.root.glob("*/*/checkpoint/config.json"))

    # --- requests

    def submit(self, session: str, request: JobRequest) -> Job:
        with self._lock:
            active = [j for j in self.jobs.values() if j.session == session and j.state in ACTIVE]
            if len(active) >= self.per_session:
                raise JobLimitError(
                    f"this session already has {len(active)} job(s) running or queued"
                )
            job_id = f"{int(time.time())}-{next(self._ids)}"
            job_dir = self.root / job_id
            job_dir.mkdir(parents=True)
            (job_dir / "subset.txt").write_text("\n".join(request.names) + "\n")
            runs = [Run(b, job_dir / f"beta-{b:g}") for b in request.betas]
            job = Job(job_id, session, request, job_dir, runs)
            self.jobs[job_id] = job
            self.heartbeats[session] = time.time()
        self.poll()  # outside the lock: a poll may wait for a stale job's process to exit
        return job

    def heartbeat(self, session: str) -> None:
        with self._lock:
            self.heartbeats[session] = time.time()

    def cancel(self, job_id: str) -> None:
        with self._lock:
            proc = self._cancel(self.jobs[job_id])
        self._reap(proc)  # outside the lock: every session's poll() needs it meanwhile

    def queue_position(self, job_id: str) -> int:
        """1 for the next job to start, 0 if it is not waiting."""
        with self._lock:
            queued = sorted(
                (j for j in self.jobs.values() if j.state == QUEUED), key=lambda j: j.created
            )
            ids = [j.id for j in queued]
            return ids.index(job_id) + 1 if job_id in ids else 0

    def session_jobs(self, session: str) -> list[Job]:
        with self._lock:
            return sorted(
                (j for j in self.jobs.values() if j.session == session), key=lambda j: j.created
            )

    # --- the state machine, advanced by poll()

    def poll(self) -> None:
        with self._lock:
            stale = self._drop_stale()
            for job in self.jobs.values():
                if job.state == RUNNING:
                    self._advance(job)
            # A cancelled process still winding down counts against the cap.
            running = sum(j.state == RUNNING for j in self.jobs.values()) + len(self._stopping)
            for job in sorted(self.jobs.values(), key=lambda j: j.created):
                if running >= self.max_running:
                    break
                if job.state == QUEUED:
                    job.state, job.started = RUNNING, time.time()
                    self._start_run(job, 0)
                    running += 1
        for proc, job_dir in stale:  # outside the lock, as in cancel()
            self._reap(proc)
            shutil.rmtree(job_dir, ignore_errors=True)

    def start_watcher(self, interval: float = 0.5) -> None:
        """Advance the queue even when no page is polling."""
        if self._watcher is not None:
            return

        def loop() -> None:
            while True:
                time.sleep(interval)
                self.poll()

        self._watcher = threading.Thread(target=loop, name="job-watcher", daemon=True)
        self._watcher.start()

    def _command(self, job: Job, run: Run) -> list[str]:
        config = job.request.train_config(
            run.beta, subset=str(job.dir / "subset.txt"), out=str(run.dir)
        )
        return [self.python, "-m", "vae.train", *train_argv(config)]

    def _start_run(self, job: Job, i: int) -> None:
        run = job.runs[i]
        job.current, run.state = i, RUNNING
        if PLAIN:
            job.proc = ThreadRun(self._command(job, run)[3:])  # the arguments after `-m vae.train`
            return
        log = open(job.dir / f"{run.dir.name}.log", "w")  # noqa: SIM115 (owned by the child)
        env = os.environ | {
            "PYTHONPATH": str(REPO),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
            # --exit-with-parent compares against this: if the server dies while the child is
            # still importing torch, the child's getppid() is already the reaper's.
            PARENT_ENV: str(os.getpid()),
        }
        job.proc = subprocess.Popen(
            self._command(job, run),
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def _advance(self, job: Job) -> None:
        if job.proc is None or job.proc.poll() is None:
            return
        run = job.runs[job.current]
        run.returncode = job.proc.returncode
        job.proc = None
        if run.returncode == 0:
            run.state = DONE
            if job.current + 1 < len(job.runs):
                self._start_run(job, job.current + 1)
                return
            job.state, job.finished = DONE, time.time()
            return
        run.state = FAILED
        run.error = self._error_of(job, run)
        for later in job.runs[job.current + 1 :]:
            later.state = CANCELLED
        job.state, job.error, job.finished = FAILED, run.error, time.time()

    def _error_of(self, job: Job, run: Run) -> str:
        log = job.dir / f"{run.dir.name}.log"
        lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
        errors = [ln for ln in lines if ln.startswith("error:") or "Error" in ln]
        if run.returncode is not None and run.returncode < 0:
            return f"β={run.beta:g}: killed by signal {-run.returncode}"
        return f"β={run.beta:g}: " + (
            errors[-1] if errors else (lines[-1] if lines else f"exit code {run.returncode}")
        )

    def _cancel(self, job: Job) -> subprocess.Popen | None:
        """Mark `job` cancelled and send its process SIGTERM; return the process to reap, if one
        is still running. Called under the lock; the wait for the process is the caller's."""
        if job.state not in ACTIVE:
            return None
        job.state, job.finished = CANCELLED, time.time()
        for run in job.runs:
            if run.state in ACTIVE:
                run.state = CANCELLED
        proc, job.proc = job.proc, None
        if not isinstance(proc, subprocess.Popen) or proc.poll() is not None:
            return None
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return None
        self._stopping.add(proc)
        return proc

    def _reap(self, proc: subprocess.Popen | None) -> None:
        """Give a SIGTERMed process a second to save and exit, then SIGKILL it. Called without
        the lock held, so that other sessions' polls are not stalled for that second."""
        if proc is None:
            return
        try:
            proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        finally:
            with self._lock:
                self._stopping.discard(proc)

    def _drop_stale(self) -> list[tuple[subprocess.Popen | None, Path]]:
        """Cancel and forget the jobs of sessions that stopped sending heartbeats; return each
        one's process and directory, for the caller to reap and remove after the lock."""
        now, stale = time.time(), []
        for job in list(self.jobs.values()):
            beat = self.heartbeats.get(job.session, job.created)
            if job.state in ACTIVE and now - beat > self.stale_after:
                stale.append((self._cancel(job), job.dir))
                del self.jobs[job.id]
        return stale
