"""Writes that other processes never see half-done: a private temporary name, then an atomic rename."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid
from pathlib import Path
from typing import Any


def private_tmp(path: Path) -> Path:
    """A temporary name beside ``path`` that no other writer (process or thread) uses."""
    return path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}-{uuid.uuid4().hex[:8]}.partial")


def write_text_atomic(path: Path, text: str) -> Path:
    """Readers see the old content or the new, never a mix; concurrent writers never share a temp file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = private_tmp(path)
    tmp.write_text(text)
    tmp.replace(path)
    return path


def _seal_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.seal")


def _fingerprint(path: Path) -> dict[str, object]:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return {"size": path.stat().st_size, "sha256": digest.hexdigest()}


def seal(path: Path) -> Path:
    """Record a finished cache file's size and sha256 beside it (``<name>.seal``): :func:`intact` then tells a
    complete entry from one truncated or damaged since (a full disk, a killed copy, a bad sector)."""
    write_text_atomic(_seal_path(path), json.dumps(_fingerprint(path)))
    return path


def intact(path: Path) -> bool:
    """Is ``path`` a cache entry as it was sealed? False when it is missing, unsealed, or changed since:
    the caller rebuilds it instead of failing on it later with a message that names no file."""
    try:
        recorded = json.loads(_seal_path(path).read_text())
        if path.stat().st_size != recorded["size"]:
            return False
        return _fingerprint(path)["sha256"] == recorded["sha256"]
    except (OSError, ValueError, KeyError):
        return False


def write_json(path: Path, payload: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path
