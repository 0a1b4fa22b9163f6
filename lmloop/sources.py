"""Find the raw files behind a list of sources, and refuse any that lie outside the data roots.

A source is a local file, folder or glob; a folder written by ``Dataset.save_to_disk``; or any
fsspec URL (``file://``, ``memory://``, and ``s3://``/``gs://`` when their drivers are installed).
Local sources are confined to their data roots (``data.roots``, or by default the folder each
source names): a symlink that resolves outside every root is rejected, never followed.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import fsspec

FORMATS = {".txt": "txt", ".jsonl": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
HF_MARKERS = ("dataset_info.json", "state.json")


class SourceError(ValueError):
    """A source names nothing readable; the message names it."""


@dataclass(frozen=True)
class SourceFile:
    """One raw input: ``uri`` is a local path or an fsspec URL; ``format`` is how to read it."""

    uri: str
    format: str

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]

    @property
    def is_local(self) -> bool:
        return "://" not in self.uri


@dataclass(frozen=True)
class Rejected:
    uri: str
    reason: str


def _hidden(parts: tuple[str, ...]) -> bool:
    return any(p.startswith((".", "_")) for p in parts)


def _is_hf_dir(path: Path) -> bool:
    return all((path / marker).is_file() for marker in HF_MARKERS)


def _inside(path: Path, roots: list[Path]) -> bool:
    real = Path(os.path.realpath(path))
    return any(real == root or real.is_relative_to(root) for root in roots)


def _default_root(source: str) -> Path:
    """The folder a source names: itself, or the parent of a file or of a glob's first wildcard."""
    path = Path(source).expanduser()
    while glob.has_magic(str(path)):
        path = path.parent
    return path if path.is_dir() else path.parent


def _walk(folder: Path) -> Iterator[Path]:
    """Files under ``folder`` (hidden and ``_`` entries skipped); a saved dataset is one entry, not descended."""
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not _hidden((d,)))
        for d in [d for d in dirnames if _is_hf_dir(here / d)]:
            dirnames.remove(d)
            yield here / d
        yield from (here / f for f in sorted(filenames) if not _hidden((f,)))


def _local(source: str, roots: list[Path]) -> tuple[list[SourceFile], list[Rejected]]:
    matches = [Path(p) for p in glob.glob(str(Path(source).expanduser()), recursive=True)]
    if not matches:
        raise SourceError(f"{source}: no such file, folder or glob match")
    candidates: list[Path] = []
    for match in matches:
        if match.is_dir() and not _is_hf_dir(match):
            candidates.extend(_walk(match))
        elif not _hidden((match.name,)):
            candidates.append(match)
    files, rejected = [], []
    for path in candidates:
        if not _inside(path, roots):
            target = os.path.realpath(path)
            rejected.append(Rejected(str(path), f"resolves to {target}, outside the data roots; not read"))
        elif path.is_dir():
            files.append(SourceFile(str(path.resolve()), "hf"))
        elif path.suffix.lower() in FORMATS:
            files.append(SourceFile(str(path.absolute()), FORMATS[path.suffix.lower()]))
    return files, rejected


def _remote(source: str) -> list[SourceFile]:
    fs, path = fsspec.core.url_to_fs(source)
    if glob.has_magic(path):
        paths = fs.glob(path)
    elif fs.isdir(path):
        paths = fs.find(path)
    elif fs.exists(path):
        paths = [path]
    else:
        raise SourceError(f"{source}: nothing at this URL")
    return [
        SourceFile(fs.unstrip_protocol(p), FORMATS[ext])
        for p in sorted(paths)
        if (ext := os.path.splitext(p)[1].lower()) in FORMATS and not _hidden(tuple(p.split("/")))
    ]


def discover(sources: list[str], roots: list[str] | None = None) -> tuple[list[SourceFile], list[Rejected]]:
    """Every readable raw file behind ``sources`` plus the ones refused for path safety."""
    files: list[SourceFile] = []
    rejected: list[Rejected] = []
    for source in sources:
        if "://" in source and not source.startswith("file://"):
            files.extend(_remote(source))
            continue
        local = source.removeprefix("file://")
        allowed = [Path(os.path.realpath(Path(r).expanduser())) for r in roots or [str(_default_root(local))]]
        found, refused = _local(local, allowed)
        files.extend(found)
        rejected.extend(refused)
    unique = list(dict.fromkeys(files))
    if not unique and not rejected:
        raise SourceError(f"{', '.join(sources)}: no {', '.join(FORMATS)} files or saved datasets found")
    return unique, rejected
