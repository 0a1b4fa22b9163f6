"""A test hook for crash consistency: ``LMLOOP_CRASH_AT=<point>`` kills the process with SIGKILL at that
named point, so a test can stop a cycle at an exact step boundary (not by timing) and check the rerun."""

from __future__ import annotations

import os
import signal


def crash_point(name: str) -> None:
    if os.environ.get("LMLOOP_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
