"""The evaluation task: score the trained model on the test split and every slice, and report it."""

from __future__ import annotations

from prefect import task

from lmloop.core.config import EvalConfig
from lmloop.core.values import Run
from lmloop.data.values import Corpus
from lmloop.evaluation.evaluate import evaluate
from lmloop.evaluation.report import report_evaluation
from lmloop.training.values import Blocks, TrainedModel
from tasks.tracking import reporter


@task
def evaluate_model(
    trained: TrainedModel, *, corpus: Corpus, blocks: Blocks, cfg: EvalConfig, sources: list[str], run: Run
) -> TrainedModel:
    out = evaluate(trained, corpus, blocks, cfg=cfg, sources=sources)
    report_evaluation(reporter(run), out)
    return out
