"""The interactive thread: one long-lived, single-threaded worker for the app's small torch
computations (one decode, one nearest-neighbour query). Torch-free at import, so the app can
create the thread early, from an ordinary thread, before torch is even loaded.

Streamlit runs every rerun in a new thread, and each new thread that calls torch builds its own
OpenMP team; with two teams on two cores libgomp stops spinning and every op waits on a futex.
Measured for one latent of the demo model: 3.5 ms from a fresh thread, 1.4 ms here, 1.3 ms on a
main thread with its warm team. Decodes from all sessions queue on this one thread instead of
piling up threads on a few cores.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

_worker = threading.local()


def _mark() -> None:
    _worker.active = True


_pool = ThreadPoolExecutor(1, "speckle-decode", initializer=_mark)
_lock = threading.Lock()
_set_up = False  # the torch set-up is queued: it runs before any task submitted after it


def _one_intra_op_thread() -> None:
    """The worker's first task: one intra-op thread for this thread only. torch.set_num_threads
    also sets the count that threads started later begin with, so that is put back from a
    throwaway thread, leaving every other thread as it was. A thread's own count exists with
    torch's OpenMP backend only; elsewhere the worker keeps the default."""
    import torch

    if "OpenMP" not in torch.__config__.parallel_info():
        return
    default = torch.get_num_threads()
    torch.set_num_threads(1)
    restore = threading.Thread(target=torch.set_num_threads, args=(default,))
    restore.start()
    restore.join()


def create() -> None:
    """Create the worker thread now, without waiting and without torch. A thread inherits its
    creator's CPU priority: created by a background task at nice +10, every session's decodes
    would run at that priority for the life of the process."""
    _pool.submit(lambda: None)


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


def start_interactive_thread() -> None:
    """Set the worker up for torch now, before the caller's threads make their first torch
    calls: a thread that made its first torch call while the set-up had the default count at 1
    would keep one thread for life. Waits only if this call queues the set-up, which then comes
    before every torch task: the app calls this while holding a checkpoint's lock
    (Checkpoint.prepare), and a queued task waiting on that lock would never let it through."""
    with _lock:
        first = _queue_set_up()
    if first is not None:
        first.result()


def on_interactive_thread(fn: Callable[..., T], /, *args, **kwargs) -> T:
    """Run a small torch computation (one decode, one nearest-neighbour query) on the one
    long-lived, single-threaded worker. Big batches belong on the caller's thread, where torch
    uses every core. Called from the worker itself, it runs fn there (no deadlock)."""
    if getattr(_worker, "active", False):
        return fn(*args, **kwargs)
    return _submit(fn, *args, **kwargs).result()
