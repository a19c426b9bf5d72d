"""A background computation with pollable state, for work that must not block a page (the first
UMAP fit, a first build's reconstruction errors). The worker thread never touches Streamlit; a
page fragment polls `done`. A task starts at once, at the server's priority: holding it back until
the page was sent and renicing it moved the first map by less than 10% (6.5 against 7.1 s for
one session, 16.7 against 16.6 s for four; benchmarks/concurrency.py, docs/architecture.md)."""

from __future__ import annotations

import atexit
import threading
import time
import traceback
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)  # compared and hashed by identity: live tasks are kept in a set
class Task:
    name: str
    fn: Callable[[], Any]
    started: float = field(default_factory=time.time)
    finished: float | None = None
    result: Any = None
    error: str | None = None
    fraction: float = 0.0  # progress the work reports (report), for a page's status line
    text: str = ""
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> Task:
        self.started = time.time()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        with _live_lock:
            _live.add(self)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self.result = self.fn()
        except Exception as e:  # reported on the page, not raised into a dead thread
            self.error = f"{type(e).__name__}: {e}"
            traceback.print_exc()
        finally:
            self.finished = time.time()

    def report(self, fraction: float, text: str) -> None:
        """A progress callback (vae.latents.Progress) for the work to call."""
        self.fraction, self.text = float(fraction), text

    @property
    def begun(self) -> bool:
        return self._thread is not None

    @property
    def done(self) -> bool:
        return self.finished is not None

    @property
    def elapsed(self) -> float:
        return (self.finished or time.time()) - self.started

    def wait(self, timeout: float | None = None) -> Any:
        if self._thread is not None:
            self._thread.join(timeout)
        return self.result


# Every started task, joined at interpreter exit (see _at_exit).
_live: weakref.WeakSet[Task] = weakref.WeakSet()
_live_lock = threading.Lock()
EXIT_WAIT = 10.0


@atexit.register
def _at_exit() -> None:
    """A daemon thread still inside torch when the interpreter tears down its C++ state aborts
    the process ("terminate called without an active exception"), so running tasks get up to
    EXIT_WAIT seconds in all to finish."""
    deadline = time.monotonic() + EXIT_WAIT
    with _live_lock:
        live = list(_live)
    for task in live:
        if task._thread is not None:
            task._thread.join(max(0.0, deadline - time.monotonic()))
