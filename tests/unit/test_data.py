import json
from pathlib import Path

import pandas as pd
import pytest

from lmloop.data import IngestError, doc_hash, ingest, manifest_digest, split_by_hash, split_of


def _write_jsonl(path: Path, texts: list[str]) -> None:
    path.write_text("".join(json.dumps({"text": t, "label": "x"}) + "\n" for t in texts))


def test_split_is_deterministic_and_stable_when_data_grows(tmp_path: Path) -> None:
    old = [f"document number {i}" for i in range(300)]
    _write_jsonl(tmp_path / "a.jsonl", old)
    before = split_by_hash(ingest([str(tmp_path)])[0], 0.1, 0.1)
    _write_jsonl(tmp_path / "b.jsonl", [f"new document {i}" for i in range(300)])
    after = split_by_hash(ingest([str(tmp_path)])[0], 0.1, 0.1)
    for name in ("train", "validation", "test"):
        assert set(before[name]["text"]) <= set(after[name]["text"])
    assert 0.05 < len(before["test"]) / 300 < 0.15


def test_split_of_uses_fractions() -> None:
    assert split_of("00000000", 0.1, 0.1) == "test"
    assert split_of("1a000000", 0.1, 0.1) == "validation"
    assert split_of("ffffffff", 0.1, 0.1) == "train"


def test_manifest_records_hash_size_rows_and_leaves_raw_untouched(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    _write_jsonl(path, ["one", "two", "three"])
    raw = path.read_bytes()
    _, entries = ingest([str(path)])
    assert entries[0].rows == 3 and entries[0].size == len(raw) and entries[0].format == "jsonl"
    assert entries[0].sha256 == doc_hash(raw.decode())
    assert path.read_bytes() == raw
    # the digest depends on content only, not on where the folder lives
    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / "renamed.jsonl").write_bytes(raw)
    assert manifest_digest(ingest([str(moved)])[1]) == manifest_digest(entries)


def test_formats_txt_paragraphs_csv_and_parquet(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("first para\nstill first\n\nsecond para\n")
    pd.DataFrame({"body": ["from csv"], "topic": ["t"]}).to_csv(tmp_path / "t.csv", index=False)
    pd.DataFrame({"body": ["from parquet"], "topic": [None]}).to_parquet(tmp_path / "t.parquet")
    (tmp_path / "_meta").mkdir()
    (tmp_path / "_meta" / "skip.txt").write_text("not data")
    ds, entries = ingest([str(tmp_path)], text_col="body", label_col="topic")
    rows = {r["text"]: r for r in ds}
    assert len(entries) == 3
    assert rows["first para\nstill first"]["line"] == 1 and rows["second para"]["line"] == 4
    assert rows["from csv"]["label"] == "t" and rows["from parquet"]["label"] is None


def test_bad_sources_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{not json}\n')
    with pytest.raises(IngestError, match=r"bad\.jsonl:2: malformed JSON"):
        ingest([str(bad)])
    csv = tmp_path / "c.csv"
    pd.DataFrame({"body": ["x"]}).to_csv(csv, index=False)
    with pytest.raises(IngestError, match=r"c\.csv: no column 'text'"):
        ingest([str(csv)])
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(IngestError, match=r"latin\.txt: not valid UTF-8"):
        ingest([str(latin)])
    with pytest.raises(IngestError, match="no such file"):
        ingest([str(tmp_path / "missing")])
