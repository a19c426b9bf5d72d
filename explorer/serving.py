"""Serving loaded models to the app: the interactive thread and the app process's start-up.

The interactive thread is one long-lived, single-threaded worker for the app's small torch
computations (one decode, one nearest-neighbour query). Streamlit runs every rerun in a new
thread, and each new thread that calls torch builds its own OpenMP team; with two teams on two
cores libgomp stops spinning and every op waits on a futex. Measured for one latent of the demo
model: 3.5 ms from a fresh thread, 1.4 ms here, 1.3 ms on a main thread with its warm team.
Decodes from all sessions queue on this one thread instead of piling up threads on a few cores.

Kept because it pays: key press → image p50 267 → 80 ms for one session, 214 → 121 ms for four,
without → with it (benchmarks/concurrency.py, docs/architecture.md).

Torch-free at import: a cached atlas is drawn before torch is loaded.
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import numpy as np
    import torch

    from vae.checkpoint import Checkpoint
    from vae.model import VAE

T = TypeVar("T")

# Benchmark switch (benchmarks/concurrency.py): "serving" in it runs every computation on the
# caller's thread with nothing frozen, the plain variant this module is measured against.
PLAIN = "serving" in os.environ.get("SPECKLE_VAE_BENCH_PLAIN", "").split(",")

_worker = threading.local()


def _mark() -> None:
    _worker.active = True


# No thread exists until the first submit: start() makes it, from the app's start-up.
_pool = ThreadPoolExecutor(1, "speckle-decode", initializer=_mark)
_lock = threading.Lock()
_started = False
_set_up = False  # the torch set-up is queued: it runs before any task submitted after it
_frozen_with_torch = False


def start() -> None:
    """Once per process, from the app's start-up (a thread at normal priority); later calls do
    nothing. Creates the interactive thread without waiting and without torch: Linux threads
    inherit their creator's nice value, so a thread first created by a thread at
    nice +10 would serve every session's decodes at that priority for the life of the process.
    Then freezes what the app's imports made (plotly, pandas, the explorer: long-lived), which
    Python's full collections then skip; each would otherwise stall every session for
    140–200 ms (measured under load)."""
    global _started
    if PLAIN:
        return
    with _lock:
        if _started:
            return
        _started = True
    _pool.submit(lambda: None)
    gc.freeze()


def _one_intra_op_thread() -> None:
    """The worker's first torch task: one intra-op thread for this thread only.
    torch.set_num_threads also sets the count that threads started later begin with, so that is
    put back from a throwaway thread, leaving every other thread as it was. A thread's own count
    exists with torch's OpenMP backend only; elsewhere the worker keeps the default."""
    import torch  # this module is torch-free at import: the cached atlas opens without torch

    if "OpenMP" not in torch.__config__.parallel_info():
        return
    default = torch.get_num_threads()
    torch.set_num_threads(1)
    restore = threading.Thread(target=torch.set_num_threads, args=(default,))
    restore.start()
    restore.join()


def _queue_set_up() -> Future | None:
    """Queue the torch set-up unless it is queued already; call with _lock held."""
    global _set_up
    if _set_up:
        return None
    _set_up = True
    return _pool.submit(_one_intra_op_thread)


def _submit(fn: Callable[..., T], /, *args, **kwargs) -> Future:
    with _lock:
        _queue_set_up()
        return _pool.submit(fn, *args, **kwargs)


def model(checkpoint: Checkpoint) -> VAE:
    """The checkpoint's model for the app's use, built on first use (Checkpoint.model, under the
    checkpoint's own lock). Before that the worker is set up for torch: a thread that made its
    first torch call while the set-up had the default count at 1 would keep one thread for life.
    The set-up is waited for only by the call that queues it, outside any lock, so a queued decode
    waiting for this same model cannot block it. In the app (after start()), torch's objects are
    frozen once the first model is built."""
    global _frozen_with_torch
    if PLAIN:
        return checkpoint.model
    if not getattr(_worker, "active", False):
        with _lock:
            first = _queue_set_up()
        if first is not None:
            first.result()
    built = checkpoint.model
    if _started and not _frozen_with_torch:
        _frozen_with_torch = True
        gc.freeze()
    return built


def on_interactive_thread(fn: Callable[..., T], /, *args, **kwargs) -> T:
    """Run a small torch computation (one decode, one nearest-neighbour query) on the one
    long-lived, single-threaded worker. Big batches belong on the caller's thread, where torch
    uses every core. Called from the worker itself, it runs fn there (no deadlock)."""
    if PLAIN or getattr(_worker, "active", False):
        return fn(*args, **kwargs)
    return _submit(fn, *args, **kwargs).result()


def decode_interactive(model: VAE, z: np.ndarray | torch.Tensor) -> np.ndarray:
    """vae.inference.decode of a few latents (a slider move, a clicked sample) on the
    interactive thread."""
    from vae.inference import decode  # torch: not imported on the cached atlas open

    return on_interactive_thread(decode, model, z)
