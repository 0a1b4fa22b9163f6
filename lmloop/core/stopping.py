"""Stop requests (Ctrl-C, SIGTERM) honoured at safe points rather than wherever the signal lands."""

from __future__ import annotations

import signal

SIGNALS = (signal.SIGINT, signal.SIGTERM)
# the signal of the stop request in hand, if any: this process's worker threads stop at their next safe point
_PENDING: list[str] = []


class StopRequest:
    """While active, the first Ctrl-C (SIGINT) or SIGTERM only sets ``requested``; the work checks it at safe
    points (a training step, a file) and stops there (a checkpoint saved, no half-written output). A second
    signal stops at once, as the default handlers would."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        for sig in SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: no handler, still crash-safe via periodic checkpoints
                break
        return self

    def _handle(self, signum: int, _frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt(f"{self.requested} twice: stopped at once")
        self.requested = signal.Signals(signum).name
        _PENDING[:] = [self.requested]

    def check(self, where: str) -> None:
        """Stop here (KeyboardInterrupt) when a stop was requested."""
        if self.requested:
            raise KeyboardInterrupt(f"{self.requested}: stopped {where}")

    def __exit__(self, *_: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)  # type: ignore[arg-type]
        _PENDING.clear()


def check_pending(where: str) -> None:
    """For work on this process's worker threads, which no signal reaches: stop here (KeyboardInterrupt) when
    the main thread's :class:`StopRequest` was asked to stop, rather than finish a unit nobody waits for (the
    main thread would otherwise wait for it before it can exit)."""
    if _PENDING:
        raise KeyboardInterrupt(f"{_PENDING[0]}: stopped {where}")
