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

from lmloop.continual.values import CycleSummary
from lmloop.core.files import private_tmp
from lmloop.data.file_reports import sha256_uri
from lmloop.data.sources import SourceError, discover
from lmloop.data.state import State


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
    from lmloop.continual.journal import pending

    if pending(state):
        return True
    if not landing.exists():
        return False
    seen = state.watermark() | state.deferred()
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


def nothing_new(landing: Path, champion: str | None) -> CycleSummary:
    """The summary of a cycle with nothing to do. Its ``warning`` is set when the landing folder is not
    there (a typo, or a first cycle before any data came): worth a warning, not an error."""
    missing = not landing.exists()
    reason = (
        f"the landing folder {landing} does not exist (yet): nothing to do; new data goes there"
        if missing
        else f"nothing new in {landing}"
    )
    return CycleSummary(
        new_files=[],
        promoted=None,
        reason=reason,
        warning=reason if missing else None,
        previous_champion=champion,
        challenger=None,
        champion=champion,
    )


def new_files(landing: Path, state: State, staging: Path, settle: float = 0.0) -> list[dict[str, str]]:
    """Landing files whose content no cycle has consumed, each copied into ``staging`` first: the cycle reads
    exactly the bytes it hashed (``staged``), and that hash is what the manifest and the watermark record.
    A file still being written (its size or mtime changes across ``settle`` seconds, or while it is copied)
    is left for the next cycle; a file consumed before that has changed since is not read again."""
    log = logging.getLogger("lmloop")
    from lmloop.continual.journal import finish_pending

    for batch in finish_pending(state):  # a crash interrupted that cycle's close: finish it first
        log.warning("finished closing %s, interrupted by a crash", batch)
    seen, waiting = state.watermark(), state.deferred()
    _drop_consumed(staging, seen)
    consumed = {entry.get("uri") for entry in seen.values()}
    candidates = []
    for source in _files(landing):
        sha = _hash(source)
        if sha is None or sha in seen or sha in waiting:  # deferred: it joins the batch as a waiting file
            continue
        if source.uri in consumed:  # appended to, or rewritten, after a cycle read it
            log.warning(
                "%s was consumed before and has changed since: not read again (a landing file is read once; "
                "put new data in a new file)",
                source.uri,
            )
            continue
        candidates.append((source, sha))
    fresh = []
    for source, sha in _settled(candidates, settle):
        try:
            staged = source.uri if source.format == "hf" else _stage(source, sha, staging)
        except OSError as exc:  # gone or unreadable between hashing and copying
            log.warning("%s could not be read (%s): left for the next cycle", source.uri, exc)
            continue
        if staged is None:
            log.warning("%s changed while it was read: left for the next cycle", source.uri)
            continue
        fresh.append({"uri": source.uri, "sha256": sha, "staged": str(staged)})
    return fresh


def _settled(candidates: list[tuple[Any, str]], settle: float) -> list[tuple[Any, str]]:
    """The candidates whose size and mtime stay the same across ``settle`` seconds (one wait for all): a
    writer still appending (a slow copy, a logger) is caught before half a file is consumed."""
    local = [c for c in candidates if c[0].is_local and c[0].format != "hf"]
    if settle <= 0 or not local:
        return candidates
    before = {c[0].uri: _stamp(c[0].uri) for c in local}
    time.sleep(settle)
    kept = []
    for source, sha in candidates:
        if source.uri in before and _stamp(source.uri) != before[source.uri]:
            logging.getLogger("lmloop").warning("%s is still being written: left for the next cycle", source.uri)
            continue
        kept.append((source, sha))
    return kept


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        info = Path(path).stat()
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns


def _drop_consumed(staging: Path, seen: dict[str, Any], grace: float = 3600.0) -> None:
    """Staged copies of files a closed cycle consumed, once no cycle started in the last ``grace`` seconds
    can still be reading them (their content lives on in the shard cache)."""
    consumed = {sha[:16] for sha in seen}
    for folder in staging.glob("*") if staging.exists() else []:
        if folder.name in consumed and time.time() - folder.stat().st_mtime > grace:
            shutil.rmtree(folder, ignore_errors=True)


def waiting(state: State) -> list[dict[str, str]]:
    """The files the retraining policy deferred whose staged copies are still there, oldest batch first."""
    return [
        {"uri": entry["uri"], "sha256": sha, "staged": entry["staged"], "deferred": entry["batch"]}
        for sha, entry in state.deferred().items()
        if Path(_plain(entry["staged"])).exists() or "://" in entry["staged"]
    ]


def unconsumed(files: list[dict[str, str]], state: State) -> list[dict[str, str]]:
    """The ``files`` (from :func:`new_files`) that no cycle has consumed since they were found."""
    seen = state.watermark()
    return [f for f in files if f["sha256"] not in seen]


def reject(files: list[dict[str, str]], report: dict[str, Any], batch: str, state: State) -> list[str]:
    """Consume the files of ``batch`` the data gate rejected (``report``: the gate's), each with its reason;
    returns their landing URIs. The files that passed stay new."""
    reasons = {_plain(r["file"]): "; ".join(r["reasons"])[:1000] for r in report.get("rejected_files", [])}
    rejected = [f for f in files if _plain(f["staged"]) in reasons]
    state.reject_files(rejected, batch, {f["sha256"]: reasons[_plain(f["staged"])] for f in rejected})
    return [f["uri"] for f in rejected]


def _plain(uri: str) -> str:
    return uri.removeprefix("file://")
