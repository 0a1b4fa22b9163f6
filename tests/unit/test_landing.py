"""A file still being written into the landing folder is not half-consumed: the cycle reads a copy whose
bytes it hashed, and records that one hash everywhere; a file that changes while it is copied waits."""

import hashlib
import json
from pathlib import Path

import pytest

from lmloop import landing as landing_folder
from lmloop.state import State


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
