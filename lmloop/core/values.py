"""The base of every value stages hand each other (small, frozen, JSON-serialisable) and :class:`Run`, the
flow run a stage writes under. A Prefect task returns a value and the next task takes it, so the flow's graph
shows the data flow and results persist as JSON. Each room defines the values that name its files.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from lmloop.core.settings import Home


class Value(BaseModel):
    model_config = ConfigDict(frozen=True)


class Run(Value):
    """One flow run (or one stage of it, nested in MLflow under the flow's run): its MLflow run id and the
    home it writes under (``work/<flow-run-id>/``)."""

    run_id: str
    home: Home
    parent_id: str | None = None  # a nested (stage) run: it writes under its parent's folder

    @property
    def work(self) -> Path:
        return self.home.work / (self.parent_id or self.run_id)

    @property
    def docs(self) -> Path:
        """Great Expectations' Data Docs of this run's validations."""
        return self.work / "data_docs"

    @property
    def quarantine(self) -> Path:
        """Where the data gate moves this run's rejected files."""
        return self.home.quarantine / (self.parent_id or self.run_id)
