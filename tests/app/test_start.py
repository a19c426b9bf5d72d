"""The app process's start: the script outside a server, nothing started by an import, and the
interactive thread's priority."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    res = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ | {"PYTHONPATH": str(ROOT)} | (env or {}),
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return res


def test_app_script_runs_outside_a_server(tmp_path) -> None:
    """After an AppTest run, __main__ is app.py, and a process started with "spawn" (DataLoader
    workers on macOS and Windows, or any spawn context) runs it again outside any server: every
    Streamlit call is then a no-op, and nothing may fail (the navigation once did)."""
    code = "import runpy; runpy.run_path('app.py', run_name='__mp_main__'); print('done')"
    res = _python(code, env={"SPECKLE_VAE_CACHE": str(tmp_path), "SPECKLE_VAE_SIM_N": "60"})
    assert res.stdout.strip().endswith("done")


NO_SIDE_EFFECTS = """
import gc, json, threading
import views.figures, views.state, views.widgets, explorer.serving, explorer.tasks
names = lambda: sorted(t.name for t in threading.enumerate())
before = (gc.get_freeze_count(), names())
from explorer import serving
serving.start()
serving.start()
print(json.dumps({"before": before, "after": (gc.get_freeze_count() > 0, names())}))
"""


def test_importing_the_app_modules_starts_nothing() -> None:
    """Importing starts no thread and freezes nothing; serving.start() does both, once."""
    out = json.loads(_python(NO_SIDE_EFFECTS).stdout.strip().splitlines()[-1])
    assert out["before"] == [0, ["MainThread"]]
    frozen, threads = out["after"]
    assert frozen and threads.count("speckle-decode_0") == 1


# A cached start: the app starts serving, then a thread at nice +10 builds the model and makes
# the process's first torch calls (its own intra-op team included), and only then do
# a slider decode and a batch decode on the page's thread arrive. Each thread's nice value is
# read from /proc (field 19 of /proc/self/task/TID/stat).
NICE_WORKER = """
import json, os, sys, threading
import numpy as np
import torch
from explorer import serving
from explorer.map_process import lower_priority
from vae.checkpoint import load_checkpoint
from vae.inference import decode

def nice(tid):
    stat = open(f"/proc/self/task/{tid}/stat").read()
    return int(stat[stat.rindex(")") + 2 :].split()[19 - 3])

def threads():
    return {int(tid): nice(tid) for tid in os.listdir("/proc/self/task")}

serving.start()
torch.set_num_threads(2)
ck = load_checkpoint(sys.argv[1], lazy=True)
z = np.zeros((64, ck.model_config.latent_dim), np.float32)
built, hold = threading.Event(), threading.Event()

def build():
    lower_priority(10)  # a thread at +10, as the plain UMAP variant runs
    decode(ck.model, z)
    built.set()
    hold.wait(120)  # alive, with its +10 team, until the threads are counted

task = threading.Thread(target=build, daemon=True)
task.start()
assert built.wait(120)
before = threads()
serving.decode_interactive(serving.model(ck), z[:1])
decode(serving.model(ck), z)  # a batch on this thread: its own intra-op team
worker = serving.on_interactive_thread(threading.get_native_id)
after = threads()
hold.set()
task.join(120)
print(json.dumps({"worker": nice(worker), "main": nice(threading.get_native_id()),
                  "new": [n for tid, n in after.items() if tid not in before],
                  "background": sorted(set(before.values())),
                  "openmp": "OpenMP" in torch.__config__.parallel_info()}))
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads Linux's /proc")
def test_interactive_thread_keeps_normal_priority_when_a_reniced_thread_builds_the_model() -> None:
    """Linux threads inherit their creator's nice value: the interactive thread, which every
    session's decodes run on, must not come from a thread at +10, and neither may
    the torch threads that serve the page's own work (libgomp keeps a team per thread)."""
    res = _python(NICE_WORKER, str(ROOT / "models" / "demo"))
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["worker"] == out["main"]  # not the +10 thread's
    assert all(n == out["main"] for n in out["new"])
    if out["openmp"]:  # the task's own team is at +10: the test did create such threads
        assert 10 + out["main"] in out["background"]
