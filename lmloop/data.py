"""Ingestion: raw files -> rows (text, label, source, line, doc_id), a manifest, and hash splits.

Document boundaries: a ``.txt`` file holds one document per paragraph (blocks separated by a
blank line); ``.jsonl`` one per line; ``.csv``/``.parquet`` one per row. Raw files are only read.
Files and folders whose names start with ``.`` or ``_`` are skipped (``_meta/`` of sample data).
"""

from __future__ import annotations

import glob
import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
from datasets import Dataset, DatasetDict, Features, Value

SUFFIXES = {".txt": "txt", ".jsonl": "jsonl", ".csv": "csv", ".parquet": "parquet"}
FEATURES = Features(
    {
        "text": Value("string"),
        "label": Value("string"),
        "source": Value("string"),
        "line": Value("int64"),
        "doc_id": Value("string"),
    }
)
_CHUNK = 1 << 20


class IngestError(ValueError):
    """A source can't be read; the message names the file and, where it applies, the line."""


@dataclass(frozen=True)
class FileEntry:
    """One raw file as the manifest records it."""

    path: str
    sha256: str
    size: int
    format: str
    rows: int


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def doc_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _visible(path: Path) -> bool:
    return not any(part.startswith((".", "_")) for part in path.parts[-1:])


def discover_files(sources: list[str]) -> list[Path]:
    """Expand files, folders (recursively) and globs into a sorted list of supported files."""
    found: set[Path] = set()
    for source in sources:
        matches = [Path(p) for p in glob.glob(str(Path(source).expanduser()), recursive=True)]
        if not matches:
            raise IngestError(f"{source}: no such file, folder or glob match")
        for match in matches:
            if match.is_dir():
                for p in match.rglob("*"):
                    rel = p.relative_to(match).parts
                    if p.is_file() and not any(s.startswith((".", "_")) for s in rel):
                        found.add(p)
            elif _visible(match):
                found.add(match)
    files = sorted(p.resolve() for p in found if p.suffix.lower() in SUFFIXES)
    if not files:
        raise IngestError(f"{', '.join(sources)}: no .txt, .jsonl, .csv or .parquet files found")
    return files


def _read_txt(path: Path) -> Iterator[tuple[int, str | None, str | None]]:
    block: list[str] = []
    start = 1
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                if not block:
                    start = n
                block.append(line.rstrip("\n"))
            elif block:
                yield start, "\n".join(block), None
                block = []
    if block:
        yield start, "\n".join(block), None


def _read_jsonl(path: Path, text_col: str, label_col: str) -> Iterator[tuple[int, str | None, str | None]]:
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise IngestError(f"{path}:{n}: malformed JSON line ({exc.msg})") from exc
            if not isinstance(record, dict):
                raise IngestError(f"{path}:{n}: expected a JSON object per line")
            label = record.get(label_col)
            yield n, record.get(text_col), None if label is None else str(label)


def _read_table(path: Path, fmt: str, text_col: str, label_col: str) -> Iterator[tuple[int, str | None, str | None]]:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False) if fmt == "csv" else pd.read_parquet(path)
    if text_col not in frame.columns:
        raise IngestError(f"{path}: no column {text_col!r} (columns: {', '.join(map(str, frame.columns))})")
    labels = frame[label_col] if label_col in frame.columns else [None] * len(frame)
    first_row = 2 if fmt == "csv" else 1  # csv: line 1 is the header
    for i, (text, label) in enumerate(zip(frame[text_col], labels, strict=True)):
        text = None if pd.isna(text) else str(text)
        label = None if label is None or pd.isna(label) or label == "" else str(label)
        yield i + first_row, text, label


def read_rows(path: Path, text_col: str = "text", label_col: str = "label") -> Iterator[dict]:
    """Rows of one raw file, with the line (or row) each starts on."""
    fmt = SUFFIXES[path.suffix.lower()]
    if fmt == "txt":
        rows = _read_txt(path)
    elif fmt == "jsonl":
        rows = _read_jsonl(path, text_col, label_col)
    else:
        rows = _read_table(path, fmt, text_col, label_col)
    try:
        for line, text, label in rows:
            yield {
                "text": text,
                "label": label,
                "source": str(path),
                "line": line,
                "doc_id": doc_hash(text)[:16] if isinstance(text, str) else "",
            }
    except UnicodeDecodeError as exc:
        raise IngestError(f"{path}: not valid UTF-8 at byte {exc.start} ({exc.reason})") from exc


def _generate(files: list[str], hashes: list[str], text_col: str, label_col: str) -> Iterator[dict]:
    """Module-level so ``datasets`` can fingerprint it; ``hashes`` make the cache content-addressed."""
    del hashes
    for path in files:
        yield from read_rows(Path(path), text_col, label_col)


def ingest(sources: list[str], text_col: str = "text", label_col: str = "label") -> tuple[Dataset, list[FileEntry]]:
    """Read every source into one Dataset (streamed into Arrow, never all in memory) and a manifest."""
    files = discover_files(sources)
    hashes = [sha256_file(p) for p in files]
    kwargs = {
        "files": [str(p) for p in files],
        "hashes": hashes,
        "text_col": text_col,
        "label_col": label_col,
    }
    try:
        dataset = Dataset.from_generator(_generate, features=FEATURES, gen_kwargs=kwargs)
    except Exception as exc:  # datasets wraps generator errors; surface ours unchanged
        cause = exc
        while cause is not None and not isinstance(cause, IngestError):
            cause = cause.__cause__ or cause.__context__
        raise (cause or exc) from None
    rows = Counter(dataset["source"])
    entries = [
        FileEntry(str(p), sha, p.stat().st_size, SUFFIXES[p.suffix.lower()], rows.get(str(p), 0))
        for p, sha in zip(files, hashes, strict=True)
    ]
    return dataset, entries


def manifest_digest(entries: list[FileEntry]) -> str:
    """Digest of the raw data: the sorted content hashes, so moving the folder keeps it stable."""
    return hashlib.sha256("\n".join(sorted(e.sha256 for e in entries)).encode()).hexdigest()[:16]


def write_manifest(entries: list[FileEntry], path: Path) -> str:
    digest = manifest_digest(entries)
    payload = {"digest": digest, "files": [asdict(e) for e in entries]}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return digest


def split_of(doc_id: str, val_fraction: float, test_fraction: float) -> str:
    """Deterministic split from the document's content hash: adding data never moves a document."""
    bucket = int(doc_id[:8], 16) / 0x1_0000_0000
    if bucket < test_fraction:
        return "test"
    if bucket < test_fraction + val_fraction:
        return "validation"
    return "train"


def split_by_hash(dataset: Dataset, val_fraction: float, test_fraction: float) -> DatasetDict:
    names = [split_of(d, val_fraction, test_fraction) for d in dataset["doc_id"]]
    return DatasetDict(
        {
            name: dataset.select([i for i, n in enumerate(names) if n == name])
            for name in ("train", "validation", "test")
        }
    )
