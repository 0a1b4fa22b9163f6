"""Progress for the long stages (tokenization, training, evaluation).

On a terminal: a rich progress bar on stderr. Not on a terminal (CI, a Prefect worker, a log file):
a plain line every ``LMLOOP_PROGRESS_INTERVAL`` seconds (default 15) and one at the end, through the
Prefect run logger when inside a flow run (so it shows in the Prefect UI), else the ``lmloop`` logger.
``LMLOOP_PROGRESS=bar|plain|off`` overrides the choice.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Advance = Callable[[int], None]
_live = False  # rich allows one live display at a time: a nested progress falls back to plain lines


def mode() -> str:
    chosen = os.environ.get("LMLOOP_PROGRESS", "auto")
    if chosen == "auto":
        return "bar" if sys.stderr.isatty() else "plain"
    if chosen not in ("bar", "plain", "off"):
        raise ValueError(f"LMLOOP_PROGRESS must be auto, bar, plain or off, not {chosen!r}")
    return chosen


class _Stderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (pytest and rich swap it)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def _logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        from prefect import get_run_logger

        return get_run_logger()
    except Exception:  # no Prefect run context (a torchrun worker, a benchmark, a plain call)
        logger = logging.getLogger("lmloop.progress")
        root = logging.getLogger("lmloop")
        if not root.handlers:
            handler = _Stderr()
            handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
            root.addHandler(handler)
            root.setLevel(logging.INFO)
            root.propagate = False
        return logger


@contextmanager
def progress(description: str, total: int, unit: str = "steps", *, completed: int = 0) -> Iterator[Advance]:
    """``with progress("train", 200) as advance: ... advance(1)`` — a bar or periodic plain lines."""
    global _live
    chosen = mode()
    if chosen == "off":
        yield lambda n=1: None
        return
    if chosen == "bar" and not _live:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(unit),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        _live = True
        try:
            with Progress(*columns, console=Console(stderr=True)) as bar:
                task = bar.add_task(description, total=total, completed=completed)
                yield lambda n=1: bar.advance(task, n)
        finally:
            _live = False
        return
    interval = float(os.environ.get("LMLOOP_PROGRESS_INTERVAL", "15"))
    logger = _logger()
    done, start = completed, time.monotonic()
    last = start

    def line() -> None:
        elapsed = time.monotonic() - start
        rate = (done - completed) / elapsed if elapsed > 0 else 0.0
        eta = f", eta {(total - done) / rate:.0f}s" if rate > 0 and done < total else ""
        share = 100 * done / total if total else 100.0
        logger.info(f"{description}: {done}/{total} {unit} ({share:.0f}%), {rate:.1f} {unit}/s{eta}")

    def advance(n: int = 1) -> None:
        nonlocal done, last
        done += n
        now = time.monotonic()
        if now - last >= interval:
            last = now
            line()

    line()  # the stage announces itself: the first periodic line would come a whole interval later
    yield advance
    line()


def note(message: str) -> None:
    """One line of progress news (an epoch's figures, a stage's verdict): to the Prefect run's log inside a
    flow run, else the ``lmloop`` logger; nothing with ``LMLOOP_PROGRESS=off``."""
    if mode() != "off":
        _logger().info(message)
