"""The data gate and the corpus it lets through.

A corpus on disk is a list of Arrow shards plus index arrays (kept documents, then one per split):
it is memory-mapped and filtered by index, never copied. Rejected files are copied to quarantine
beside a reason file; the raw originals are never touched.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
from datasets import Dataset

from data_checks import validate_corpus
from lmloop.config import DataConfig, ValidationConfig
from lmloop.data import (
    FileReport,
    frozen_eval_ids,
    id_array,
    load_shards,
    manifest_digest,
    record_trained,
    select_documents,
    split_indices,
    trained_ids,
)
from lmloop.settings import state_dir


class DataValidationError(RuntimeError):
    """The data gate rejected the input; ``report`` holds every rejected file and failed expectation."""

    def __init__(self, report: dict[str, Any], message: str) -> None:
        super().__init__(message)
        self.report = report


def quarantine(report: FileReport, folder: Path) -> Path:
    """Copy a rejected file into ``folder`` with ``<name>.reason.json``; files outside the roots are not read."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{report.sha256[:12] or 'unread'}-{report.uri.rstrip('/').rsplit('/', 1)[-1]}"
    outside = any("outside the data roots" in r for r in report.reasons)
    if not outside and report.format != "hf":
        with fsspec.open(report.uri, "rb") as src, (folder / name).open("wb") as dst:
            shutil.copyfileobj(src, dst)
    reason = {"file": report.uri, "sha256": report.sha256, "reasons": report.reasons, "failures": report.failures}
    (folder / f"{name}.reason.json").write_text(json.dumps(reason, indent=2, default=str) + "\n")
    return folder / name


def _message(rejected: list[FileReport], total: int, ceiling: float) -> str:
    lines = [f"{len(rejected)} of {total} file(s) rejected (ceiling {ceiling:.0%} of files):"]
    for report in rejected:
        lines.append(f"  - {report.uri}: " + "; ".join(report.reasons[:3]))
    return "\n".join(lines)


def gate(
    reports: list[FileReport], data: DataConfig, validation: ValidationConfig, out: Path, quarantine_dir: Path
) -> dict[str, Any]:
    """Decide what trains. Writes ``manifest.json``, ``validation.{json,md}`` and the corpus indices to ``out``."""
    accepted = [r for r in reports if r.status == "accepted"]
    shard_paths = [r.shard for r in accepted]  # the kept indices point into exactly these, in this order
    trained = trained_ids(trained_store()) if data.dedup_against_trained else None
    keep, counts = select_documents(accepted, frozen_eval_ids(data.frozen_eval, data), trained)
    rejected = [r for r in reports if r.status == "rejected"]
    for report in rejected:
        quarantine(report, quarantine_dir)
    corpus_check = validate_corpus(len(keep), validation)
    share = len(rejected) / max(1, len(reports))
    success = share <= validation.max_failed_file_share and corpus_check.success and len(keep) > 0
    summary = {
        "success": success,
        "rows": int(len(keep)),
        "files": len(reports),
        "files_rejected": len(rejected),
        "failed_expectations": sorted({f["expectation"] for r in rejected for f in r.failures})
        + corpus_check.to_dict()["failed_expectations"],
        "rejected_files": [{"file": r.uri, "reasons": r.reasons} for r in rejected],
        "corpus_failures": corpus_check.to_dict()["failures"],
        "manifest_digest": manifest_digest(reports),
        **counts,
    }
    _write(out, reports, shard_paths, keep, summary)
    if not success:
        message = _message(rejected, len(reports), validation.max_failed_file_share) if rejected else ""
        raise DataValidationError(summary, "\n".join(filter(None, [message, corpus_check.summary()])))
    return summary


def _write(out: Path, reports: list[FileReport], shards: list[str], keep: np.ndarray, summary: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"digest": summary["manifest_digest"], "files": [asdict(r) for r in reports]}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    (out / "validation.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (out / "validation.md").write_text(validation_markdown(summary, reports))
    (out / "corpus.json").write_text(json.dumps({"shards": shards}, indent=2) + "\n")
    np.save(out / "keep.npy", keep)


def validation_markdown(summary: dict[str, Any], reports: list[FileReport]) -> str:
    verdict = "passed" if summary["success"] else "FAILED"
    lines = [
        f"# Data validation: {verdict}",
        "",
        f"Documents accepted: {summary['rows']}; files: {summary['files']}, rejected: {summary['files_rejected']}; "
        f"duplicates removed: {summary['duplicates_removed']} (of which already trained on: "
        f"{summary['already_trained_removed']}); eval-set leakage removed: {summary['leakage_removed']}.",
        "",
        "| file | status | read | accepted | rejected | reason |",
        "|---|---|---:|---:|---:|---|",
    ]
    for r in reports:
        reason = "; ".join(r.reasons[:2]).replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{r.uri}` | {r.status} | {r.rows_read} | {r.rows_accepted} | {r.rows_rejected} | {reason} |")
    for failure in summary["corpus_failures"]:
        lines.append(f"\nCorpus check **{failure['expectation']}** failed: observed `{failure['observed']}`.")
    return "\n".join(lines) + "\n"


def trained_store() -> Path:
    return state_dir() / "trained_doc_ids.npy"


def record_training_data(data_dir: Path | str, slice_name: str) -> int:
    """Once a model is registered: its training documents count as trained on, its corpus becomes a
    replay source, and its test split a frozen eval slice for every later continual cycle."""
    from lmloop.continual import freeze_slice, remember_corpus

    remember_corpus(data_dir)
    freeze_slice(data_dir, slice_name)
    ids = id_array(load_split(data_dir, "train")["doc_id"])
    return record_trained(trained_store(), ids)


def load_corpus(data_dir: Path | str) -> Dataset:
    data_dir = Path(data_dir)
    shards = json.loads((data_dir / "corpus.json").read_text())["shards"]
    return load_shards(shards).select(np.load(data_dir / "keep.npy"))


def save_splits(data_dir: Path | str, data: DataConfig) -> dict[str, dict[str, Any]]:
    """Write the hash-split indices; returns each split's size and a digest of its documents (for lineage)."""
    data_dir = Path(data_dir)
    ids = id_array(load_corpus(data_dir)["doc_id"])
    splits = split_indices(ids, data.val_fraction, data.test_fraction)
    for name, idx in splits.items():
        np.save(data_dir / f"split-{name}.npy", idx)
    return {
        "sizes": {name: int(len(idx)) for name, idx in splits.items()},
        "digests": {name: hashlib.sha256(ids[idx].tobytes()).hexdigest()[:16] for name, idx in splits.items()},
    }


def split_index(data_dir: Path | str, name: str) -> np.ndarray:
    return np.load(Path(data_dir) / f"split-{name}.npy")


def load_split(data_dir: Path | str, name: str) -> Dataset:
    return load_corpus(data_dir).select(split_index(data_dir, name))
