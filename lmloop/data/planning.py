"""Planning ingestion: which raw files are cached already (by content and settings), and the units of work
(one large file, or a group of small ones) that go to the data stage's workers; stale temporary shards swept."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lmloop.core.config import DataConfig, ValidationConfig
from lmloop.core.progress import progress
from lmloop.core.stopping import StopRequest
from lmloop.data.file_reports import FileReport
from lmloop.data.ingest import SMALL_FILE, SMALL_GROUP, _Pending, process_file, process_small_files
from lmloop.data.sources import SourceFile, discover


@dataclass(frozen=True)
class Unit:
    """One worker's share of the ingest: one large file, or up to ``SMALL_GROUP`` small ones checked
    together; ``digests`` are the files' (sha256, size), already computed by the planner."""

    files: list[SourceFile]
    digests: list[tuple[str, int]]
    small: bool

    @property
    def size(self) -> int:
        return sum(size for _, size in self.digests)


def process_unit(unit: Unit, data: DataConfig, validation: ValidationConfig, *, cache: Path) -> list[FileReport]:
    """The per-file work of one unit (what a worker runs): a report per file, shards written."""
    if unit.small:
        return process_small_files(unit.files, data, validation, cache, unit.digests)
    return [
        process_file(f, data, validation, cache=cache, digest=d) for f, d in zip(unit.files, unit.digests, strict=True)
    ]


@dataclass
class Plan:
    """What an ingest has to do: reports already known (refused paths, files cached by content hash) and
    units of work for the rest. ``reports`` keeps the final order; a unit fills its ``slots``."""

    reports: list[FileReport | None]
    units: list[Unit] = field(default_factory=list)
    slots: list[list[int]] = field(default_factory=list)

    @property
    def pending_bytes(self) -> int:
        return sum(u.size for u in self.units)

    def fill(self, unit: int, reports: list[FileReport]) -> None:
        for slot, report in zip(self.slots[unit], reports, strict=True):
            self.reports[slot] = report

    def result(self) -> list[FileReport]:
        missing = [i for i, r in enumerate(self.reports) if r is None]
        if missing:
            raise RuntimeError(f"ingest: {len(missing)} file(s) have no report (their unit never finished)")
        return list(self.reports)  # type: ignore[arg-type]


def sweep_stale(cache: Path, older_than_s: float = 3600.0) -> None:
    """Remove private temporary files a killed writer left behind (untouched for an hour; nothing reads
    them: only renamed, finished files are ever used)."""
    cutoff = time.time() - older_than_s
    for path in cache.glob("*.partial") if cache.exists() else []:
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime < cutoff:
                path.unlink()


def plan_ingest(sources: list[str], data: DataConfig, validation: ValidationConfig, *, cache: Path) -> Plan:
    """Discover the files and hash them (here, once); files whose result is cached are done, the rest are
    grouped into units: consecutive small local text files together, any other alone."""
    apply_storage_options(data)
    sweep_stale(cache)
    files, refused = discover(sources, data.roots)
    plan = Plan(
        [FileReport(uri=r.uri, status="skipped" if r.skipped else "rejected", reasons=[r.reason]) for r in refused]
    )
    todo: list[tuple[int, SourceFile, tuple[str, int]]] = []
    for source in files:
        pending = _Pending(source, data, validation, cache)
        plan.reports.append(pending.from_cache())
        if plan.reports[-1] is None:
            todo.append((len(plan.reports) - 1, source, (pending.report.sha256, pending.report.size)))
    for group, small in _groups([source for _, source, _ in todo]):
        chosen, todo = todo[: len(group)], todo[len(group) :]
        plan.units.append(Unit([s for _, s, _ in chosen], [d for _, _, d in chosen], small))
        plan.slots.append([slot for slot, _, _ in chosen])
    return plan


def _groups(files: list[SourceFile]) -> Iterator[tuple[list[SourceFile], bool]]:
    """``(files, small)``: consecutive small local text files together (up to ``SMALL_GROUP``), any other alone."""
    group: list[SourceFile] = []
    for source in files:
        small = source.is_local and source.format != "hf" and Path(source.uri).stat().st_size <= SMALL_FILE
        if small:
            group.append(source)
            if len(group) < SMALL_GROUP:
                continue
        if group:
            yield group, True
            group = []
        if not small:
            yield [source], False
    if group:
        yield group, True


def apply_storage_options(data: DataConfig) -> None:
    """Hand ``data.storage_options`` (credentials) to fsspec as per-protocol defaults, in this process only."""
    import fsspec.config

    for protocol, options in data.storage_options.items():
        fsspec.config.conf.setdefault(protocol, {}).update({k: v.get_secret_value() for k, v in options.items()})


def ingest_files(
    sources: list[str], data: DataConfig, validation: ValidationConfig, *, cache: Path
) -> list[FileReport]:
    """A report per raw file, in this process, one unit after another (the Prefect task ``ingest_data`` maps
    the same units over workers); files refused for path safety are reported as rejected, unread, and paths
    that are not data files (hidden, unsupported, symlinked folders) as skipped, with the reason."""
    plan = plan_ingest(sources, data, validation, cache=cache)
    with StopRequest() as stop, progress("ingest", len(plan.units), "units") as advance:
        for i, unit in enumerate(plan.units):
            stop.check("between files while ingesting: files done so far are cached, a rerun goes on")
            plan.fill(i, process_unit(unit, data, validation, cache=cache))
            advance(1)
    return plan.result()
