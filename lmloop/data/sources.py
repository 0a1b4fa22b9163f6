"""Find the raw files behind a list of sources, and refuse any that lie outside the data roots.

A source is a local file, folder or glob; a folder written by ``Dataset.save_to_disk``; or any
fsspec URL (``file://``, ``memory://``, and ``s3://``/``gs://`` when their drivers are installed).
Local sources are confined to their data roots (``data.roots``, or by default the folder each
source names): a symlink that resolves outside every root is rejected, never followed.
"""

from __future__ import annotations

import glob
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import fsspec

from lmloop.core.errors import UserError

FORMATS = {".txt": "txt", ".jsonl": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
HF_MARKERS = ("dataset_info.json", "state.json")


def _compressions() -> dict[str, str]:
    """Compressed text formats read transparently (fsspec); ``.zst`` when ``zstandard`` is installed."""
    found = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz"}
    try:
        import zstandard  # noqa: F401

        found[".zst"] = "zstd"
    except ImportError:
        pass
    return found


COMPRESSIONS = _compressions()


def format_of(name: str) -> tuple[str, str | None] | None:
    """``(format, compression)`` from a file name (``notes.jsonl.gz`` -> ``("jsonl", "gzip")``), or None."""
    stem, ext = os.path.splitext(name.lower())
    compression = COMPRESSIONS.get(ext)
    if compression:
        stem, ext = os.path.splitext(stem)
        if FORMATS.get(ext) == "parquet":  # parquet compresses inside the file
            return None
    return (FORMATS[ext], compression) if ext in FORMATS else None


def readable_kinds() -> str:
    return ", ".join([*FORMATS, *(f"{f}{c}" for f in (".txt", ".jsonl", ".json", ".csv") for c in COMPRESSIONS)])


class SourceError(UserError):
    """A source names nothing readable; the message names it."""


@dataclass(frozen=True)
class SourceFile:
    """One raw input: ``uri`` is a local path or an fsspec URL; ``format`` is how to read it."""

    uri: str
    format: str
    compression: str | None = None

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]

    @property
    def is_local(self) -> bool:
        return "://" not in self.uri


@dataclass(frozen=True)
class Rejected:
    """A path that is not read: refused for path safety, or ``skipped`` (not a data file: hidden, an
    unsupported extension, a symlinked folder). Both are listed in the manifest with the reason."""

    uri: str
    reason: str
    skipped: bool = False


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


def _walk(folder: Path) -> Iterator[Path | Rejected]:
    """Files under ``folder``; a saved dataset is one entry, not descended. Hidden and ``_`` entries and
    symlinked folders are not descended into: they come back as skipped, with the reason."""
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        for d in sorted(dirnames):
            if _hidden((d,)):
                yield Rejected(str(here / d), "hidden folder (name starts with '.' or '_'): skipped", skipped=True)
            elif (here / d).is_symlink():
                yield Rejected(str(here / d), "symlinked folder: not followed, skipped", skipped=True)
        dirnames[:] = sorted(d for d in dirnames if not _hidden((d,)) and not (here / d).is_symlink())
        for d in [d for d in dirnames if _is_hf_dir(here / d)]:
            dirnames.remove(d)
            yield here / d
        for f in sorted(filenames):
            if _hidden((f,)):
                yield Rejected(str(here / f), "hidden file (name starts with '.' or '_'): skipped", skipped=True)
            else:
                yield here / f


def _unreadable(path: Path) -> str | None:
    """Why ``path`` is not read, or None: only regular files (and folders) are. A FIFO would block the read
    forever (and, on a schedule with concurrency 1, every later cycle); a socket or device is no data; a
    symlink loop cannot be opened; a file that vanished since it was listed is simply gone."""
    try:
        mode = os.stat(path).st_mode  # follows symlinks: their target is what would be read
    except FileNotFoundError:
        return "vanished between listing and reading: skipped"
    except OSError as exc:  # ELOOP (a symlink loop), EACCES, ...
        return f"cannot be opened ({exc.strerror}): skipped"
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
    return f"{kind}, not a regular file: not read, skipped"


def _local(source: str, roots: list[Path]) -> tuple[list[SourceFile], list[Rejected]]:
    matches = [Path(p) for p in glob.glob(str(Path(source).expanduser()), recursive=True)]
    if not matches:
        raise SourceError(f"{source}: no such file, folder or glob match")
    candidates: list[Path] = []
    files: list[SourceFile] = []
    rejected: list[Rejected] = []
    for match in matches:
        if match.is_dir() and not _is_hf_dir(match):
            for entry in _walk(match):
                (rejected if isinstance(entry, Rejected) else candidates).append(entry)
        elif not _hidden((match.name,)):
            candidates.append(match)
    for path in candidates:
        kind = format_of(path.name)
        if why := _unreadable(path):
            rejected.append(Rejected(str(path), why, skipped=True))
        elif not _inside(path, roots):
            target = os.path.realpath(path)
            rejected.append(Rejected(str(path), f"resolves to {target}, outside the data roots; not read"))
        elif path.is_dir():
            files.append(SourceFile(str(path.resolve()), "hf"))
        elif kind:
            files.append(SourceFile(str(path.absolute()), *kind))
        else:
            reason = f"unsupported file type {''.join(path.suffixes) or '(no extension)'}: skipped"
            rejected.append(Rejected(str(path), reason, skipped=True))
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
        SourceFile(fs.unstrip_protocol(p), *kind)
        for p in sorted(paths)
        if (kind := format_of(p.rsplit("/", 1)[-1])) and not _hidden(tuple(p.split("/")))
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
    if not unique and not any(not r.skipped for r in rejected):
        found = sorted({"".join(Path(r.uri).suffixes) or "(no extension)" for r in rejected if r.skipped})
        seen = f" (found only: {', '.join(found)})" if found else ""
        raise SourceError(
            f"{', '.join(sources)}: no data files{seen}; lmloop reads {readable_kinds()} and saved datasets"
        )
    return unique, rejected
