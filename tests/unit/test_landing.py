"""A file still being written into the landing folder is not half-consumed: the cycle reads a copy whose
bytes it hashed, and records that one hash everywhere; a file that changes while it is copied waits."""

import hashlib
import json
from pathlib import Path

import pytest

from lmloop.continual import landing as landing_folder
from lmloop.data.state import State


def test_a_file_written_while_it_is_read_waits_for_the_next_cycle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    landing, state, staging = tmp_path / "landing", State(tmp_path / "state"), tmp_path / "incoming"
    landing.mkdir()
    growing = landing / "growing.jsonl"
    growing.write_text(json.dumps({"text": "first row"}) + "\n")
    hashed = landing_folder.sha256_uri

    def writer_appends_after_the_hash(uri: str) -> tuple[str, int]:
        result = hashed(uri)
        with open(uri, "a") as f:  # the producer is still writing
            f.write(json.dumps({"text": "another row"}) + "\n")
        return result

    monkeypatch.setattr(landing_folder, "sha256_uri", writer_appends_after_the_hash)
    assert landing_folder.new_files(landing, state, staging) == [], "changed while copied: not taken"
    monkeypatch.setattr(landing_folder, "sha256_uri", hashed)  # the producer has finished
    (fresh,) = landing_folder.new_files(landing, state, staging)
    staged = Path(fresh["staged"])
    assert fresh["uri"] == str(growing) and staged != growing
    assert hashlib.sha256(staged.read_bytes()).hexdigest() == fresh["sha256"] == hashed(str(growing))[0]
    state.advance_watermark([fresh], "batch-1")
    assert landing_folder.new_files(landing, state, staging) == [], "consumed"


def test_fifos_symlink_loops_and_vanishing_files_are_skipped_and_the_rest_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A FIFO would block the read forever, a symlink loop cannot be opened, a file replaced between listing
    and reading is gone: each is skipped (and listed), never a hang or a traceback; the good file is taken."""
    import os
    import threading

    from lmloop.data.sources import discover

    landing, state, staging = tmp_path / "landing", State(tmp_path / "state"), tmp_path / "incoming"
    landing.mkdir()
    (landing / "good.jsonl").write_text(json.dumps({"text": "a good row"}) + "\n")
    os.mkfifo(landing / "pipe.jsonl")
    (landing / "loop.jsonl").symlink_to(landing / "loop.jsonl")
    (landing / "vanishing.jsonl").write_text(json.dumps({"text": "soon gone"}) + "\n")
    files, skipped = discover([str(landing)])
    reasons = {Path(r.uri).name: r.reason for r in skipped}
    assert "FIFO" in reasons["pipe.jsonl"] and "symbolic links" in reasons["loop.jsonl"]
    assert sorted(Path(f.uri).name for f in files) == ["good.jsonl", "vanishing.jsonl"]
    hashed = landing_folder.sha256_uri

    def replaced_before_it_is_read(uri: str) -> tuple[str, int]:
        if uri.endswith("vanishing.jsonl"):
            os.unlink(uri)  # the producer replaces it: gone between listing and reading
        return hashed(uri)

    monkeypatch.setattr(landing_folder, "sha256_uri", replaced_before_it_is_read)
    found: list = []
    worker = threading.Thread(target=lambda: found.extend(landing_folder.new_files(landing, state, staging)))
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "a FIFO in the landing folder must not hang the cycle"
    assert [Path(f["uri"]).name for f in found] == ["good.jsonl"]
    assert landing_folder.has_work(landing, state)


def test_a_slowly_written_file_waits_until_it_settles_and_is_never_consumed_twice(tmp_path: Path) -> None:
    """A writer appending to a .txt every few tenths of a second: a cycle in the middle takes nothing (the file
    is still changing across the settle interval); once written it is taken whole; appended to after that, it is
    not read again (its path is in the watermark once)."""
    import threading
    import time

    landing, state, staging = tmp_path / "landing", State(tmp_path / "state"), tmp_path / "incoming"
    landing.mkdir()
    slow = landing / "slow.txt"
    slow.write_text("first paragraph of a report\n\n")

    def writer() -> None:
        for i in range(12):
            time.sleep(0.25)
            with slow.open("a") as f:
                f.write(f"paragraph {i} of the report, still being written\n\n")

    thread = threading.Thread(target=writer)
    thread.start()
    assert landing_folder.new_files(landing, state, staging, settle=1.0) == [], "still being written"
    thread.join()
    (whole,) = landing_folder.new_files(landing, state, staging, settle=1.0)
    assert Path(whole["staged"]).read_text() == slow.read_text() and "paragraph 11" in slow.read_text()
    state.advance_watermark([whole], "batch-1")
    with slow.open("a") as f:
        f.write("a late addition\n\n")
    assert landing_folder.new_files(landing, state, staging, settle=0.2) == [], "a consumed path is read once"
    assert [e["uri"] for e in state.watermark().values()] == [str(slow)]
