"""The Streamlit internals benchmarks/slider.py needs, and nothing in the app uses: a fragment's
rerun under AppTest, as a browser's slider move asks the server for it (AppTest's run() always
reruns the whole script). Checked against Streamlit 1.67.0; a Streamlit upgrade that changes
them breaks this benchmark only, never the app.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streamlit.testing.v1 import AppTest


@contextlib.contextmanager
def forwarded_messages() -> Iterator[list]:
    """The ForwardMsgs of the AppTest runs made inside the block (to find which fragment holds
    an element)."""
    # Lazy: AppTest's harness (0.1 s of imports) serves benchmarks/slider.py; the app never loads it.
    from streamlit.testing.v1 import local_script_runner

    msgs: list = []
    runner = local_script_runner.LocalScriptRunner
    real = runner.forward_msgs
    runner.forward_msgs = lambda self: msgs.extend(real(self)) or msgs
    try:
        yield msgs
    finally:
        runner.forward_msgs = real


def page_tree(at: AppTest):
    """The element tree of `at`'s last whole-page run, whose widget states a fragment rerun
    sends."""
    return at._tree


def rerun_fragment(at: AppTest, fragment_id: str, widget_states) -> None:
    """Rerun one fragment of `at` with the given widget states, as the server does for a widget
    inside a fragment (RerunData.fragment_id_queue, as AppSession sets it)."""
    # Lazy: AppTest's harness (0.1 s of imports) serves benchmarks/slider.py; the app never loads it.
    from streamlit.testing.v1 import local_script_runner

    real = local_script_runner.RerunData
    queue = [fragment_id]
    local_script_runner.RerunData = lambda **kw: real(**kw, fragment_id_queue=queue)
    try:
        at._run(widget_states)
    finally:
        local_script_runner.RerunData = real
