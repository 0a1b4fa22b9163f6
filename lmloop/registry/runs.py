"""Which MLflow run a flow logs into: a new one, or the one a crashed or failed attempt left behind.

The index (``work/index/<key>.json``, one file per key) records the run id, its status
(running, complete, rejected, failed) and the owning process. The same key after a crash or a failure
resumes the same run (and its checkpoints) instead of starting over; a run whose owner is still alive
is not ours to resume.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path
from typing import Any


def run_key(*parts: Any) -> str:
    """A stable key for what identifies a run (config digest, sources, name; or a continual batch)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _alive(entry: dict[str, Any]) -> bool:
    """Is the process that owns a 'running' entry still running?"""
    if entry.get("host") != socket.gethostname() or "pid" not in entry:
        return False
    try:
        os.kill(entry["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True  # alive, possibly this very process running another flow in a second thread


class RunIndex:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _file(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def resumable(self, key: str) -> str | None:
        """The run id to resume for ``key``: one that failed, or was running in a process now gone."""
        path = self._file(key)
        if not path.exists():
            return None
        entry = json.loads(path.read_text())
        if entry["status"] == "failed" or (entry["status"] == "running" and not _alive(entry)):
            return entry["run_id"]
        return None

    def record(self, key: str, run_id: str, status: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        owner = {"pid": os.getpid(), "host": socket.gethostname()}
        tmp = self._file(key).with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"run_id": run_id, "status": status, **owner}))
        tmp.replace(self._file(key))
