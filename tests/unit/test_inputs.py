"""Inputs real teams have: compressed files, byte-order marks, files that are not data, hostile names."""

import bz2
import codecs
import gzip
import hashlib
import json
from pathlib import Path

import pytest
from datasets import Dataset

from lmloop.core.config import DataConfig, ValidationConfig
from lmloop.data.gate import DataValidationError, gate
from lmloop.data.planning import ingest_files
from lmloop.data.sources import SourceError, format_of

VALID = ValidationConfig(min_rows=1)
TEXTS = ["first document", "second document", "third document"]


def _texts(report) -> list[str]:
    return list(Dataset.from_file(report.shard)["text"])


def test_compressed_files_are_read_transparently_with_the_raw_files_hash(tmp_path: Path) -> None:
    jsonl = "".join(json.dumps({"text": t}) + "\n" for t in TEXTS).encode()
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(jsonl))
    (tmp_path / "b.txt.gz").write_bytes(gzip.compress("\n\n".join(TEXTS).encode()))
    (tmp_path / "c.csv.bz2").write_bytes(bz2.compress(("text\n" + "\n".join(TEXTS) + "\n").encode()))
    reports = ingest_files([str(tmp_path)], DataConfig(), VALID, cache=tmp_path / "cache")
    assert [(Path(r.uri).name, r.format, r.status) for r in reports] == [
        ("a.jsonl.gz", "jsonl", "accepted"),
        ("b.txt.gz", "txt", "accepted"),
        ("c.csv.bz2", "csv", "accepted"),
    ]
    assert all(_texts(r) == TEXTS for r in reports)
    raw = (tmp_path / "a.jsonl.gz").read_bytes()
    assert reports[0].sha256 == hashlib.sha256(raw).hexdigest() and reports[0].size == len(raw)
    assert format_of("x.parquet.gz") is None and format_of("notes.TXT") == ("txt", None)


def test_a_byte_order_mark_is_read_as_utf8(tmp_path: Path) -> None:
    bom = codecs.BOM_UTF8
    (tmp_path / "a.txt").write_bytes(bom + "\n\n".join(TEXTS).encode())
    (tmp_path / "b.jsonl").write_bytes(bom + "".join(json.dumps({"text": t}) + "\n" for t in TEXTS).encode())
    (tmp_path / "c.csv").write_bytes(bom + ("text,label\n" + "".join(f"{t},x\n" for t in TEXTS)).encode())
    (tmp_path / "d.json").write_bytes(bom + json.dumps([{"text": t} for t in TEXTS]).encode())
    reports = ingest_files([str(tmp_path)], DataConfig(), VALID, cache=tmp_path / "cache")
    assert [r.status for r in reports] == ["accepted"] * 4, [r.reasons for r in reports]
    assert all(_texts(r) == TEXTS for r in reports), "no invisible \\ufeff left in the first document or header"


def test_nothing_is_skipped_in_silence(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "good.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    (data / "report.docx").write_bytes(b"PK\x03\x04")
    (data / ".DS_Store").write_bytes(b"\x00")
    (data / "_drafts").mkdir()
    (data / "_drafts" / "x.txt").write_text("draft")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (data / "linked").symlink_to(elsewhere, target_is_directory=True)
    reports = ingest_files([str(data)], DataConfig(), VALID, cache=tmp_path / "cache")
    skipped = {Path(r.uri).name: r.reasons[0] for r in reports if r.status == "skipped"}
    assert set(skipped) == {"report.docx", ".DS_Store", "_drafts", "linked"}
    assert "unsupported file type .docx" in skipped["report.docx"] and "symlinked folder" in skipped["linked"]
    summary = gate(reports, data=DataConfig(), validation=VALID, out=tmp_path / "out", quarantine_dir=tmp_path / "q")
    assert summary.validation.files == 1 and summary.validation.files_skipped == 4
    assert (tmp_path / "out" / "validation.md").read_text().count("| skipped |") == 4
    assert not (tmp_path / "q").exists(), "skipped files are not rejected: nothing to quarantine"
    only = tmp_path / "only"
    only.mkdir()
    (only / "a.docx").write_bytes(b"x")
    (only / "b.pdf").write_bytes(b"x")
    with pytest.raises(SourceError, match=r"found only: \.docx, \.pdf.*reads \.txt, \.jsonl"):
        ingest_files([str(only)], DataConfig(), VALID, cache=tmp_path / "cache")


def test_hostile_file_names_cannot_forge_report_lines(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "good.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    evil = "evil\n  - forged.txt: all good | accepted | 1 | 1 | 0 |\n.txt"
    (data / evil).write_bytes(b"caf\xe9\n")  # not UTF-8: rejected, so it shows in the console message too
    reports = ingest_files([str(data)], DataConfig(), VALID, cache=tmp_path / "cache")
    strict = ValidationConfig(min_rows=1, max_failed_file_share=0.0)
    with pytest.raises(DataValidationError) as refused:
        gate(reports, data=DataConfig(), validation=strict, out=tmp_path / "out", quarantine_dir=tmp_path / "q")
    console = refused.value.details.splitlines()
    assert [line for line in console if line.startswith("  - ")] == [console[1]], "one line per rejected file"
    assert "evil\\n" in console[1]
    table = [line for line in (tmp_path / "out" / "validation.md").read_text().splitlines() if line.startswith("| `")]
    assert len(table) == 2 and all(line.count(" | ") == 6 for line in table), table


def test_small_files_checked_together_get_the_reports_they_would_get_alone(tmp_path: Path) -> None:
    """Small files share one GX run; each still gets its own verdict, failures, dropped lines and shard."""
    from lmloop.data.ingest import process_file, process_small_files
    from lmloop.data.sources import discover

    data = tmp_path / "data"
    data.mkdir()
    (data / "a_good.txt").write_text("\n\n".join(TEXTS))
    (data / "b_control.jsonl").write_text(
        json.dumps({"text": "bad \x00 byte"}) + "\n" + json.dumps({"text": "fine"}) + "\n"
    )
    (data / "c_repeats.jsonl").write_text("".join(json.dumps({"text": "same"}) + "\n" for _ in range(6)))
    (data / "d_empty.txt").write_text("")
    (data / "e_good.jsonl").write_text("".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(5)))
    files, _ = discover([str(data)])
    lenient = ValidationConfig(min_rows=1, mostly=0.5)
    for validation in (VALID, lenient):
        together = process_small_files(files, DataConfig(), validation, tmp_path / f"together-{validation.mostly}")
        alone = [
            process_file(f, DataConfig(), validation, cache=tmp_path / f"alone-{validation.mostly}") for f in files
        ]
        strip = [(r.status, r.rows_read, r.rows_accepted, r.reasons) for r in together]
        assert strip == [(r.status, r.rows_read, r.rows_accepted, r.reasons) for r in alone], validation
        for mine, theirs in zip(together, alone, strict=True):
            if mine.shard:
                assert _texts(mine) == _texts(theirs)
    assert [r.status for r in together] == ["accepted", "accepted", "rejected", "rejected", "accepted"]
