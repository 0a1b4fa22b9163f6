"""A test hook for crash consistency: ``LMLOOP_CRASH_AT=<point>`` kills the process with SIGKILL at that
named point, so a test can stop a cycle at an exact step boundary (not by timing) and check the rerun.
``LMLOOP_CRASH_SIGNAL=SIGTERM`` sends that signal instead: a stop request landing exactly there."""

from __future__ import annotations

import os
import signal


def crash_point(name: str) -> None:
    """With ``LMLOOP_CRASH_ONCE=<file>`` only the first process to reach the point dies (it creates the file):
    a worker killed mid-task whose retry must then succeed."""
    if os.environ.get("LMLOOP_CRASH_AT") != name:
        return
    if once := os.environ.get("LMLOOP_CRASH_ONCE"):
        try:
            os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
    os.kill(os.getpid(), signal.Signals[os.environ.get("LMLOOP_CRASH_SIGNAL", "SIGKILL")])
