from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prefect import task

from lmloop import settings, tracking
from lmloop.config import PipelineConfig
from lmloop.corpus import DataValidationError


def _index_file(config: PipelineConfig, run_name: str | None, sources: list[str]):
    key = hashlib.sha256(json.dumps([config.digest(), sorted(sources), run_name]).encode()).hexdigest()[:16]
    return settings.work_dir() / "index" / f"{key}.json"


def _write_index(index: Path, run_id: str, status: str) -> None:
    index.parent.mkdir(parents=True, exist_ok=True)
    owner = {"pid": os.getpid(), "host": socket.gethostname()}
    index.write_text(json.dumps({"run_id": run_id, "status": status, **owner}))


def _alive(entry: dict) -> bool:
    """Is the process that owns a 'running' entry still running? (Then it is not ours to resume.)"""
    if entry.get("host") != socket.gethostname() or "pid" not in entry:
        return False
    try:
        os.kill(entry["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True  # alive, possibly this very process running another flow in a second thread


@task(retries=2, retry_delay_seconds=2)
def start_tracking(config: PipelineConfig, run_name: str | None, sources: list[str]) -> str:
    """Open the MLflow run every stage logs into. The same config, data and name after a crash or a
    failure resumes the same run (and its checkpoints) instead of starting over."""
    index = _index_file(config, run_name, sources)
    if index.exists():
        previous = json.loads(index.read_text())
        if previous["status"] == "failed" or (previous["status"] == "running" and not _alive(previous)):
            tracking.reopen_run(previous["run_id"])
            _write_index(index, previous["run_id"], "running")
            return previous["run_id"]
    run_id = tracking.start_run(config.registry.experiment, run_name, {"lmloop.config_hash": config.digest()})
    tracking.log_params(run_id, {**config.flat(), "data.sources": sources})
    tracking.log_dict(run_id, config.model_dump(mode="json"), "config.json")
    _write_index(index, run_id, "running")
    return run_id


@task
def finish_tracking(config: PipelineConfig, run_name: str | None, sources: list[str], run_id: str, status: str) -> None:
    """``status``: complete (FINISHED), rejected (data gate; a re-run starts afresh) or failed (resumable)."""
    tracking.finish_run(run_id, "FINISHED" if status == "complete" else "FAILED")
    _write_index(_index_file(config, run_name, sources), run_id, status)


@contextmanager
def tracked_run(config: PipelineConfig, run_name: str | None, sources: list[str]) -> Iterator[str]:
    """The MLflow run around a flow's stages: finished as complete, rejected (data gate) or failed (resumable)."""
    run_id = start_tracking(config, run_name, sources)
    try:
        yield run_id
    except DataValidationError:
        finish_tracking(config, run_name, sources, run_id, "rejected")
        raise
    except Exception:
        finish_tracking(config, run_name, sources, run_id, "failed")
        raise
    finish_tracking(config, run_name, sources, run_id, "complete")
