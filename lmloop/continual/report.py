"""The continual room's report: the training mixture of a cycle (new and replayed documents) as a dataset
input of its run, with its manifest and counts; the retraining policy's drift figures and verdict."""

from __future__ import annotations

from pathlib import Path

from lmloop.continual.assess import Assessment
from lmloop.core.report import Reporter
from lmloop.data.values import Corpus
from lmloop.training.values import Blocks


def report_mix(report: Reporter, mix: Blocks, corpus: Corpus) -> None:
    manifest = mix.counts["manifest"]
    mixture = {k: mix.counts[k] for k in ("new_documents", "replay_documents")}
    profile = {"rows": sum(mixture.values()), **mixture, "corpus": corpus.root}
    report.dataset("train-mix", mix.counts["manifest_sha256"], manifest, context="train-mix", profile=profile)
    report.artifact(Path(manifest), "data")
    report.metrics(mixture)


def assessment_markdown(assessment: Assessment, *, batch: str) -> str:
    c = assessment.content
    verdict = "**retrain**" if assessment.retrain else "**deferred**"
    lines = [
        f"## Retraining policy: {batch}",
        "",
        f"Decision: {verdict} — {'; '.join(assessment.reasons)}",
        "",
        "| measure | value | threshold | drift |",
        "|---|---:|---:|---|",
        f"| content drift (domain classifier ROC AUC) | {c.auc:.3f} | {c.threshold:.3f} | {'yes' if c.detected else 'no'} |",
    ]
    if assessment.batch_bits_per_byte is not None and assessment.reference_bits_per_byte is not None:
        gap = assessment.batch_bits_per_byte - assessment.reference_bits_per_byte
        lines.append(
            f"| champion v{assessment.champion_version} bits/byte: batch {assessment.batch_bits_per_byte:.3f}, "
            f"reference slices {assessment.reference_bits_per_byte:.3f} | {gap:+.3f} | | "
            f"{'yes' if assessment.fit_drift else 'no'} |"
        )
    lines += [
        "",
        f"{assessment.batch_documents} new documents ({assessment.pending_documents} not trained on yet, deferred "
        f"ones included); the champion is {assessment.champion_age_days:.1f} days old; the classifier compared "
        f"{c.batch_documents} batch documents with {c.trained_documents} trained ones.",
    ]
    if c.batch_words:
        lines += ["", f"Words that tell the batch apart: {', '.join(c.batch_words)}"]
        lines += [f"Words that tell the trained text apart: {', '.join(c.trained_words)}"]
    return "\n".join(lines) + "\n"


def report_assessment(report: Reporter, assessment: Assessment, *, batch: str) -> None:
    """The policy's figures and verdict on the cycle's run, its Markdown on the run and the flow run."""
    report.metrics(assessment.numbers())
    report.tags({"lmloop.retrain_reason": "; ".join(assessment.reasons)[:5000]})
    text = assessment_markdown(assessment, batch=batch)
    report.text(text, "drift/report.md")
    report.markdown(text, "retraining-policy", f"drift and retraining policy for {batch}")
