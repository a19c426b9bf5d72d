from __future__ import annotations

import signal
import threading
from dataclasses import fields
from pathlib import Path

import pytest

from explorer.jobs import (
    CANCELLED,
    DONE,
    FAILED,
    QUEUED,
    RUNNING,
    JobLimitError,
    JobManager,
    JobRequest,
    ThreadRun,
    train_argv,
)
from frames import ImageFolder
from speckle.io import write_dataset
from speckle.mmf import simulate_mmf
from vae.checkpoint import load_checkpoint
from vae.schedule import BetaSchedule
from vae.train_config import TrainConfig, parse_args


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[str, tuple[str, ...]]:
    out = tmp_path_factory.mktemp("sim") / "mmf"
    write_dataset(simulate_mmf(64, seed=11, size=32), out)
    names = tuple(ImageFolder(out, 32).labels["file"])
    return str(out), names


def tiny(data, **kw) -> JobRequest:
    """A run that takes a second or two: 32×32 images, few steps."""
    root, names = data
    kw = {"steps": 6, "batch_size": 8, "lr": 1e-3} | kw
    return JobRequest(root, names[:40], **kw)


def test_every_schedule_setting_reaches_the_command_by_name() -> None:
    # BetaSchedule's settings (all but the kind, β and the run's length, which the job sets
    # itself) are fields of the request, and the command line gives back the run's TrainConfig.
    settings = {f.name for f in fields(BetaSchedule)} - {"kind", "beta", "total_steps"}
    assert settings <= {f.name for f in fields(JobRequest)}
    request = JobRequest(
        "data",
        ("a", "b", "c", "d"),
        (2.0,),
        steps=40,
        schedule="capacity",
        capacity_max=3.5,
        capacity_steps=20,
        warmup_steps=7,
        cycles=3,
        cycle_ratio=0.25,
        init_from="models/demo",
    )
    config = request.train_config(2.0, subset="subset.txt", out="run")
    assert parse_args(train_argv(config)) == config
    assert config.schedule_obj().at(39) == (2.0, 3.5)
    assert (config.warmup_steps, config.cycles, config.cycle_ratio) == (7, 3, 0.25)


def test_request_defaults_are_train_configs_own() -> None:
    request = JobRequest("data", ("a", "b", "c", "d"), (1.0,))
    for name in ("schedule", "warmup_steps", "capacity_max", "capacity_steps", "preset", "recon"):
        assert getattr(request, name) == getattr(TrainConfig, name), name
    with pytest.raises(ValueError, match="--lr must be > 0"):
        JobRequest("data", ("a", "b", "c", "d"), (1.0,), lr=0.0)


def test_command_line_round_trips_every_kind_of_field() -> None:
    config = TrainConfig(data="d", out="o", beta=0.1, lr=3e-4, progress=False, compile=True)
    argv = train_argv(config)
    assert "--no-progress" in argv and "--compile" in argv and "--seed" not in argv
    assert parse_args(argv) == config


def test_start_progress_finish_and_result_loads(tmp_path: Path, data, monkeypatch, wait) -> None:
    # The demo preset at 32×32 with a small latent keeps this fast; pass through extra CLI flags.
    monkeypatch.setattr(JobManager, "_command", _small_command)
    m = JobManager(tmp_path)
    job = m.submit("s1", tiny(data, betas=(0.5,)))
    assert job.state == RUNNING
    wait(m, job, (DONE, FAILED))
    assert job.state == DONE, job.error
    p = job.progress()
    assert p["done"] == p["total"] == 6 and p["fraction"] == 1.0
    ck = load_checkpoint(job.runs[0].dir)
    assert (
        ck.config["beta"] == 0.5
        and ck.config["dataset"]["n_train"] + ck.config["dataset"]["n_val"] == 40
    )


def test_benchmark_thread_variant_trains_the_same_run_in_process(
    tmp_path: Path, data, monkeypatch, wait
) -> None:
    # benchmarks.concurrency's plain variant: the same command's arguments, run by vae.train's
    # main() in a server thread, give a finished, loadable run.
    monkeypatch.setattr(JobManager, "_command", _small_command)
    monkeypatch.setattr("explorer.jobs.PLAIN", True)
    m = JobManager(tmp_path)
    job = m.submit("s1", tiny(data, betas=(0.5,)))
    assert isinstance(job.proc, ThreadRun)
    wait(m, job, (DONE, FAILED))
    assert job.state == DONE, job.error
    assert load_checkpoint(job.runs[0].dir).config["beta"] == 0.5


def test_cancel_stops_the_process_and_every_run(
    tmp_path: Path, data, monkeypatch, wait_until
) -> None:
    monkeypatch.setattr(JobManager, "_command", _small_command)
    m = JobManager(tmp_path)
    job = m.submit("s1", tiny(data, betas=(1.0, 2.0), steps=100000))
    wait_until(lambda: job.rows(job.runs[0]), 60)  # training has started
    proc = job.proc
    m.cancel(job.id)
    assert proc.poll() is not None  # the process is gone when cancel() returns
    assert job.state == CANCELLED and [r.state for r in job.runs] == [CANCELLED, CANCELLED]


def test_cap_and_queue_order(tmp_path: Path, data, monkeypatch, wait) -> None:
    monkeypatch.setattr(JobManager, "_command", _small_command)
    m = JobManager(tmp_path, max_running=1, per_session=1)
    a = m.submit("s1", tiny(data, betas=(1.0,)))
    b = m.submit("s2", tiny(data, betas=(1.0,)))
    c = m.submit("s3", tiny(data, betas=(1.0,)))
    assert (a.state, b.state, c.state) == (RUNNING, QUEUED, QUEUED)
    assert (m.queue_position(a.id), m.queue_position(b.id), m.queue_position(c.id)) == (0, 1, 2)
    with pytest.raises(JobLimitError):
        m.submit("s1", tiny(data, betas=(1.0,)))
    wait(m, a, (DONE,))
    m.poll()
    assert b.state == RUNNING and c.state == QUEUED and m.queue_position(c.id) == 1
    wait(m, c, (DONE,))
    assert b.finished <= c.started


def test_crashing_job_reports_its_error(tmp_path: Path, data, wait) -> None:
    m = JobManager(tmp_path)
    root, names = data
    bad = JobRequest(root, names[:8], betas=(1.0,), steps=5, batch_size=64)  # batch > subset
    job = m.submit("s1", bad)
    wait(m, job, (DONE, FAILED))
    assert job.state == FAILED
    assert "fewer than --batch-size" in job.error
    assert not (job.runs[0].dir / "checkpoint").exists()


def test_stale_session_is_stopped_and_cleaned(tmp_path: Path, data, monkeypatch) -> None:
    monkeypatch.setattr(JobManager, "_command", _small_command)
    m = JobManager(tmp_path, stale_after=120.0)
    job = m.submit("gone", tiny(data, betas=(1.0,), steps=100000))
    proc = job.proc
    m.poll()
    assert job.state == RUNNING  # heartbeats are fresh
    m.heartbeats["gone"] -= 121.0  # the session's last heartbeat, moved past stale_after
    m.poll()
    assert job.id not in m.jobs and not job.dir.exists()
    assert proc.poll() is not None


def test_sweep_higher_beta_gives_lower_kl(tmp_path: Path, data, monkeypatch, wait) -> None:
    monkeypatch.setattr(JobManager, "_command", _small_command)
    m = JobManager(tmp_path)
    job = m.submit("s1", tiny(data, betas=(0.01, 30.0), steps=40))
    wait(m, job, (DONE, FAILED), timeout=300)
    assert job.state == DONE, job.error
    kl = [load_checkpoint(r.dir).config["metrics"]["kl"] for r in job.runs]
    assert kl[1] < kl[0], kl


def test_base_model_is_never_mutated(tmp_path: Path, data, monkeypatch, wait) -> None:
    monkeypatch.setattr(JobManager, "_command", _small_command)
    m = JobManager(tmp_path)
    first = m.submit("s1", tiny(data, betas=(1.0,)))
    wait(m, first, (DONE,))
    base = first.runs[0].dir
    before = load_checkpoint(base).id
    job = m.submit("s2", tiny(data, betas=(5.0,), init_from=str(base)))
    wait(m, job, (DONE,))
    assert load_checkpoint(base).id == before
    tuned = load_checkpoint(job.runs[0].dir)
    assert tuned.config["base_checkpoint"] == before and tuned.id != before


def test_poll_is_not_blocked_while_a_cancel_waits_for_its_process(
    tmp_path: Path, monkeypatch, wait_until
) -> None:
    # A job whose process ignores SIGTERM, so cancel() has to wait for it (then SIGKILL it).
    ready = tmp_path / "ready"
    script = (
        "import pathlib, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "pathlib.Path(sys.argv[1]).touch(); time.sleep(600)"
    )
    monkeypatch.setattr(
        JobManager, "_command", lambda self, job, run: [self.python, "-c", script, str(ready)]
    )
    m = JobManager(tmp_path / "jobs")
    job = m.submit("s1", JobRequest("unused", ("a", "b", "c", "d"), betas=(1.0,)))
    proc = job.proc
    wait_until(ready.exists, 60, interval=0.02)  # SIGTERM is ignored from here on
    assert ready.exists()

    # Hold cancel() inside its wait for the process until another session has polled.
    waiting, release, polled = threading.Event(), threading.Event(), threading.Event()
    real_wait = proc.wait

    def held_wait(timeout=None):
        if timeout is not None:  # the grace period after SIGTERM
            waiting.set()
            release.wait()
        return real_wait(timeout)

    proc.wait = held_wait
    canceller = threading.Thread(target=m.cancel, args=(job.id,))
    poller = threading.Thread(target=lambda: (m.poll(), polled.set()))
    canceller.start()
    try:
        assert waiting.wait(timeout=60)
        poller.start()
        # A poll() blocked behind the cancel never returns while the cancel is held.
        assert polled.wait(timeout=30), "poll() waited for another session's cancel()"
        assert canceller.is_alive()  # the cancel was still waiting when poll returned
        assert job.state == CANCELLED and job.runs[0].state == CANCELLED
    finally:
        release.set()
        canceller.join(timeout=60)
        poller.join(timeout=60)
    assert not canceller.is_alive() and proc.poll() == -signal.SIGKILL  # killed after the grace


_original_command = JobManager._command


def _small_command(self, job, run) -> list[str]:
    return _original_command(self, job, run) + [
        "--image-size",
        "32",
        "--latent-dim",
        "16",
        "--threads",
        "1",
    ]
