"""The continual room's report: the training mixture of a cycle (new and replayed documents) as a dataset
input of its run, with its manifest and counts."""

from __future__ import annotations

from pathlib import Path

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
