"""Run a server that dies with the process that started it: ``python -m lmloop.ops.guard COMMAND...``.

The guard asks Linux to send it SIGTERM when its parent dies (``PR_SET_PDEATHSIG``), whatever killed the
parent (kill -9 included), and then stops the server's whole process group. The server runs in a session
of its own, so a Ctrl-C or SIGTERM aimed at the parent's group does not stop it while the parent still
needs it to report its last states.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # not Linux/glibc: no request; the parent's own cleanup at exit still stops the server
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def main(argv: list[str]) -> int:
    parent = os.getppid()
    _die_with_parent()
    if os.getppid() != parent:  # the parent died before the request took effect
        return 0
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    child = subprocess.Popen(argv, start_new_session=True)

    def stop(*_: object) -> None:
        # a temporary server keeps nothing worth a graceful shutdown (its sqlite database survives a kill)
        # (no child.wait() here: the interrupted main thread holds the Popen's wait lock)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    return child.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
