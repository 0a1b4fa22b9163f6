"""Stop requests (SIGTERM) honoured at safe points rather than wherever the signal lands."""

from __future__ import annotations

import signal


class StopRequest:
    """While active, SIGTERM only sets ``requested``; the work checks it at safe points (a training step,
    a file) and stops there (a checkpoint saved, no half-written output)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> StopRequest:
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: no handler, still crash-safe via periodic checkpoints
            self._previous = None
        return self

    def _handle(self, *_: object) -> None:
        self.requested = True

    def check(self, where: str) -> None:
        """Stop here (KeyboardInterrupt) when a stop was requested."""
        if self.requested:
            raise KeyboardInterrupt(f"SIGTERM: stopped {where}")

    def __exit__(self, *_: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
