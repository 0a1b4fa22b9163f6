import json
from pathlib import Path

import fsspec
import pandas as pd
import pytest
from datasets import Dataset

from lmloop.core.config import DataConfig, ValidationConfig
from lmloop.data.cleaning import doc_id, normalize_text
from lmloop.data.file_reports import manifest_digest
from lmloop.data.planning import ingest_files
from lmloop.data.readers import Columns, ReadError, read_rows
from lmloop.data.sources import SourceError, SourceFile, discover
from lmloop.data.splits import split_of

DATA = DataConfig()
VALID = ValidationConfig(min_rows=1)


def _write_jsonl(path: Path, texts: list[str]) -> None:
    path.write_text("".join(json.dumps({"text": t, "label": "x"}) + "\n" for t in texts))


def _ingest(tmp_path: Path, *sources: str, data: DataConfig = DATA):
    return ingest_files(list(sources), data, VALID, cache=tmp_path / "cache")


def test_split_of_uses_fractions_and_is_stable() -> None:
    assert split_of("00000000", 0.1, 0.1) == "test"
    assert split_of("1a000000", 0.1, 0.1) == "validation"
    assert split_of("ffffffff", 0.1, 0.1) == "train"
    ids = [doc_id(f"doc {i}") for i in range(2000)]
    share = sum(split_of(d, 0.1, 0.1) == "test" for d in ids) / len(ids)
    assert 0.08 < share < 0.12


def test_adding_data_never_moves_an_old_document(tmp_path: Path) -> None:
    from lmloop.data.gate import gate

    def splits(folder: Path, out: Path) -> dict[str, set[str]]:
        reports = _ingest(tmp_path, str(folder))
        corpus = gate(reports, data=DATA, validation=VALID, out=out, quarantine_dir=tmp_path / "q")
        corpus = corpus.with_splits(DATA.val_fraction, DATA.test_fraction)
        texts = corpus.load()["text"]
        return {n: {texts[int(i)] for i in corpus.split_index(n)} for n in ("train", "validation", "test")}

    (tmp_path / "d").mkdir()
    _write_jsonl(tmp_path / "d" / "a.jsonl", [f"document number {i}" for i in range(300)])
    before = splits(tmp_path / "d", tmp_path / "o1")
    _write_jsonl(tmp_path / "d" / "b.jsonl", [f"new document {i}" for i in range(300)])
    after = splits(tmp_path / "d", tmp_path / "o2")
    for name in before:
        assert before[name] <= after[name]


def test_manifest_records_hash_size_format_rows_and_raw_is_untouched(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    _write_jsonl(path, ["one", "two", "two", "three"])
    raw = path.read_bytes()
    (report,) = _ingest(tmp_path, str(path))
    assert (report.rows_read, report.size, report.format, report.status) == (4, len(raw), "jsonl", "accepted")
    assert path.read_bytes() == raw
    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / "renamed.jsonl").write_bytes(raw)
    assert manifest_digest(_ingest(tmp_path, str(moved))) == manifest_digest([report])


def test_unchanged_files_are_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_jsonl(tmp_path / "a.jsonl", ["one", "two"])
    first = _ingest(tmp_path, str(tmp_path / "a.jsonl"))
    monkeypatch.setattr("lmloop.data.ingest.read_rows", lambda *a: pytest.fail("re-read an unchanged file"))
    assert _ingest(tmp_path, str(tmp_path / "a.jsonl"))[0].shard == first[0].shard


def test_formats_and_configurable_columns(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("first  para\nstill first\n\n\nsecond para\n")
    pd.DataFrame({"body": ["from csv"], "topic": ["t"], "key": ["k1"]}).to_csv(tmp_path / "t.csv", index=False)
    pd.DataFrame({"body": ["from parquet"], "topic": [None], "key": ["k2"]}).to_parquet(tmp_path / "t.parquet")
    (tmp_path / "arr.json").write_text(json.dumps([{"body": "from json", "topic": "j", "key": "k3"}]))
    Dataset.from_dict({"body": ["from hf"], "topic": ["h"], "key": ["k4"]}).save_to_disk(str(tmp_path / "hf"))
    (tmp_path / "_meta").mkdir()
    (tmp_path / "_meta" / "skip.txt").write_text("not data")
    data = DataConfig(text_column="body", label_column="topic", id_column="key")
    everything = _ingest(tmp_path, str(tmp_path), data=data)
    reports = [r for r in everything if r.status != "skipped"]
    assert {r.format for r in reports} == {"txt", "csv", "parquet", "json", "hf"}
    assert [(Path(r.uri).name, r.status) for r in everything if r not in reports] == [("_meta", "skipped")]
    rows = {}
    for r in reports:
        rows |= {row["text"]: row for row in Dataset.from_file(r.shard)}
    assert rows["first para\nstill first"]["line"] == 1 and rows["second para"]["line"] == 5
    assert rows["from csv"]["label"] == "t" and rows["from csv"]["record_id"] == "k1"
    assert rows["from parquet"]["label"] is None and rows["from hf"]["label"] == "h"


def test_fsspec_urls(tmp_path: Path) -> None:
    fs = fsspec.filesystem("memory")
    with fs.open("/bucket/docs/a.jsonl", "w") as f:
        f.write(json.dumps({"text": "in memory"}) + "\n")
    (report,) = _ingest(tmp_path, "memory://bucket/docs")
    assert report.status == "accepted" and report.uri.startswith("memory://")
    _write_jsonl(tmp_path / "f.jsonl", ["local via url"])
    (local,) = _ingest(tmp_path, (tmp_path / "f.jsonl").as_uri())
    assert local.status == "accepted"


def test_symlink_outside_the_root_is_rejected_unread(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    (root / "link.txt").symlink_to(outside / "secret.txt")
    (root / "inside.txt").symlink_to(root / "real.txt.bak")
    (root / "real.txt.bak").write_text("fine")
    files, rejected = discover([str(root)])
    assert [Path(f.uri).name for f in files] == ["inside.txt"]
    assert rejected[0].uri.endswith("link.txt") and "outside the data roots" in rejected[0].reason


def test_read_errors_name_file_line_and_reason(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{not json}\n')
    with pytest.raises(ReadError, match=r"bad\.jsonl:2: malformed JSON"):
        list(read_rows(SourceFile(str(bad), "jsonl"), Columns()))
    latin = tmp_path / "latin.txt"
    latin.write_bytes("ok\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(ReadError, match=r"latin\.txt:2: not valid UTF-8 \(byte 0xe9 at column 4\)"):
        list(read_rows(SourceFile(str(latin), "txt"), Columns()))
    with pytest.raises(SourceError, match="no such file"):
        discover([str(tmp_path / "missing")])


def test_normalize_text() -> None:
    assert normalize_text("Cafe\u0301  au\tlait \n\n\n\n next ") == "Café au lait\n\nnext"
    assert normalize_text("  x  ", nfc=False, whitespace=False) == "  x  "


def test_a_stop_request_ends_a_worker_thread_s_group_of_small_files_at_its_next_file(tmp_path: Path) -> None:
    """A worker thread receives no signal, and the main thread waits for it before it can exit: it looks at
    the stop request between files, and a group stopped early leaves nothing half-written."""
    import os
    import signal
    from concurrent.futures import ThreadPoolExecutor

    from lmloop.core.stopping import StopRequest
    from lmloop.data.ingest import process_small_files

    raw = tmp_path / "notes"
    raw.mkdir()
    for i in range(20):
        (raw / f"note-{i:02d}.txt").write_text(f"One sentence, number {i}, about the weather.\n")
    sources, _ = discover([str(raw)])
    cache = tmp_path / "cache"
    with StopRequest() as stop, ThreadPoolExecutor(1) as pool:
        os.kill(os.getpid(), signal.SIGTERM)  # handled: the request is only noted
        assert stop.requested == "SIGTERM"
        stopped = pool.submit(process_small_files, sources, DATA, VALID, cache).exception()
    assert isinstance(stopped, KeyboardInterrupt)
    assert str(stopped) == "SIGTERM: stopped reading small files: finished files are cached, a rerun goes on"
    assert not cache.exists() or not list(cache.iterdir()), "nothing written, nothing half-written"
    reports = process_small_files(sources, DATA, VALID, cache)  # the request ended with its block
    assert [r.status for r in reports] == ["accepted"] * 20
