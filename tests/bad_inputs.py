"""The bad inputs every data gate must survive: each gives a clear error naming the file and reason."""

from __future__ import annotations

import json
import random
from pathlib import Path

# file name -> words the rejection reason must contain
EXPECTED = {
    "empty.txt": "empty",
    "random.txt": "not valid UTF-8",
    "latin1.txt": "not valid UTF-8",
    "nul.jsonl": "expect_column_values_to_not_match_regex",
    "malformed.jsonl": "malformed JSON",
    "no_text_field.jsonl": "expect_column_values_to_not_be_null",
    "no_column.csv": "no column 'text'",
    "one_5mb_line.txt": "expect_column_value_lengths_to_be_between",
    "identical_lines.jsonl": "file_duplicate_share",
    "leaks_eval.jsonl": "leakage",
    "escapes_root.txt": "outside the data roots",
}


def _jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def write_bad_inputs(folder: Path, outside: Path) -> Path:
    """Write every bad input into ``folder`` (the symlink points into ``outside``); returns the frozen eval file."""
    folder.mkdir(parents=True, exist_ok=True)
    outside.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    (folder / "empty.txt").write_bytes(b"")
    (folder / "random.txt").write_bytes(b"\xff\xfe" + bytes(rng.randrange(256) for _ in range(4096)))
    (folder / "latin1.txt").write_bytes("Un café très crème, s'il vous plaît.\n".encode("latin-1"))
    _jsonl(folder / "nul.jsonl", [{"text": f"clean line {i}"} for i in range(5)] + [{"text": "bin\x00ary"}])
    (folder / "malformed.jsonl").write_text('{"text": "fine"}\n{"text": "broken\n{"text": "fine again"}\n')
    _jsonl(folder / "no_text_field.jsonl", [{"body": f"wrong field {i}"} for i in range(5)])
    (folder / "no_column.csv").write_text("body,label\nhello,a\n")
    (folder / "one_5mb_line.txt").write_text("x" * (5 * 1024 * 1024) + "\n")
    _jsonl(folder / "identical_lines.jsonl", [{"text": "the same line again"}] * 1000)
    eval_docs = [{"text": f"held out evaluation document {i}"} for i in range(20)]
    eval_file = outside / "frozen_eval.jsonl"
    _jsonl(eval_file, eval_docs)
    _jsonl(folder / "leaks_eval.jsonl", eval_docs)
    secret = outside / "secret.txt"
    secret.write_text("outside the root\n")
    (folder / "escapes_root.txt").symlink_to(secret)
    return eval_file
