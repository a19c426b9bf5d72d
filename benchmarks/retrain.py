"""Retraining speed: fine-tuning the demo model on 512 images for 300 steps through the job
machinery (a `vae.train` subprocess, from submit to a finished checkpoint) against the same steps
in a plain in-process loop, in the same run, alternated twice and compared by medians (targets:
under 30 s, machinery overhead ≤ 15%).
Then a traversal slider move (AppTest rerun) with a job running against idle.

    python -m benchmarks.retrain [--steps 300] [--n 512]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def plain_loop(data: Path, steps: int, batch: int) -> float:
    from frames import ImageFolder, Normalization
    from vae.checkpoint import load_checkpoint
    from vae.loss import vae_loss

    t0 = time.perf_counter()
    ck = load_checkpoint(ROOT / "models" / "demo")
    norm = Normalization.from_dict(ck.config["preprocessing"]["normalization"])
    ds = ImageFolder(data, 64, norm)
    x_all = torch.stack([ds[i] for i in range(len(ds))])
    model = ck.model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x = x_all[torch.randint(0, len(x_all), (batch,), generator=g)]
        x_hat, post = model(x)
        loss = vae_loss(x, x_hat, post, beta=0.05).total
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def job(data: Path, names: tuple[str, ...], steps: int, root: Path) -> float:
    from explorer.jobs import DONE, JobManager, JobRequest

    m = JobManager(root)
    t0 = time.perf_counter()
    j = m.submit(
        "bench",
        JobRequest(
            str(data),
            names,
            (0.05,),
            steps=steps,
            lr=1e-3,
            init_from=str(ROOT / "models" / "demo"),
            batch_size=32,
        ),
    )
    while j.state not in (DONE, "failed", "cancelled"):
        m.heartbeat("bench")  # as the page's polling fragment does: else a job over 2 min is reaped
        m.poll()
        time.sleep(0.05)
    if j.state != DONE:
        raise RuntimeError(f"job {j.state}: {j.error}")
    return time.perf_counter() - t0


def slider_times(moves: int = 20) -> list[float]:
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    app.session_state["atlas_method"] = "PCA"
    app.switch_page("views/traverse.py").run()
    key = next(s.key for s in app.slider if s.key and s.key.startswith("trav_"))
    times = []
    for i in range(moves):
        t0 = time.perf_counter()
        app.slider(key=key).set_value(round(((i % 12) - 6) * 0.5, 1) or 0.5).run()
        times.append(time.perf_counter() - t0)
    return times


def run(steps: int = 300, n: int = 512, repeats: int = 2) -> list[dict]:
    from explorer.jobs import JobManager, JobRequest
    from frames import ImageFolder
    from speckle.io import write_dataset
    from speckle.mmf import simulate_mmf

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ.setdefault("SPECKLE_VAE_CACHE", str(tmp / "cache"))
        os.environ.setdefault("SPECKLE_VAE_SIM_N", "2000")
        write_dataset(simulate_mmf(n, seed=31), tmp / "data")
        names = tuple(ImageFolder(tmp / "data", 64).labels["file"])
        # Alternated, so that noise from other processes hits both sides alike.
        t_plain, t_job = [], []
        for r in range(repeats):
            t_plain.append(plain_loop(tmp / "data", steps, 32))
            t_job.append(job(tmp / "data", names, steps, tmp / f"jobs{r}"))
        idle = slider_times()
        m = JobManager(tmp / "jobs2")
        busy_job = m.submit(
            "bench",
            JobRequest(
                str(tmp / "data"),
                names,
                (0.05,),
                steps=100000,
                lr=1e-3,
                init_from=str(ROOT / "models" / "demo"),
                batch_size=32,
            ),
        )
        time.sleep(3)  # the job is training
        busy = slider_times()
        m.cancel(busy_job.id)
    return [
        {
            "benchmark": f"retrain[demo,n={n},steps={steps}]",
            "job_seconds": statistics.median(t_job),
            "plain_loop_seconds": statistics.median(t_plain),
            "job_runs": t_job,
            "plain_runs": t_plain,
            "ratio": statistics.median(t_job) / statistics.median(t_plain),
            "limit_seconds": 30.0,
        },
        {
            "benchmark": "slider_rerun_during_job[traverse,apptest]",
            "busy_seconds": statistics.median(busy),
            "idle_seconds": statistics.median(idle),
            "ratio": statistics.median(busy) / statistics.median(idle),
        },
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.retrain")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--n", type=int, default=512)
    p.add_argument("--repeats", type=int, default=2, help="alternating plain-loop and job runs")
    args = p.parse_args(argv)
    for r in run(args.steps, args.n, args.repeats):
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
