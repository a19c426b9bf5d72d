from __future__ import annotations

import threading

from explorer import tasks
from explorer.tasks import Task


def _logged(log: list[str], name: str):
    def fn() -> str:
        log.append(name)
        return name

    return fn


def test_deferred_task_waits_for_the_page_then_runs(monkeypatch) -> None:
    monkeypatch.setattr(tasks, "MAX_DEFER", 600.0)  # only the release can start it
    log: list[str] = []
    task = Task("held", _logged(log, "held"), defer=True, owner="a").start()
    assert not task._go.is_set() and log == [] and not task.done  # held while the page is drawn
    tasks.release_deferred("a")
    assert task.wait(10) == "held" and task.done and log == ["held"]


def test_a_session_releases_only_its_own_deferred_tasks(monkeypatch) -> None:
    """Two browser sessions: the end of A's run starts A's background work, not B's, which
    waits for the end of B's own run."""
    monkeypatch.setattr(tasks, "MAX_DEFER", 600.0)
    log: list[str] = []
    with tasks.run_of("session-a"):
        a = Task("a", _logged(log, "a"), defer=True).start()
        assert a.owner == "session-a"
        with tasks.run_of("session-b"):
            b = Task("b", _logged(log, "b"), defer=True).start()
        # B's run has ended: its task is released, A's (still drawing) is not.
        assert b.wait(10) == "b" and not a._go.is_set() and not a.done
    assert a.wait(10) == "a"
    assert log == ["b", "a"]
    # Ownerless tasks (outside any run) are not any session's to release.
    c = Task("c", _logged(log, "c"), defer=True).start()
    tasks.release_deferred("session-a")
    assert c.owner is None and not c._go.is_set()
    tasks.release_deferred(None)
    assert c.wait(10) == "c"


def test_waiting_for_a_deferred_task_starts_it(monkeypatch) -> None:
    """A page that needs the result at once (colour by reconstruction error) must not hang."""
    monkeypatch.setattr(tasks, "MAX_DEFER", 600.0)
    task = Task("needed", lambda: 42, defer=True, owner="nobody releases this").start()
    assert task.wait(10) == 42 and task.done


def test_a_deferred_task_starts_on_its_own_if_nobody_releases_it(monkeypatch) -> None:
    monkeypatch.setattr(tasks, "MAX_DEFER", 0.2)
    done = threading.Event()
    task = Task("orphan", done.set, defer=True, owner="gone").start()
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
    monkeypatch.setattr(tasks, "MAX_DEFER", 600.0)
    exiting = threading.Event()
    monkeypatch.setattr(tasks, "_exiting", exiting)
    log: list[str] = []
    held = Task("held", _logged(log, "held"), defer=True, owner="a").start()
    started = threading.Event()
    # Finishes only once the exit has begun, so the exit must wait for it.
    running = Task(
        "running", lambda: (started.set(), exiting.wait(10), log.append("running")), defer=False
    ).start()
    assert started.wait(10)
    tasks._at_exit()
    assert running.done and "running" in log
    held.wait(10)
    assert held.done and "held" not in log and held.error.startswith("not run")
