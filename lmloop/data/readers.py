"""Streaming readers: one raw file -> ``(line, text, label, record_id)`` rows, bounded memory.

Text formats are decoded line by line with strict UTF-8, so a bad byte is reported with its file,
line and column before anything reaches Great Expectations. Document boundaries: ``.txt`` holds
one document per paragraph (blank-line separated); ``.jsonl`` one object per line (``.json`` may
also be one array of objects); ``.csv``/``.parquet``/saved datasets one row per document.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import fsspec

from lmloop.core.errors import UserError
from lmloop.data.sources import SourceFile

Row = tuple[int, str | None, str | None, str | None]
_BATCH = 10_000


class ReadError(UserError):
    """A file can't be read as its format; the message names the file and, where it applies, the line."""


@dataclass(frozen=True)
class Columns:
    text: str = "text"
    label: str = "label"
    id: str | None = None


def _open(source: SourceFile) -> Any:
    """The file's bytes, decompressed when its name says so (``.gz``, ``.bz2``, ``.xz``, ``.zst``)."""
    return fsspec.open(source.uri, "rb", compression=source.compression)


def _lines(source: SourceFile) -> Iterator[tuple[int, str]]:
    """Lines as UTF-8 text; a byte-order mark (Excel, many Windows tools) is dropped from the first."""
    with _open(source) as f:
        for n, raw in enumerate(f, 1):
            if n == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)
            try:
                yield n, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ReadError(
                    f"{source.uri}:{n}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                    "re-encode the file as UTF-8"
                ) from exc


_TEXTY = ("text", "content", "body", "document", "sentence", "description", "message", "review", "abstract")


def missing_column(uri: str, wanted: str, columns: list[str]) -> str:
    """The text column is not there: which columns are, and the setting that names the right one."""
    close = difflib.get_close_matches(wanted, columns, n=1, cutoff=0.6)
    best = (close or [c for c in columns if c.lower() in _TEXTY] or [None])[0]
    fix = f"did you mean {best!r}? --set data.text_column={best}" if best else "set data.text_column to it"
    return f"{uri}: no column {wanted!r} holds the text (columns: {', '.join(columns) or 'none'}); {fix}"


_LABELLY = ("label", "labels", "category", "class", "target", "topic", "tag", "section", "intent", "sentiment")


def label_column_guess(wanted: str, columns: list[str], taken: tuple[str | None, ...]) -> str | None:
    """The column that most likely holds the labels when ``wanted`` is not there (None: no good guess)."""
    others = [c for c in columns if c not in taken]
    close = difflib.get_close_matches(wanted, others, n=1, cutoff=0.6)
    return (close or [c for c in others if c.lower() in _LABELLY] or [None])[0]


def missing_label_column(uri: str, wanted: str, columns: list[str], *, guess: str | None) -> str:
    fix = f"did you mean {guess!r}? --set data.label_column={guess}" if guess else "set data.label_column to it"
    return f"{uri}: no column {wanted!r} holds the labels (columns: {', '.join(columns) or 'none'}); {fix}"


def columns_of(source: SourceFile) -> list[str] | None:
    """The columns of a file's first record (None for plain text and JSON arrays: nothing to check cheaply)."""
    if source.format == "csv":
        return next(csv.reader(line for _, line in _lines(source)), [])
    if source.format in ("jsonl", "json"):
        for n, line in _lines(source):
            if line.strip():
                if line.lstrip().startswith("["):
                    return None
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ReadError(f"{source.uri}:{n}: malformed JSON line ({exc.msg} at column {exc.colno})") from exc
                return list(record) if isinstance(record, dict) else None
        return None
    if source.format == "parquet":
        import pyarrow.parquet as pq

        with fsspec.open(source.uri, "rb") as f:
            return list(pq.ParquetFile(f).schema_arrow.names)
    if source.format == "hf":
        from datasets import load_from_disk

        return list(load_from_disk(source.uri).column_names)
    return None


def _str(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def _txt(source: SourceFile) -> Iterator[Row]:
    block: list[str] = []
    start = 1
    for n, line in _lines(source):
        if line.strip():
            start = n if not block else start
            block.append(line.rstrip("\r\n"))
        elif block:
            yield start, "\n".join(block), None, None
            block = []
    if block:
        yield start, "\n".join(block), None, None


def _record(source: SourceFile, n: int, record: object, *, cols: Columns) -> Row:
    if not isinstance(record, dict):
        raise ReadError(f"{source.uri}:{n}: expected a JSON object, got {type(record).__name__}")
    text = record.get(cols.text)
    if text is not None and not isinstance(text, str):
        raise ReadError(f"{source.uri}:{n}: field {cols.text!r} is {type(text).__name__}, not a string")
    return n, text, _str(record.get(cols.label)), _str(record.get(cols.id)) if cols.id else None


def _jsonl(source: SourceFile, cols: Columns) -> Iterator[Row]:
    for n, line in _lines(source):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ReadError(f"{source.uri}:{n}: malformed JSON line ({exc.msg} at column {exc.colno})") from exc
        yield _record(source, n, record, cols=cols)


def _json(source: SourceFile, cols: Columns) -> Iterator[Row]:
    with _open(source) as f:
        head = f.read(64).removeprefix(codecs.BOM_UTF8).lstrip()
    if not head.startswith(b"["):
        yield from _jsonl(source, cols)
        return
    text = "".join(line for _, line in _lines(source))
    try:
        records = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReadError(f"{source.uri}:{exc.lineno}: malformed JSON ({exc.msg})") from exc
    for i, record in enumerate(records, 1):
        yield _record(source, i, record, cols=cols)


def _csv(source: SourceFile, cols: Columns) -> Iterator[Row]:
    reader = csv.DictReader(line for _, line in _lines(source))
    fields = reader.fieldnames or []
    if cols.text not in fields:
        raise ReadError(missing_column(source.uri, cols.text, fields))
    for record in reader:
        yield reader.line_num, record.get(cols.text), _str(record.get(cols.label)), _str(record.get(cols.id or ""))


def _batches(source: SourceFile) -> Iterator[dict[str, list]]:
    if source.format == "parquet":
        import pyarrow.parquet as pq

        with fsspec.open(source.uri, "rb") as f:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=_BATCH):
                yield batch.to_pydict()
    else:
        from datasets import load_from_disk

        yield from load_from_disk(source.uri).iter(batch_size=_BATCH)


def _columnar(source: SourceFile, cols: Columns) -> Iterator[Row]:
    n = 0
    for batch in _batches(source):
        if cols.text not in batch:
            raise ReadError(missing_column(source.uri, cols.text, list(batch)))
        labels = batch.get(cols.label) or [None] * len(batch[cols.text])
        ids = batch.get(cols.id or "") or [None] * len(batch[cols.text])
        for text, label, rid in zip(batch[cols.text], labels, ids, strict=True):
            n += 1
            if text is not None and not isinstance(text, str):
                raise ReadError(f"{source.uri}: row {n}: column {cols.text!r} is not text")
            yield n, text, _str(label), _str(rid)


def read_rows(source: SourceFile, cols: Columns) -> Iterator[Row]:
    """Rows of one raw file, each with the line (or row number) it starts on."""
    if source.format == "txt":
        return _txt(source)
    if source.format == "jsonl":
        return _jsonl(source, cols)
    if source.format == "json":
        return _json(source, cols)
    if source.format == "csv":
        return _csv(source, cols)
    return _columnar(source, cols)
