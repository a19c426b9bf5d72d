from __future__ import annotations

import threading
import time

from explorer import tasks
from explorer.tasks import Task


def _started(log: list[str], name: str):
    def fn() -> str:
        log.append(name)
        return name

    return fn


def test_deferred_task_waits_for_the_page_then_runs() -> None:
    log: list[str] = []
    task = Task("held", _started(log, "held"), defer=True).start()
    time.sleep(0.3)
    assert log == [] and not task.done  # held back while the page is drawn
    tasks.release_deferred()
    assert task.wait(10) == "held" and task.done and log == ["held"]


def test_waiting_for_a_deferred_task_starts_it() -> None:
    """A page that needs the result at once (colour by reconstruction error) must not hang."""
    task = Task("needed", lambda: 42, defer=True).start()
    t0 = time.perf_counter()
    assert task.wait(10) == 42
    assert time.perf_counter() - t0 < tasks.MAX_DEFER


def test_a_deferred_task_starts_on_its_own_if_nobody_releases_it(monkeypatch) -> None:
    monkeypatch.setattr(tasks, "MAX_DEFER", 0.2)
    done = threading.Event()
    task = Task("orphan", done.set, defer=True).start()
    assert done.wait(10) and task.wait(10) is None and task.done


def test_tasks_that_are_not_deferred_start_at_once() -> None:
    started = threading.Event()
    gate = threading.Event()
    task = Task("now", lambda: (started.set(), gate.wait(10)), defer=False).start()
    assert started.wait(10)  # no release_deferred() needed
    gate.set()
    task.wait(10)
    assert task.error is None


def test_exit_drops_unstarted_deferred_tasks_and_waits_for_running_ones(monkeypatch) -> None:
    """At interpreter exit a deferred task must not start torch work that the teardown would
    then abort, and a running one is given time to finish."""
    log: list[str] = []
    held = Task("held", _started(log, "held"), defer=True).start()
    running = Task("running", lambda: (time.sleep(0.3), log.append("running")), defer=False).start()
    monkeypatch.setattr(tasks, "_exiting", threading.Event())
    tasks._at_exit()
    assert running.done and "running" in log
    held.wait(10)
    assert held.done and "held" not in log and held.error.startswith("not run")
