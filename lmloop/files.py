"""Writes that other processes never see half-done: a private temporary name, then an atomic rename."""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path


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
