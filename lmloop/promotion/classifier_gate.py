"""The gate for classifiers, the whole rule in :func:`judge_classifier`: below its TF-IDF + LR baseline a
classifier is never crowned; the first one above it becomes ``@champion`` of ``<name>-classifier``; after that
``@champion`` moves only when the new classifier beats the current champion on the same test rows (a paired
bootstrap of the accuracy difference, as the LM gate does for bits per byte)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lmloop.data.state import State
from lmloop.promotion import moves
from lmloop.promotion.values import PromotionOutcome
from lmloop.registry import model_registry, tracking
from lmloop.training.baseline import accuracy_difference_ci


def predict_labels(model_dir: str, tokenizer_dir: str, texts: list[str]) -> np.ndarray:
    """A registered classifier's label names for ``texts`` (cut at its context)."""
    from transformers import AutoModelForSequenceClassification

    from lmloop.training.bases import is_encoder
    from lmloop.training.classifier_training import classifier_tokenizer, encode, predict
    from lmloop.training.model import load_pretrained

    model = load_pretrained(AutoModelForSequenceClassification, model_dir)
    tokenizer = classifier_tokenizer(tokenizer_dir)
    limit = getattr(model.config, "n_positions", None) or model.config.max_position_embeddings
    data = encode(texts, [0] * len(texts), tokenizer, limit=limit, special=is_encoder(model.config.model_type))
    predicted = predict(model, data, tokenizer.pad_token_id)
    return np.array([model.config.id2label[int(i)] for i in predicted])


def below_baseline(metrics: dict[str, float]) -> str | None:
    """Why a classifier must not be crowned: it does not beat TF-IDF + logistic regression on the same test
    rows (accuracy and macro-F1 both). None when it does. When the paired-bootstrap 95% CI of the accuracy
    difference holds zero, it says so: the two are statistically tied, and a tie is no reason to prefer the
    larger model."""
    short = [m for m in ("accuracy", "macro_f1") if metrics[m] < metrics[f"baseline_{m}"]]
    if not short:
        return None
    figures = ", ".join(f"{m} {metrics[m]:.3f} < {metrics[f'baseline_{m}']:.3f}" for m in short)
    low, high = metrics.get("accuracy_difference_ci95_low"), metrics.get("accuracy_difference_ci95_high")
    if low is not None and high is not None and low <= 0.0 <= high:
        return (
            "statistically tied with the TF-IDF + logistic-regression baseline on the same test rows "
            f"({figures}; the 95% CI of the accuracy difference, [{low:+.3f}, {high:+.3f}], includes zero): "
            "no better than the baseline, which is smaller and cheaper to run, so not crowned"
        )
    return f"below the TF-IDF + logistic-regression baseline on the same test rows ({figures})"


def judge_classifier(
    name: str, challenger: str, *, metrics: dict[str, float], model_dir: Path, test_rows: Path, work: Path, state: State
) -> PromotionOutcome:
    """The classifier's promotion rule. Below its baseline (``metrics``): no alias, the refusal tagged on the
    version. Else the first classifier of ``name`` becomes champion; a later one is promoted over the champion
    only when the paired-bootstrap 95% CI of its accuracy minus the champion's, on the same rows, lies above
    zero. Recorded like every gate decision."""
    if refused := below_baseline(metrics):
        for key, value in {"gate.decision": "rejected", "gate.reason": refused}.items():
            tracking.client().set_model_version_tag(name, challenger, key, value)
        return PromotionOutcome(
            promoted=False, reason=refused, champion_version=model_registry.alias_version(name, moves.CHAMPION)
        )
    if moves.first_champion(name, challenger, state):
        return PromotionOutcome(promoted=True, reason="first champion", champion_version=challenger)
    champion = model_registry.alias_version(name, moves.CHAMPION)
    if champion is None or champion == challenger:  # crowned by an earlier attempt of this run
        return PromotionOutcome(promoted=champion == challenger, reason="first champion", champion_version=champion)
    return against_champion(
        name, challenger, champion, model_dir=model_dir, test_rows=test_rows, work=work, state=state
    )


def against_champion(
    name: str, challenger: str, champion: str, *, model_dir: Path, test_rows: Path, work: Path, state: State
) -> PromotionOutcome:
    """Promote ``challenger`` over ``champion`` only when the paired-bootstrap 95% CI of its accuracy minus
    the champion's, on the same rows, lies above zero (under the promotion lock, re-reading the champion)."""
    rows = [json.loads(line) for line in test_rows.read_text(encoding="utf-8").splitlines()]
    texts, truth = [r["text"] for r in rows], np.array([r["label"] for r in rows])
    fetched = model_registry.fetch_model(name, champion, work / f"champion-{champion}")
    ours = predict_labels(str(model_dir), str(model_dir), texts)
    theirs = predict_labels(fetched["model_dir"], fetched["tokenizer_dir"], texts)
    low, high = accuracy_difference_ci(truth, ours, theirs)
    accuracy = {"challenger": float((ours == truth).mean()), "champion": float((theirs == truth).mean())}
    promote = low > 0.0
    verdict = "better" if promote else "not better"
    reason = (
        f"v{challenger} {verdict} than champion v{champion} on the same {len(rows)} test rows: accuracy "
        f"{accuracy['challenger']:.4f} vs {accuracy['champion']:.4f}, difference 95% CI [{low:+.4f}, {high:+.4f}]"
    )
    numbers = {"accuracy_difference_ci95_low": low, "accuracy_difference_ci95_high": high}
    numbers |= {f"accuracy_{k}": v for k, v in accuracy.items()}
    return moves.promote_if_better(
        name, challenger, judged_against=champion, promote=promote, reason=reason, numbers=numbers, state=state
    )
