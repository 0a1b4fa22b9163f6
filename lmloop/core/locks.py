"""Locks shared by every process of a home, or by every machine of a team: an EXCLUSIVE sqlite transaction on a
file under the home's state (every process using that home), or, with ``LMLOOP_LOCK_URL=postgresql://...``, a
PostgreSQL advisory lock keyed by the lock's name (every machine pointed at that database). The promotion lock
(``@champion`` moves) and the state lock (read-modify-writes of the state folder) are two of them."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lmloop.core import settings


@contextmanager
def exclusive(name: str, sqlite_file: Path, timeout: float = 600.0) -> Iterator[None]:
    """Hold the lock ``name`` while the block runs (other holders wait up to ``timeout`` seconds). Without
    ``LMLOOP_LOCK_URL`` the lock is ``sqlite_file`` as a whole: one file per kind of lock, never nested."""
    url = settings.lock_url()
    if url:
        with _postgres_lock(url, name, timeout):
            yield
        return
    sqlite_file.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(sqlite_file, timeout=timeout, isolation_level=None)
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS locks (name TEXT PRIMARY KEY, holder TEXT, since REAL)")
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("INSERT OR REPLACE INTO locks VALUES (?, ?, ?)", (name, str(os.getpid()), time.time()))
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()


@contextmanager
def _postgres_lock(url: str, name: str, timeout: float) -> Iterator[None]:
    """A session-level advisory lock keyed by the name's hash; released on exit or if the holder dies."""
    try:
        import psycopg
    except ImportError as exc:
        raise RuntimeError("LMLOOP_LOCK_URL is PostgreSQL: pip install 'lmloop[team]' (psycopg)") from exc

    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    try:
        conn = psycopg.connect(url, connect_timeout=10, autocommit=True)
    except (psycopg.Error, ValueError) as exc:  # never echo the URL's password
        raise RuntimeError(settings.redact(f"LMLOOP_LOCK_URL {url}: cannot take the lock {name!r}: {exc}")) from None
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT set_config('lock_timeout', %s, false)", (f"{int(timeout * 1000)}ms",))
            cur.execute("SELECT pg_advisory_lock(%s)", (key,))
        try:
            yield
        finally:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", (key,))
    finally:
        conn.close()
