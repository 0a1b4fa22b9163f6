"""A new batch, assessed before anything is trained: how far it drifted from what the champion models, how
much new data waits, how old the champion is, and so whether the cycle retrains (:func:`should_retrain`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from lmloop.continual.drift import ContentDrift, content_drift
from lmloop.core.config import EvalConfig, PipelineConfig, RetrainPolicy
from lmloop.core.files import write_json
from lmloop.core.values import Value
from lmloop.data.cleaning import doc_id, normalize_text
from lmloop.data.readers import Columns, read_rows
from lmloop.data.sources import discover
from lmloop.data.state import State
from lmloop.training.values import BaseModelRef


class Assessment(Value):
    """What the policy saw and decided for one batch (``retrain``, and ``reasons``: why, or why not)."""

    batch_documents: int
    pending_documents: int  # this batch plus the deferred ones: not trained on yet
    champion_version: str
    champion_age_days: float
    content: ContentDrift
    batch_bits_per_byte: float | None
    reference_bits_per_byte: float | None
    fit_drift: bool
    retrain: bool
    reasons: list[str]
    forced: bool = False
    readable: bool = True

    @property
    def drifted(self) -> bool:
        return self.content.detected or self.fit_drift

    def numbers(self) -> dict[str, float]:
        """Flat figures for MLflow (the cycle's run and the monitoring timeline)."""
        out = {
            "drift_auc": self.content.auc,
            "drift_auc_threshold": self.content.threshold,
            "batch_documents": float(self.batch_documents),
            "pending_documents": float(self.pending_documents),
            "champion_age_days": self.champion_age_days,
            "drift_detected": float(self.drifted),
        }
        if self.batch_bits_per_byte is not None and self.reference_bits_per_byte is not None:
            out |= {
                "champion_batch_bits_per_byte": self.batch_bits_per_byte,
                "champion_reference_bits_per_byte": self.reference_bits_per_byte,
                "fit_gap_bits_per_byte": self.batch_bits_per_byte - self.reference_bits_per_byte,
            }
        return out

    def summary(self) -> str:
        fit = (
            f"champion {self.batch_bits_per_byte:.3f} bits/byte on the batch vs {self.reference_bits_per_byte:.3f} "
            "on its reference slices"
            if self.batch_bits_per_byte is not None and self.reference_bits_per_byte is not None
            else "fit not measured"
        )
        return (
            f"drift AUC {self.content.auc:.3f} (threshold {self.content.threshold:.3f}); {fit}; "
            f"{self.pending_documents} documents not trained on yet; champion v{self.champion_version} "
            f"{self.champion_age_days:.1f} days old"
        )


def batch_texts(files: list[dict[str, Any]], cols: Columns, *, nfc: bool, whitespace: bool) -> list[str]:
    """The batch's documents, cleaned as ingest cleans them, once each (exact duplicates dropped)."""
    seen, texts = set(), []
    for f in files:
        found, _ = discover([f["staged"]])
        for source in found:
            for _n, text, *_ in read_rows(source, cols):
                if text and (clean := normalize_text(text, nfc, whitespace)) and (key := doc_id(clean)) not in seen:
                    seen.add(key)
                    texts.append(clean)
    return texts


def _sample(texts: list[str], k: int, seed: int) -> list[str]:
    if len(texts) <= k:
        return list(texts)
    chosen = np.random.default_rng(seed).choice(len(texts), size=k, replace=False)
    return [texts[i] for i in sorted(chosen)]


def trained_sample(state: State, k: int, seed: int) -> list[str]:
    """Up to ``k`` documents the champion's lineage trained on (the replay corpora's training splits)."""
    corpora = state.corpora()
    sizes = [len(c.split_index("train")) for c in corpora]
    total = sum(sizes)
    if not total:
        return []
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(total, size=min(k, total), replace=False))
    bounds, texts = np.cumsum([0, *sizes]), []
    for i, corpus in enumerate(corpora):
        local = chosen[(chosen >= bounds[i]) & (chosen < bounds[i + 1])] - bounds[i]
        if len(local):
            texts += corpus.split("train").select(local.tolist())["text"]
    return texts


def _bits_per_byte(model: Any, tokenizer: Any, texts: list[str], *, block: int, limits: EvalConfig) -> float | None:
    from lmloop.evaluation.evaluate import eval_sample, score_documents

    keep = eval_sample(
        texts, [doc_id(t) for t in texts], tokenizer, max_documents=limits.max_documents, max_tokens=limits.max_tokens
    )
    if not keep:
        return None
    return score_documents(model, tokenizer, [texts[i] for i in keep], block, batch_size=32).bits_per_byte()


def fit_figures(
    champion: BaseModelRef, batch: list[str], *, state: State, limits: EvalConfig, cache: Path
) -> tuple[float | None, float | None]:
    """The champion's bits per byte on the batch and on the frozen slices (the latter kept in ``cache`` per
    version and slice set: it changes only when the champion or the slices do)."""
    from transformers import AutoModelForCausalLM

    from lmloop.training.model import load_pretrained
    from lmloop.training.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(champion.tokenizer_dir)
    model = load_pretrained(AutoModelForCausalLM, champion.dir, use_safetensors=not champion.pickle_weights)
    model.eval()
    on_batch = _bits_per_byte(model, tokenizer, batch, block=champion.block_size, limits=limits)
    slices = state.slice_rows()
    key = f"v{champion.version}:" + ",".join(sorted(slices))
    known = json.loads(cache.read_text()) if cache.exists() else {}
    if key not in known:
        texts = [row["text"] for rows in slices.values() for row in rows]
        known[key] = _bits_per_byte(model, tokenizer, texts, block=champion.block_size, limits=limits)
        write_json(cache, known)
    return on_batch, known[key]


def should_retrain(
    policy: RetrainPolicy, *, content: ContentDrift, fit_gap: float | None, pending: int, age_days: float
) -> tuple[bool, bool, list[str]]:
    """The policy: (retrain?, fit drift?, the reasons). Any trigger retrains; with none the batch waits."""
    fit_drift = policy.fit_bits is not None and fit_gap is not None and fit_gap > policy.fit_bits
    reasons = []
    if content.detected:
        reasons.append(f"content drift: AUC {content.auc:.3f} > {content.threshold:.3f}")
    if fit_drift:
        reasons.append(f"fit drift: the champion is {fit_gap:.3f} bits/byte worse on the batch (> {policy.fit_bits})")
    if policy.new_documents is not None and pending >= policy.new_documents:
        reasons.append(f"{pending} documents not trained on yet (>= {policy.new_documents})")
    if policy.max_age_days is not None and age_days > policy.max_age_days:
        reasons.append(f"the champion is {age_days:.1f} days old (> {policy.max_age_days:g})")
    if policy.always:
        reasons.append("continual.policy.always")
    if reasons:
        return True, fit_drift, reasons
    why = "no drift"
    if policy.new_documents is not None:
        why += f", {pending} of {policy.new_documents} documents"
    if policy.max_age_days is not None:
        why += f", champion {age_days:.1f} of {policy.max_age_days:g} days old"
    return False, fit_drift, [why]


def assess(
    fresh: list[dict[str, Any]],
    champion: BaseModelRef,
    *,
    deferred: list[dict[str, Any]],
    config: PipelineConfig,
    state: State,
    champion_created: float,
    force: bool = False,
) -> Assessment:
    """Measure the new files (``fresh``: their staged copies) against the champion and decide with
    ``config.continual.policy``; the size trigger counts the ``deferred`` files' documents too. ``force``
    retrains whatever the policy says."""
    policy, data, seed = config.continual.policy, config.data, config.train.seed
    cols = Columns(text=data.text_column, label=data.label_column, id=data.id_column)
    age = max(0.0, (time.time() - champion_created) / 86400.0)
    try:
        texts = batch_texts(fresh, cols, nfc=data.nfc, whitespace=data.clean_whitespace)
        waiting = batch_texts(deferred, cols, nfc=data.nfc, whitespace=data.clean_whitespace) if deferred else []
    except Exception as exc:  # noqa: BLE001  (unreadable: the data gate rejects it, with the file and the reason)
        return _unreadable(champion, age, exc)
    pending = len(set(texts) | set(waiting))
    sample = _sample(texts, policy.sample, seed)
    content = content_drift(sample, trained_sample(state, policy.sample, seed), floor=policy.drift_auc, seed=seed)
    limits = config.eval.model_copy(update={"max_documents": policy.sample})
    cache = state.root / "monitor" / "reference_fit.json"
    on_batch, reference = fit_figures(champion, sample, state=state, limits=limits, cache=cache)
    gap = None if on_batch is None or reference is None else on_batch - reference
    retrain, fit_drift, reasons = should_retrain(policy, content=content, fit_gap=gap, pending=pending, age_days=age)
    if force and not retrain:
        reasons = ["forced (--force)", *reasons]
    return Assessment(
        batch_documents=len(texts),
        pending_documents=pending,
        champion_version=champion.version,
        champion_age_days=age,
        content=content,
        batch_bits_per_byte=on_batch,
        reference_bits_per_byte=reference,
        fit_drift=fit_drift,
        retrain=retrain or force,
        reasons=reasons,
        forced=force and not retrain,
    )


def _unreadable(champion: BaseModelRef, age: float, exc: Exception) -> Assessment:
    reason = f"not measured: {str(exc)[:300]} (the data gate judges the batch)"
    return Assessment(
        batch_documents=0,
        pending_documents=0,
        champion_version=champion.version,
        champion_age_days=age,
        content=ContentDrift(auc=0.5, threshold=1.0, detected=False, batch_documents=0, trained_documents=0),
        batch_bits_per_byte=None,
        reference_bits_per_byte=None,
        fit_drift=False,
        retrain=True,
        reasons=[reason],
        readable=False,
    )
