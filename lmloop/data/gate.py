"""The data gate: which documents of the ingested files train (:class:`lmloop.data.values.Corpus`).

Rejected files are copied to quarantine beside a reason file; the raw originals are never touched.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import fsspec
import numpy as np

from data_checks import validate_corpus
from lmloop.core.config import DataConfig, ValidationConfig
from lmloop.core.errors import Rejected
from lmloop.core.files import write_json
from lmloop.data.dedup import History, select_documents
from lmloop.data.file_reports import FileReport, manifest_digest
from lmloop.data.splits import frozen_eval
from lmloop.data.values import Corpus, GateSummary


class DataValidationError(Rejected):
    """The data gate rejected the input; ``report`` holds every rejected file and failed expectation.
    ``str()`` is one line (what Prefect logs for the failed task and flow) that names the written list
    (``listing``, also the run's MLflow artifact ``data/validation.md``); ``details`` lists the files,
    printed once by the CLI."""

    def __init__(self, report: dict[str, Any], message: str, listing: Path | None = None) -> None:
        where = f" (the list: {listing}; in MLflow: data/validation.md)" if listing else ""
        super().__init__(message.splitlines()[0].rstrip(":") + where)
        self.report = report
        self.details = message
        self.listing = listing


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


def one_line(text: str) -> str:
    """A file name or reason as one printable line: a newline in a name cannot forge a line of the report."""
    return text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text


def table_cell(text: str) -> str:
    """Text safe inside a Markdown table cell: no line breaks, no column separators, no code-span breaks."""
    return one_line(text).replace("|", "\\|").replace("`", "'")


def _message(rejected: list[FileReport], total: int, ceiling: float) -> str:
    lines = [f"{len(rejected)} of {total} file(s) rejected (ceiling {ceiling:.0%} of files):"]
    for report in rejected:
        lines.append(f"  - {one_line(report.uri)}: " + "; ".join(one_line(r) for r in report.reasons[:3]))
    return "\n".join(lines)


def gate(
    reports: list[FileReport],
    *,
    data: DataConfig,
    validation: ValidationConfig,
    out: Path,
    quarantine_dir: Path,
    trained: History | None = None,
) -> Corpus:
    """Decide what trains: drop rejected files (quarantined), duplicates, documents in ``trained`` (ids
    already trained on) and frozen-eval leakage. Writes ``manifest.json``, ``validation.{json,md}`` and
    the corpus index to ``out``; raises :class:`DataValidationError` when the data is rejected."""
    accepted = [r for r in reports if r.status == "accepted"]
    shard_paths = [r.shard for r in accepted]  # the kept indices point into exactly these, in this order
    keep, counts = select_documents(accepted, frozen_eval(data.frozen_eval, data), data, trained=trained)
    rejected = [r for r in reports if r.status == "rejected"]
    skipped = [r for r in reports if r.status == "skipped"]
    for report in rejected:
        quarantine(report, quarantine_dir)
    corpus_check = validate_corpus(len(keep), validation)
    read = len(reports) - len(skipped)
    share = len(rejected) / max(1, read)
    success = share <= validation.max_failed_file_share and corpus_check.success and len(keep) > 0
    summary = {
        "success": success,
        "rows": int(len(keep)),
        "files": read,
        "files_rejected": len(rejected),
        "files_skipped": len(skipped),
        "failed_expectations": sorted({f["expectation"] for r in rejected for f in r.failures})
        + corpus_check.to_dict()["failed_expectations"],
        "rejected_files": [{"file": r.uri, "reasons": r.reasons} for r in rejected],
        "skipped_files": [{"file": r.uri, "reason": r.reasons[0]} for r in skipped],
        "corpus_failures": corpus_check.to_dict()["failures"],
        "manifest_digest": manifest_digest(reports),
        "near_dup_ngram": data.near_dup_ngram if data.near_dup_threshold else None,
        **counts,
    }
    corpus = Corpus(root=str(out), validation=GateSummary(**summary))
    _write(corpus, reports, shard_paths, keep)
    if not success:
        message = _message(rejected, read, validation.max_failed_file_share) if rejected else ""
        details = "\n".join(filter(None, [message, corpus_check.summary()]))
        raise DataValidationError(summary, details, corpus.path / "validation.md")
    return corpus


def _write(corpus: Corpus, reports: list[FileReport], shards: list[str], keep: np.ndarray) -> None:
    summary = corpus.validation.model_dump() if corpus.validation else {}
    write_json(
        corpus.path / "manifest.json", {"digest": summary["manifest_digest"], "files": [asdict(r) for r in reports]}
    )
    write_json(corpus.path / "validation.json", summary)
    (corpus.path / "validation.md").write_text(validation_markdown(summary, reports))
    corpus.write_index(shards, keep)


def validation_markdown(summary: dict[str, Any], reports: list[FileReport]) -> str:
    verdict = "passed" if summary["success"] else "FAILED"
    lines = [
        f"# Data validation: {verdict}",
        "",
        f"Documents accepted: {summary['rows']}; files: {summary['files']}, rejected: {summary['files_rejected']}, "
        f"skipped (not data files): {summary.get('files_skipped', 0)}; "
        f"duplicates removed: {summary['duplicates_removed']} (of which already trained on: "
        f"{summary['already_trained_removed']}); near-duplicates removed: {summary.get('near_duplicates_removed', 0)}; "
        f"eval-set leakage removed: {summary['leakage_removed']} (of which near-copies: "
        f"{summary.get('near_leakage_removed', 0)}).",
        "",
        "| file | status | read | accepted | rejected | near-duplicates | reason |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in reports:
        reason = table_cell("; ".join(r.reasons[:2]))
        lines.append(
            f"| `{table_cell(r.uri)}` | {r.status} | {r.rows_read} | {r.rows_accepted} | {r.rows_rejected} "
            f"| {r.near_duplicates} | {reason} |"
        )
    for failure in summary["corpus_failures"]:
        lines.append(f"\nCorpus check **{failure['expectation']}** failed: observed `{failure['observed']}`.")
    return "\n".join(lines) + "\n"
