from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from common.run_log import read_metrics
from common.training import EXIT_INTERRUPTED, EXIT_NONFINITE, PARENT_ENV
from vae import checkpoint as ckpt
from vae.train import main

ROOT = Path(__file__).resolve().parents[1]
# A small model at 32×32 so a step costs milliseconds on 2 cores.
SMALL = [
    "--preset",
    "demo",
    "--image-size",
    "32",
    "--latent-dim",
    "16",
    "--batch-size",
    "8",
    "--no-progress",
    "--threads",
    "1",
]


def make_folder(path: Path, n: int = 48, size: int = 32, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = (rng.exponential(1.0, (size, size)) * 8000).clip(0, 65535).astype(np.uint16)
        Image.fromarray(img).save(path / f"{i:03d}.png")
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("data"))


def weights(run: Path) -> dict[str, torch.Tensor]:
    return ckpt.load_checkpoint(run).model.state_dict()


def test_cli_smoke_writes_checkpoint_and_metrics(tmp_path: Path, data: Path) -> None:
    run = tmp_path / "run"
    argv = [
        "--data",
        str(data),
        "--out",
        str(run),
        "--beta",
        "0.5",
        "--max-steps",
        "12",
        "--log-every",
        "2",
        "--eval-every",
        "6",
        *SMALL,
    ]
    assert main(argv) == 0
    loaded = ckpt.load_checkpoint(run)
    config = loaded.config
    assert config["beta"] == 0.5 and config["recon"] == "sse" and config["step"] == 12
    assert config["command"].startswith("python -m vae.train --data")
    assert config["preprocessing"]["normalization"]["mode"] == "max"
    assert len(config["dataset"]["fingerprint"]) >= 16
    assert {"recon", "kl", "active_units", "mse"} <= set(config["metrics"])
    rows = read_metrics(run / "metrics.jsonl")
    train_rows = [r for r in rows if r["split"] == "train"]
    val_rows = [r for r in rows if r["split"] == "val"]
    assert [r["step"] for r in train_rows] == [2, 4, 6, 8, 10, 12]
    assert [r["step"] for r in val_rows] == [6, 12]
    assert len(val_rows[-1]["kl_per_dim"]) == 16
    assert all(np.isfinite(r["loss"]) for r in train_rows)
    # Training reduces the loss on this data.
    assert train_rows[-1]["recon"] < train_rows[0]["recon"]


def test_refuses_to_overwrite_a_run(tmp_path: Path, data: Path, capsys) -> None:
    run = tmp_path / "run"
    argv = ["--data", str(data), "--out", str(run), "--max-steps", "2", *SMALL]
    assert main(argv) == 0
    assert main(argv) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_exit_with_parent_notices_a_launcher_gone_before_training(
    tmp_path: Path, data: Path, monkeypatch
) -> None:
    # The launcher (a pid that is not our parent) died while this run was still starting up: by
    # then getppid() names the reaper, so only the pid the launcher passed can tell.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    monkeypatch.setenv(PARENT_ENV, str(dead.pid))
    run = tmp_path / "run"
    argv = ["--data", str(data), "--out", str(run), "--max-steps", "1000", "--exit-with-parent"]
    assert main([*argv, *SMALL]) == EXIT_INTERRUPTED
    assert ckpt.read_config(run)["step"] == 1  # saved after the first step, then stopped
    monkeypatch.setenv(PARENT_ENV, str(os.getppid()))  # the launcher alive: training goes on
    assert main([*argv[:5], "3", "--resume", "--exit-with-parent", *SMALL]) == 0
    assert ckpt.read_config(run)["step"] == 3


def test_resume_with_changed_settings_is_refused(tmp_path: Path, data: Path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["--data", str(data), "--out", str(run), "--max-steps", "2", *SMALL]) == 0
    argv = ["--data", str(data), "--out", str(run), "--max-steps", "4", "--resume", *SMALL]
    assert main([*argv, "--beta", "3"]) == 2
    assert "changed settings ['beta']" in capsys.readouterr().err


def test_missing_data_is_one_line_error(tmp_path: Path, capsys) -> None:
    code = main(["--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r"), *SMALL])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error:") and "nope" in err and "\n" not in err


def test_nonfinite_loss_stops_and_keeps_last_checkpoint(tmp_path: Path, data: Path, capsys) -> None:
    run = tmp_path / "run"
    # A huge learning rate diverges within a few steps; checkpoint every step before that.
    argv = [
        "--data",
        str(data),
        "--out",
        str(run),
        "--max-steps",
        "200",
        "--lr",
        "1e6",
        "--grad-clip",
        "0",
        "--checkpoint-every",
        "1",
        *SMALL,
    ]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == EXIT_NONFINITE, err
    assert "non-finite loss at step" in err
    loaded = ckpt.load_checkpoint(run)
    assert all(torch.isfinite(v).all() for v in loaded.model.state_dict().values())
    assert loaded.config["step"] < 200


@pytest.mark.parametrize("schedule", ["warmup", "cyclical", "capacity"])
def test_schedules_run(tmp_path: Path, data: Path, schedule: str) -> None:
    run = tmp_path / schedule
    argv = [
        "--data",
        str(data),
        "--out",
        str(run),
        "--max-steps",
        "4",
        "--schedule",
        schedule,
        "--warmup-steps",
        "4",
        "--log-every",
        "1",
        *SMALL,
    ]
    assert main(argv) == 0
    rows = [r for r in read_metrics(run / "metrics.jsonl") if r["split"] == "train"]
    if schedule == "warmup":
        assert [r["beta"] for r in rows] == pytest.approx([0.0, 0.25, 0.5, 0.75])
    if schedule == "capacity":
        assert rows[-1]["capacity"] > rows[0]["capacity"] >= 0


def _cli(run: Path, data: Path, steps: int, extra: list[str] = ()) -> list[str]:
    return [
        sys.executable,
        "-m",
        "vae.train",
        "--data",
        str(data),
        "--out",
        str(run),
        "--max-steps",
        str(steps),
        "--checkpoint-every",
        "5",
        "--log-every",
        "1",
        "--deterministic",
        *SMALL,
        *extra,
    ]


def _env() -> dict:
    return os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_resume_after_sigkill_is_bit_identical(tmp_path: Path, data: Path, wait_until) -> None:
    steps = 30
    ref = tmp_path / "ref"
    subprocess.run(_cli(ref, data, steps), check=True, env=_env(), cwd=ROOT, capture_output=True)

    run = tmp_path / "killed"
    proc = subprocess.Popen(
        _cli(run, data, steps),
        env=_env(),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    # Kill it once a checkpoint exists and training has gone past it (mid-run, between saves).
    def past_step_12() -> bool:
        rows = read_metrics(run / "metrics.jsonl")
        return bool(rows) and rows[-1]["step"] >= 12

    wait_until(past_step_12, 120, interval=0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = read_metrics(run / "metrics.jsonl")[-1]["step"]
    assert 12 <= killed_at < steps
    saved = ckpt.read_config(run)["step"]
    assert 5 <= saved <= killed_at

    resumed = subprocess.run(
        _cli(run, data, steps, ["--resume"]), env=_env(), cwd=ROOT, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed {run} at step {saved}" in resumed.stderr
    a, b = weights(ref), weights(run)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # The metrics log has each step exactly once after the resume.
    steps_logged = [r["step"] for r in read_metrics(run / "metrics.jsonl") if r["split"] == "train"]
    assert steps_logged == list(range(1, steps + 1))


@pytest.mark.slow
def test_sigint_saves_and_exits_cleanly(tmp_path: Path, data: Path, wait_until) -> None:
    run = tmp_path / "run"
    proc = subprocess.Popen(
        _cli(run, data, 100000, ["--checkpoint-every", "100000"]),
        env=_env(),
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_until(lambda: read_metrics(run / "metrics.jsonl"), 120)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert "interrupted at step" in err and "Traceback" not in err
    step = ckpt.read_config(run)["step"]
    assert step >= 1
    resumed = subprocess.run(
        _cli(run, data, step + 2, ["--checkpoint-every", "100000", "--resume"]),
        env=_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert ckpt.read_config(run)["step"] == step + 2


@pytest.mark.slow
def test_torchrun_two_ranks_match_single_process(tmp_path: Path, data: Path) -> None:
    steps = 6
    single = tmp_path / "single"
    subprocess.run(_cli(single, data, steps), check=True, env=_env(), cwd=ROOT, capture_output=True)
    ddp = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "vae.train",
        *_cli(ddp, data, steps)[3:],
    ]
    res = subprocess.run(cmd, env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    config = ckpt.read_config(ddp)
    assert config["world_size"] == 2
    assert config["command"].startswith("torchrun --nproc_per_node=2 -m vae.train")
    digests = re.findall(r"rank (\d): final weights (\w+)", res.stderr)
    assert sorted(r for r, _ in digests) == ["0", "1"] and digests[0][1] == digests[1][1]
    a, b = weights(single), weights(ddp)
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5, msg=key)
    # Only rank 0 wrote: one metrics record per logged step.
    steps_logged = [r["step"] for r in read_metrics(ddp / "metrics.jsonl") if r["split"] == "train"]
    assert steps_logged == list(range(1, steps + 1))
