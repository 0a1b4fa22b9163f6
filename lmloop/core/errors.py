"""Mistakes a user can fix (a bad path, key, column; no champion yet), told apart from bugs: the CLI prints a
:class:`UserError` as one message, without a traceback, and opens no MLflow run for it."""

from __future__ import annotations

import difflib


class UserError(ValueError):
    """The input or the request is wrong; the message names the cause and the fix."""


class Rejected(RuntimeError):
    """An outcome, not a bug: the data gate (or another check) turned the input down, and the message says
    why. The CLI prints it once, without the tracebacks Prefect logs for a failed task and flow."""


class DamagedModel(RuntimeError):
    """A registered model's files are incomplete or corrupt (a truncated upload, a lost artifact): the message
    names the version, the file and what to do; nothing is trained from it or promoted."""


class NoModel(UserError):
    """The registered model, alias or version asked for does not exist (yet)."""


def did_you_mean(word: str, choices: list[str]) -> str:
    """``; did you mean X?`` for the closest of ``choices`` (empty when none is close)."""
    matches = difflib.get_close_matches(word, choices, n=2, cutoff=0.6)
    return f"; did you mean {' or '.join(matches)}?" if matches else ""
