"""What a room reports about the work it did, and where it goes: a :class:`Reporter` handed in by the task
that called the room (the MLflow run it works under, plus Prefect's pages and log). Rooms write their report
against this interface (each room's ``report`` module), so the task layer holds no report code of its own."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

Series = list[tuple[int, float]]


class Reporter(Protocol):
    run_id: str

    def metrics(self, values: dict[str, float], step: int | None = None, *, with_parent: bool = False) -> None:
        """Figures of this run (a step for curves); ``with_parent``: also of the flow's run this stage is
        nested in."""

    def step_logger(self, metric: str = "train_loss") -> Callable[[dict[str, float], int], None]:
        """Log figures by step, skipping the steps a resumed run already logged."""

    def history(self, keys: tuple[str, ...]) -> dict[str, Series]:
        """This run's own figures by step, for curves."""

    def system_metrics(self) -> AbstractContextManager[None]:
        """CPU, memory and GPU use of this run while the block runs."""

    def tags(self, values: dict[str, Any], *, with_parent: bool = False) -> None:
        """Tags of this run; ``with_parent``: also of the flow's run this stage is nested in."""

    def text(self, text: str, artifact_file: str) -> None:
        """A text file among the run's artifacts (Markdown reports)."""

    def artifact(self, path: Path, folder: str | None = None) -> None:
        """A file (or a folder, which keeps its name) among the run's artifacts, under ``folder``."""

    def table(self, rows: list[dict[str, Any]], artifact_file: str) -> None:
        """Rows the UI shows as a table."""

    def dataset(self, name: str, digest: str, source: str, *, context: str, profile: dict[str, Any]) -> None:
        """A dataset input of this run: which data, its digest and its profile (rows, tokens, sources)."""

    def run_url(self) -> str:
        """This run's page in the MLflow UI (no password)."""

    def version_url(self, name: str, version: str) -> str:
        """A registered version's page in the MLflow UI."""

    def markdown(self, text: str, key: str, description: str) -> None:
        """A Markdown page for a person: a Prefect artifact of the flow run."""

    def link(self, url: str, text: str, description: str) -> None:
        """A link for a person: a Prefect artifact of the flow run."""

    def say(self, message: str) -> None:
        """A line in the flow run's log."""

    def describe_version(self, name: str, version: str, text: str) -> None:
        """Append ``text`` to a registered version's description, once (a rerun appends nothing)."""
