"""Judging a challenger against its champion: both score the new batch's test split and every frozen slice
(capped, the same documents for both), labels whose text drifted are not held against the challenger on old
slices, an optional linear probe compares their features, and the gate decides once per batch."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from lmloop.continual.journal import CycleJournal
from lmloop.core.config import ContinualConfig, EvalConfig
from lmloop.core.faults import crash_point
from lmloop.data.state import State
from lmloop.data.values import Corpus
from lmloop.evaluation.evaluate import DocScores, eval_sample, score_documents
from lmloop.promotion.values import GateDecision
from lmloop.training.values import BaseModelRef, TrainedModel


def score_slices(
    model: Any, tokenizer: Any, slices: dict[str, list[str]], *, block_size: int, batch_size: int
) -> dict[str, DocScores]:
    return {
        name: score_documents(model, tokenizer, texts, block_size, batch_size=batch_size)
        for name, texts in slices.items()
    }


def _capped(docs: list[dict[str, Any]], tokenizer: Any, limits: EvalConfig) -> list[dict[str, Any]]:
    """The documents (rows with ``text``, ``doc_id``, ``label``) the evaluation sample keeps."""
    texts, ids = [r["text"] for r in docs], [r["doc_id"] for r in docs]
    return [
        docs[i]
        for i in eval_sample(texts, ids, tokenizer, max_documents=limits.max_documents, max_tokens=limits.max_tokens)
    ]


def labelled_documents(corpus: Corpus, state: State) -> tuple[list[str], list[str]]:
    """Every labelled document of the frozen slices and the new batch's test split."""
    rows = [row for rows in state.slice_rows().values() for row in rows]
    test = corpus.split("test")
    rows += [{"text": t, "label": lab} for t, lab in zip(test["text"], test["label"], strict=True)]
    labelled = [(r["text"], str(r["label"])) for r in rows if r.get("label") not in (None, "")]
    return [t for t, _ in labelled], [lab for _, lab in labelled]


def probe_comparison(
    models: dict[str, Any],
    tokenizer: Any,
    texts: list[str],
    *,
    labels: list[str],
    block: int,
    allowed: dict[str, float],
) -> tuple[dict[str, tuple[float, float, float]], dict[str, Any]]:
    """Gate criterion (c): the same linear probe (same folds) on each model's features."""
    from lmloop.training.classify import embed, probe_metrics

    metrics = {role: probe_metrics(embed(m, tokenizer, texts, max_length=block), labels) for role, m in models.items()}
    compared = {
        metric: (metrics["champion"][metric], metrics["challenger"][metric], drop) for metric, drop in allowed.items()
    }
    summary = {role: {k: m[k] for k in ("accuracy", "macro_f1")} for role, m in metrics.items()}
    return compared, {"documents": len(texts), **summary}


MIN_LABEL_DOCUMENTS = 5  # documents of a label needed on each side before its drift is measured


def drifted_labels(
    new: list[dict[str, Any]], new_scores: DocScores, old: list[dict[str, Any]], *, old_scores: DocScores, bits: float
) -> dict[str, tuple[float, float]]:
    """The labels whose statistics moved, measured by the champion itself: on the new batch's held-out
    documents of a label it is worse than on the frozen slices' documents of that label by more than
    ``bits`` bits per byte. Those old documents no longer describe the data (the batch is the current word
    on them, judged on its own slice). Returns label -> (champion on old, champion on new)."""
    drifted = {}
    for label in sorted({str(r["label"]) for r in new if r.get("label") not in (None, "")}):
        on_new = np.array([str(r.get("label")) == label for r in new])
        on_old = np.array([str(r.get("label")) == label for r in old])
        if on_new.sum() < MIN_LABEL_DOCUMENTS or on_old.sum() < MIN_LABEL_DOCUMENTS:
            continue
        before, now = _held(old_scores, on_old).bits_per_byte(), _held(new_scores, on_new).bits_per_byte()
        if now - before > bits:
            drifted[label] = (before, now)
    return drifted


def still_holding(rows: list[dict[str, Any]], drifted: Iterable[str]) -> np.ndarray:
    """Which of a frozen slice's documents still hold: unlabelled ones, and those of labels that did not drift."""
    gone = set(drifted)
    return np.array([r.get("label") in (None, "") or str(r["label"]) not in gone for r in rows], dtype=bool)


def _held(scores: DocScores, keep: np.ndarray) -> DocScores:
    return DocScores(nll=scores.nll[keep], tokens=scores.tokens[keep], bytes=scores.bytes[keep])


def _concat(scores: list[DocScores]) -> DocScores:
    return DocScores(*(np.concatenate([getattr(s, f) for s in scores]) for f in ("nll", "tokens", "bytes")))


def _label_sample(corpus: Corpus, per_label: int = 50) -> list[dict[str, Any]]:
    """Up to ``per_label`` documents of each label of the new batch, from all its splits (the champion never
    saw any of them): enough to tell a drifted label even when the test split holds a few of it."""
    by_label: dict[str, list[dict[str, Any]]] = {}
    for split in ("test", "validation", "train"):
        part = corpus.split(split)
        if "label" not in part.column_names:
            return []
        for text, label in zip(part["text"], part["label"], strict=True):
            bucket = by_label.setdefault(str(label), []) if label not in (None, "") else None
            if bucket is not None and len(bucket) < per_label:
                bucket.append({"text": text, "label": label})
    return [row for bucket in by_label.values() for row in bucket]


def _drift(
    sample: tuple[list[dict[str, Any]], DocScores | None],
    picked: dict[str, list[dict[str, Any]]],
    champion: dict[str, DocScores],
    *,
    batch: str,
    bits: float | None,
) -> dict[str, tuple[float, float]]:
    """The drifted labels: the champion on the batch's label sample against the champion on the old slices."""
    old = [name for name in picked if name != batch and picked[name]]
    rows, scores = sample
    if bits is None or not old or scores is None:
        return {}
    before = [r for name in old for r in picked[name]]
    return drifted_labels(rows, scores, before, old_scores=_concat([champion[n] for n in old]), bits=bits)


def judge(
    champion: BaseModelRef,
    challenger: TrainedModel,
    corpus: Corpus,
    *,
    batch: str,
    gate: ContinualConfig,
    state: State,
    limits: EvalConfig,
) -> GateDecision:
    """Score champion and challenger on the new batch's test split and every frozen slice (each capped by
    ``limits``, the same documents for both), at the block size both were trained with (the champion's);
    decide. ``gate.classification`` adds the linear-probe criterion. The decision is made once per batch: a
    rerun after a crash reuses the recorded one (after its promotion the champion *is* the challenger)."""
    from transformers import AutoModelForCausalLM

    from lmloop.training.model import load_pretrained

    journal = CycleJournal.of(state, batch)
    if journal.decision is not None:
        return journal.decision

    from lmloop.promotion.gate import decide
    from lmloop.training.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(challenger.dir)
    test = corpus.split("test")
    labels = test["label"] if "label" in test.column_names else [None] * len(test)
    rows = zip(test["text"], test["doc_id"], labels, strict=True)
    docs = {batch: [{"text": t, "doc_id": d, "label": x} for t, d, x in rows]}
    docs |= state.slice_rows()
    picked = {name: _capped(rows, tokenizer, limits) for name, rows in docs.items()}
    texts = {name: [r["text"] for r in rows] for name, rows in picked.items()}
    block = champion.block_size
    models = {
        role: load_pretrained(AutoModelForCausalLM, path)
        for role, path in (("champion", champion.dir), ("challenger", challenger.dir))
    }
    scores = {
        role: score_slices(model, tokenizer, texts, block_size=block, batch_size=32) for role, model in models.items()
    }
    sample = _label_sample(corpus) if gate.drift_bits is not None else []
    sample_scores = (
        score_documents(models["champion"], tokenizer, [r["text"] for r in sample], block) if sample else None
    )
    drifted = _drift((sample, sample_scores), picked, scores["champion"], batch=batch, bits=gate.drift_bits)
    holding = {name: still_holding(picked[name], drifted) for name in texts if name != batch}
    old = [  # the forgetting guard: each old slice on the documents that still hold
        (name, _held(scores["champion"][name], keep), _held(scores["challenger"][name], keep))
        for name, keep in holding.items()
        if keep.any()
    ]
    compared, probe = None, {}
    if gate.classification:
        docs, labels = labelled_documents(corpus, state)
        compared, probe = probe_comparison(
            models, tokenizer, docs, labels=labels, block=block, allowed=dict(gate.classification)
        )
    new = (batch, scores["champion"][batch], scores["challenger"][batch])
    decision = decide(new, old, gate.margin, gate.tolerance, compared, samples=gate.bootstrap_samples)
    slices = {
        name: {
            "champion_bits_per_byte": scores["champion"][name].bits_per_byte(),
            "challenger_bits_per_byte": scores["challenger"][name].bits_per_byte(),
            "documents": len(t),
            **({"documents_guarded": int(holding[name].sum())} if name in holding and drifted else {}),
        }
        for name, t in texts.items()
    }
    moved = ", ".join(f"{label} {a:.3f} -> {b:.3f}" for label, (a, b) in drifted.items())
    note = f"; drifted labels (champion bits/byte, old -> new documents), not guarded on old slices: {moved}"
    verdict = GateDecision(
        promote=decision.promote,
        reason=decision.reason + (note if drifted else ""),
        batch=batch,
        slices=slices,
        comparison=decision,
        probe=probe,
    )
    journal.judged(state, verdict)
    crash_point("judged")
    return verdict
