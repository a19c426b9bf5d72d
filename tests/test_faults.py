"""Faults: killed jobs, a killed server, damaged and contended caches, unwritable or full output
directories, and training killed at several points."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from common import cache
from common.run_log import read_metrics
from explorer.jobs import DONE, FAILED, JobManager
from tests.test_jobs import _small_command, tiny
from tests.test_train import SMALL, make_folder
from vae import checkpoint as ckpt
from vae.train import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def job_data(tmp_path_factory) -> tuple[str, tuple[str, ...]]:
    from frames import ImageFolder
    from speckle.io import write_dataset
    from speckle.mmf import simulate_mmf

    out = tmp_path_factory.mktemp("sim") / "mmf"
    write_dataset(simulate_mmf(64, seed=12, size=32), out)
    return str(out), tuple(ImageFolder(out, 32).labels["file"])


def test_job_killed_mid_run_is_reported_and_the_next_starts(
    tmp_path: Path, job_data, monkeypatch, wait_until, wait
) -> None:
    monkeypatch.setattr(JobManager, "_command", _small_command)
    m = JobManager(tmp_path)
    job = m.submit("s1", tiny(job_data, betas=(1.0,), steps=100000))
    wait_until(lambda: job.rows(job.runs[0]), 60)
    os.kill(job.proc.pid, signal.SIGKILL)
    wait(m, job, (FAILED,))
    assert "killed by signal 9" in job.error
    run = job.runs[0].dir
    # Never a half-written checkpoint: none, or one that loads.
    if (run / "checkpoint").exists():
        ckpt.load_checkpoint(run)
    again = m.submit("s1", tiny(job_data, betas=(1.0,)))
    wait(m, again, (DONE, FAILED))
    assert again.state == DONE, again.error


@pytest.mark.slow
# "starting": the server dies while its child is still importing (the case that once left an
# orphan); "training": once the child has logged training steps.
@pytest.mark.parametrize("when", ["starting", "training"])
def test_server_killed_while_a_job_runs_then_restarted(
    tmp_path: Path, job_data, when: str, wait_until
) -> None:
    root, names = job_data
    script = textwrap.dedent(f"""
        import sys, time
        from explorer.jobs import JobManager, JobRequest, DONE
        m = JobManager({str(tmp_path)!r})
        names = tuple({list(names[:40])!r})
        extra = ["--image-size", "32", "--latent-dim", "16", "--threads", "1"]
        cmd = JobManager._command
        JobManager._command = lambda self, job, run: cmd(self, job, run) + extra
        done = m.submit("a", JobRequest({root!r}, names, (1.0,), steps=6, batch_size=8))
        while done.state != DONE:
            m.poll(); time.sleep(0.05)
        long = m.submit("b", JobRequest({root!r}, names, (2.0,), steps=100000, batch_size=8))
        print(long.proc.pid, long.runs[0].dir, flush=True)
        while True:
            m.poll(); time.sleep(0.05)
    """)
    server = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
    )
    pid, run_dir = server.stdout.readline().split()
    child = int(pid)
    if when == "training":
        assert wait_until(lambda: read_metrics(Path(run_dir) / "metrics.jsonl"), 120), (
            "the long job never logged a step"
        )
    server.kill()
    server.wait()

    # The training process notices its server is gone, saves and exits: no orphan.
    def gone() -> bool:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return True
        return False

    if not wait_until(gone, 30, interval=0.1):
        os.kill(child, signal.SIGKILL)
        pytest.fail("the training process outlived its server")
    restarted = JobManager(tmp_path)
    runs = restarted.recover()
    assert len(runs) >= 1
    for run in runs:  # every checkpoint left behind loads: finished ones and interrupted ones
        ckpt.load_checkpoint(run)
    finished = [r for r in runs if r.name == "beta-1"]
    assert finished and ckpt.read_config(finished[0])["step"] == 6
    assert not list(tmp_path.glob("*/*/.checkpoint.tmp-*"))


def test_two_processes_build_the_same_cache_entry_once(tmp_path: Path, wait_until) -> None:
    # The first process builds and holds the lock until the second has missed the entry and
    # reached the lock; then the second must reuse the first one's result, not build again.
    script = textwrap.dedent(f"""
        import sys, time, numpy as np
        from common import cache
        from pathlib import Path
        role, tmp = sys.argv[1], Path({str(tmp_path)!r})
        def build():
            with open(tmp / "builds.txt", "a") as f:
                f.write(role + "\\n")
            (tmp / "building").touch()
            deadline = time.time() + 120
            while not (tmp / "go").exists() and time.time() < deadline:
                time.sleep(0.01)
            return {{"x": np.arange(100000, dtype=np.float32)}}, {{}}
        if role == "second":  # announce reaching the lock, after the first cache lookup missed
            locked = cache.locked
            def announcing(path):
                (tmp / "at-lock").touch()
                return locked(path)
            cache.locked = announcing
        arrays, _, hit = cache.get_or_build(tmp / "entry", build)
        print(hit, float(arrays["x"].sum()))
    """)
    env = os.environ | {"PYTHONPATH": str(ROOT)}

    def start(role: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", script, role],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )

    def wait_for(marker: str) -> None:
        assert wait_until((tmp_path / marker).exists, 120, interval=0.02), marker

    first = start("first")
    wait_for("building")
    second = start("second")
    wait_for("at-lock")
    (tmp_path / "go").touch()
    outs = [p.communicate(timeout=120)[0].split() for p in (first, second)]
    assert [o[0] for o in outs] == ["False", "True"]  # the first built it, the second reused it
    assert outs[0][1] == outs[1][1] == str(float(np.arange(100000, dtype=np.float32).sum()))
    assert (tmp_path / "builds.txt").read_text().split() == ["first"]
    assert cache.load(tmp_path / "entry") is not None


def test_unwritable_cache_location_still_serves(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder should be")
    arrays, _, hit = cache.get_or_build(blocker / "sub" / "x", lambda: ({"a": np.arange(3)}, {}))
    assert not hit and list(arrays["a"]) == [0, 1, 2]


def test_unwritable_output_directory_is_a_clear_error(tmp_path: Path, capsys) -> None:
    folder = make_folder(tmp_path / "data", n=24)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(["--data", str(folder), "--out", str(blocker / "run"), "--max-steps", "2", *SMALL])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error:") and "\n" not in err


def test_full_disk_during_a_checkpoint_keeps_the_last_good_one(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    folder = make_folder(tmp_path / "data", n=24)
    run = tmp_path / "run"
    argv = [
        "--data",
        str(folder),
        "--out",
        str(run),
        "--max-steps",
        "2",
        "--checkpoint-every",
        "2",
        *SMALL,
    ]
    assert main(argv) == 0
    good = ckpt.load_checkpoint(run).id

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    import safetensors.torch  # vae.checkpoint imports its save_file on use

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    code = main([*argv[:5], "4", *argv[6:], "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and "No space left on device" in err
    assert ckpt.load_checkpoint(run).id == good
    assert not list(run.glob(".checkpoint.tmp-*"))


@pytest.mark.slow
def test_training_killed_at_five_points_resumes_to_identical_weights(
    tmp_path: Path, wait_until
) -> None:
    folder = make_folder(tmp_path / "data", n=48)
    steps = 24  # five kill points between steps 4 and 21, each resumed from its last checkpoint
    base = [
        sys.executable,
        "-m",
        "vae.train",
        "--data",
        str(folder),
        "--max-steps",
        str(steps),
        "--checkpoint-every",
        "3",
        "--log-every",
        "1",
        "--deterministic",
        *SMALL,
    ]
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [*base, "--out", str(tmp_path / "ref")], check=True, env=env, cwd=ROOT, capture_output=True
    )
    run = tmp_path / "run"
    rng = np.random.default_rng(0)
    kill_points = sorted(rng.choice(np.arange(4, steps - 2), 5, replace=False).tolist())
    for point in kill_points:
        cmd = [*base, "--out", str(run)] + (["--resume"] if (run / "checkpoint").exists() else [])
        proc = subprocess.Popen(
            cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

        def reached(point: int = point) -> bool:
            rows = read_metrics(run / "metrics.jsonl")
            return bool(rows) and rows[-1]["step"] >= point

        wait_until(reached, 120, interval=0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    final = subprocess.run(
        [*base, "--out", str(run), "--resume"], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert final.returncode == 0, final.stderr
    a, b = (
        ckpt.load_checkpoint(tmp_path / "ref").model.state_dict(),
        ckpt.load_checkpoint(run).model.state_dict(),
    )
    assert all(torch.equal(a[k], b[k]) for k in a), kill_points
