"""A background computation with pollable state, for work that must not block a page (the first
UMAP fit, a first build's reconstruction errors). The worker thread never touches Streamlit; a
page fragment polls `done`. Deferral and nice are on trial: first map on screen 18.0 → 11.8 s for
one session in one measured pair, no gain in a second, and none for four sessions
(benchmarks/concurrency.py, docs/architecture.md)."""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import os
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)  # compared and hashed by identity: pending tasks are kept in a set
class Task:
    name: str
    fn: Callable[[], Any]
    started: float = field(default_factory=time.time)
    finished: float | None = None
    result: Any = None
    error: str | None = None
    # Added to the worker thread's nice value (Linux): background work then yields the cores to
    # the page being drawn and the browser drawing it, rather than sharing them evenly.
    nice: int = 0
    # Wait for release_deferred(owner) (the end of the script run that asked, so after its page
    # is sent), for wait(), or at most MAX_DEFER seconds before starting: background work then
    # leaves the cores to the page being drawn.
    defer: bool = False
    # Whose end of run releases it: by default the owner of the run_of() block it was started in
    # (a browser session), None outside any.
    owner: Hashable | None = None
    _thread: threading.Thread | None = field(default=None, repr=False)
    _go: threading.Event | None = field(default=None, repr=False)

    def start(self) -> Task:
        if PLAIN:
            self.defer, self.nice = False, 0
        if self.owner is None:
            self.owner = _run_owner.get()
        if self.defer:
            self._go = threading.Event()
            with _deferred_lock:
                _deferred.add(self)
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        with _deferred_lock:
            _live.add(self)
        self._thread.start()
        return self

    def _run(self) -> None:
        if self._go is not None:
            self._go.wait(MAX_DEFER)
            with _deferred_lock:
                _deferred.discard(self)
            if _exiting.is_set():  # released by the interpreter's exit: never started
                self.error, self.finished = "not run: the process is exiting", time.time()
                return
        if self.nice:
            lower_priority(self.nice)
        try:
            self.result = self.fn()
        except Exception as e:  # reported on the page, not raised into a dead thread
            self.error = f"{type(e).__name__}: {e}"
            traceback.print_exc()
        finally:
            self.finished = time.time()

    @property
    def done(self) -> bool:
        return self.finished is not None

    @property
    def elapsed(self) -> float:
        return (self.finished or time.time()) - self.started

    def wait(self, timeout: float | None = None) -> Any:
        if self._go is not None:
            self._go.set()  # somebody needs the result now
        if self._thread is not None:
            self._thread.join(timeout)
        return self.result


MAX_DEFER = 5.0
# Benchmark switch (benchmarks/concurrency.py): "tasks" in it starts every task at once, at the
# server's priority, the plain variant deferral and nice are measured against.
PLAIN = "tasks" in os.environ.get("SPECKLE_VAE_BENCH_PLAIN", "").split(",")
_deferred: weakref.WeakSet[Task] = weakref.WeakSet()
_deferred_lock = threading.Lock()


# Every started task, and whether the interpreter is exiting (see _at_exit).
_live: weakref.WeakSet[Task] = weakref.WeakSet()
_exiting = threading.Event()
EXIT_WAIT = 10.0


@atexit.register
def _at_exit() -> None:
    """A daemon thread still inside torch when the interpreter tears down its C++ state aborts
    the process ("terminate called without an active exception", seen at the exit of a script
    that had just released a background task). So deferred tasks that have not started are
    dropped, and running ones get up to EXIT_WAIT seconds in all to finish."""
    _exiting.set()
    _release(lambda task: True)
    deadline = time.monotonic() + EXIT_WAIT
    with _deferred_lock:
        live = list(_live)
    for task in live:
        if task._thread is not None:
            task._thread.join(max(0.0, deadline - time.monotonic()))


def release_deferred(owner: Hashable | None) -> None:
    """Start the tasks `owner` deferred, now: called at the end of each of its script runs.
    Other sessions' tasks wait for their own runs' ends."""
    _release(lambda task: task.owner == owner)


def _release(which: Callable[[Task], bool]) -> None:
    with _deferred_lock:
        pending = [task for task in _deferred if which(task)]
        for task in pending:
            _deferred.discard(task)
    for task in pending:
        task._go.set()


_run_owner: contextvars.ContextVar[Hashable | None] = contextvars.ContextVar("owner", default=None)


@contextlib.contextmanager
def run_of(owner: Hashable) -> Iterator[None]:
    """A script run of `owner` (a browser session): tasks started inside are its own, and the
    ones it deferred start when the block ends, after the page is sent."""
    token = _run_owner.set(owner)
    try:
        yield
    finally:
        _run_owner.reset(token)
        release_deferred(owner)


def lower_priority(nice: int) -> None:
    """Raise the calling thread's nice value by `nice`; threads it starts later inherit it. On
    Linux a thread is a task of its own, so this leaves the rest of the process alone; elsewhere
    the same call would renice the whole process, so it does nothing there."""
    if sys.platform != "linux" or nice <= 0:
        return
    tid = threading.get_native_id()
    # A sandbox that forbids it: the work still runs, at normal priority.
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
