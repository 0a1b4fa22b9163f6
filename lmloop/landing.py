"""The landing folder: which files a continual cycle has not consumed yet, staged before it reads them.

Light on purpose (no torch, no MLflow): ``lmloop continual`` asks :func:`has_work` before it starts
anything, so a cycle with nothing to do answers in a moment.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import fsspec

from lmloop.data import sha256_uri
from lmloop.files import private_tmp
from lmloop.sources import SourceError, discover
from lmloop.state import State


def _stage(source: Any, sha: str, staging: Path) -> Path | None:
    """Copy ``source`` into ``staging`` while hashing the copy; None when the copy's bytes differ from ``sha``
    (the file is still being written). The copy is content-addressed, so a rerun finds it in place."""
    target = staging / sha[:16] / source.name
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp, digest = private_tmp(target), hashlib.sha256()
    with fsspec.open(source.uri, "rb") as src, tmp.open("wb") as dst:
        while chunk := src.read(1 << 20):
            digest.update(chunk)
            dst.write(chunk)
    if digest.hexdigest() != sha:
        tmp.unlink()
        return None
    tmp.replace(target)
    return target


def has_work(landing: Path, state: State) -> bool:
    """Is there anything for a cycle to do: an interrupted close, or a landing file not consumed yet?
    (Read-only, no Prefect or MLflow: a nothing-new cycle answers in a moment.)"""
    if state.pending():
        return True
    if not landing.exists():
        return False
    seen = state.watermark()
    return any(sha not in seen for source in _files(landing) if (sha := _hash(source)))


def _hash(source: Any) -> str | None:
    """The file's content hash; None when it vanished (or stopped being readable) since it was listed:
    a landing folder changes under a cycle, and the next cycle looks again."""
    try:
        return sha256_uri(source.uri)[0]
    except OSError as exc:
        logging.getLogger("lmloop").warning("%s could not be read (%s): left for the next cycle", source.uri, exc)
        return None


def _files(landing: Path) -> list[Any]:
    """The readable files in the landing folder; an empty one (or one of only unsupported files) is normal."""
    if not landing.exists():
        return []
    try:
        return discover([str(landing)])[0]
    except SourceError:
        return []


def nothing_new(landing: Path, champion: str | None) -> dict[str, Any]:
    """The summary of a cycle with nothing to do. Its ``warning`` is set when the landing folder is not
    there (a typo, or a first cycle before any data came): worth a warning, not an error."""
    missing = not landing.exists()
    reason = (
        f"the landing folder {landing} does not exist (yet): nothing to do; new data goes there"
        if missing
        else f"nothing new in {landing}"
    )
    return {
        "new_files": [],
        "promoted": None,
        "reason": reason,
        "warning": reason if missing else None,
        "previous_champion": champion,
        "challenger": None,
        "champion": champion,
        "slices": {},
    }


def new_files(landing: Path, state: State, staging: Path) -> list[dict[str, str]]:
    """Landing files whose content no cycle has consumed, each copied into ``staging`` first: the cycle reads
    exactly the bytes it hashed (``staged``), and that hash is what the manifest and the watermark record.
    A file that changes while it is copied is left for the next cycle."""
    for batch in state.finish_pending():  # a crash interrupted that cycle's close: finish it first
        logging.getLogger("lmloop").warning("finished closing %s, interrupted by a crash", batch)
    seen = state.watermark()
    _drop_consumed(staging, seen)
    fresh = []
    for source in _files(landing):
        sha = _hash(source)
        if sha is None or sha in seen:
            continue
        try:
            staged = source.uri if source.format == "hf" else _stage(source, sha, staging)
        except OSError as exc:  # gone or unreadable between hashing and copying
            logging.getLogger("lmloop").warning("%s could not be read (%s): left for the next cycle", source.uri, exc)
            continue
        if staged is None:
            logging.getLogger("lmloop").warning("%s changed while it was read: left for the next cycle", source.uri)
            continue
        fresh.append({"uri": source.uri, "sha256": sha, "staged": str(staged)})
    return fresh


def _drop_consumed(staging: Path, seen: dict[str, Any], grace: float = 3600.0) -> None:
    """Staged copies of files a closed cycle consumed, once no cycle started in the last ``grace`` seconds
    can still be reading them (their content lives on in the shard cache)."""
    consumed = {sha[:16] for sha in seen}
    for folder in staging.glob("*") if staging.exists() else []:
        if folder.name in consumed and time.time() - folder.stat().st_mtime > grace:
            shutil.rmtree(folder, ignore_errors=True)
