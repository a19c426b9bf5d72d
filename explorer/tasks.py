"""A background computation with pollable state, for work that must not block a page (the first
UMAP fit). The worker thread never touches Streamlit; a page fragment polls `state()`."""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Task:
    name: str
    fn: Callable[[], Any]
    started: float = field(default_factory=time.time)
    finished: float | None = None
    result: Any = None
    error: str | None = None
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> Task:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
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
