"""The data room's report: what ingestion read, what the gate kept and why (its report, the GX Data Docs and
a page for a person linking to them), the splits as MLflow dataset inputs, and a team's own test set."""

from __future__ import annotations

from pathlib import Path

from lmloop.core.report import Reporter
from lmloop.data.values import Corpus, Ingested

GATE_COUNTS = (
    "rows",
    "files_rejected",
    "duplicates_removed",
    "already_trained_removed",
    "leakage_removed",
    "near_duplicates_removed",
    "near_leakage_removed",
)


def report_ingest(report: Reporter, ingested: Ingested) -> None:
    report.metrics({f"ingest_{k}": v for k, v in ingested.counts().items()})


def report_gate(report: Reporter, folder: Path, docs: Path) -> None:
    """The gate's report and manifest, GX's Data Docs (one page per validation run), and the report as a
    page of the flow run, linking to the Data Docs in the MLflow UI. Written whether the gate passed or not."""
    for name in ("validation.md", "validation.json", "manifest.json"):
        if (folder / name).exists():
            report.artifact(folder / name, "data")
    if docs.exists():
        report.artifact(docs, "data")  # a folder keeps its name: data/data_docs/
    if (folder / "validation.md").exists():
        text = (folder / "validation.md").read_text()
        if docs.exists():
            link = f"{report.run_url()}/artifacts/data/data_docs/index.html"
            text += f"\n\nGreat Expectations Data Docs of this run: [{link}]({link})\n"
        report.markdown(text, "data-validation", "lmloop data gate")


def report_kept(report: Reporter, corpus: Corpus) -> None:
    """What the gate kept and removed, as ``data_<count>`` figures."""
    report.metrics({f"data_{k}": getattr(corpus.validation, k) for k in GATE_COUNTS} if corpus.validation else {})


def report_splits(
    report: Reporter, corpus: Corpus, sources: list[str], *, tokens: dict[str, int] | None = None
) -> None:
    """Each split as an MLflow dataset input: schema, and a profile of rows, tokens (once known), sources."""
    for name, digest in corpus.digests.items():
        profile = {
            "rows": corpus.sizes[name],
            "files": corpus.validation.files if corpus.validation else None,
            "sources": sources[:20],
        }
        if tokens and f"{name}_text_tokens" in tokens:
            profile = {"rows": profile["rows"], "tokens": tokens[f"{name}_text_tokens"], **profile}
        report.dataset(name, digest, sources[0], context=name, profile=profile)


def report_test_set(report: Reporter, corpus: Corpus, sources: list[str]) -> None:
    """A team's own test file(s), as the ``team-test`` dataset input."""
    rows = corpus.validation.rows if corpus.validation else 0
    report.metrics({"team_test_documents": rows})
    profile = {"rows": rows, "sources": sources[:20]}
    report.dataset("team-test", corpus.manifest_digest, sources[0], context="test", profile=profile)
