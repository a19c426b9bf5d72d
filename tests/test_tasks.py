from __future__ import annotations

import threading

from explorer import tasks
from explorer.tasks import Task


def test_a_task_starts_at_once_and_reports_its_result() -> None:
    started = threading.Event()
    gate = threading.Event()
    task = Task("now", lambda: (started.set(), gate.wait(10), 42)[-1]).start()
    assert started.wait(10) and not task.done
    gate.set()
    assert task.wait(10) == 42 and task.done and task.error is None


def test_a_failing_task_reports_its_error_in_one_line() -> None:
    def fail() -> None:
        raise ValueError("bad latents")

    task = Task("fails", fail).start()
    task.wait(10)
    assert task.done and task.error == "ValueError: bad latents"


def test_exit_waits_for_running_tasks(monkeypatch) -> None:
    """At interpreter exit a running task is given time to finish: a thread still inside torch
    when the interpreter tears down aborts the process."""
    exiting = threading.Event()
    log: list[str] = []
    started = threading.Event()
    running = Task(
        "running", lambda: (started.set(), exiting.wait(0.5), log.append("running"))
    ).start()
    assert started.wait(10)
    tasks._at_exit()
    assert running.done and log == ["running"]
