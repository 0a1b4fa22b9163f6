import numpy as np
import pytest
from datasets import Dataset

from lmloop.classify import classification_metrics, label_map, probe_metrics, tfidf_baseline
from lmloop.evaluate import DocScores, slice_metrics
from lmloop.sample_data import true_entropy, write_corpus


def test_classification_metrics_and_report() -> None:
    m = classification_metrics(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), ["a", "b"])
    assert m["accuracy"] == 0.75
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert m["report"]["a"]["recall"] == 0.5


def test_tfidf_baseline_learns_separable_topics() -> None:
    rows = {
        "text": [f"{w} {w} thing {i}" for i in range(30) for w in ("apple", "rocket")],
        "label": ["fruit", "space"] * 30,
    }
    data = Dataset.from_dict(rows)
    labels = label_map(rows["label"])
    pred = tfidf_baseline(data, data, labels)
    assert (pred == np.array([labels[x] for x in rows["label"]])).mean() == 1.0


def test_linear_probe_separates_informative_features_and_not_noise() -> None:
    rng = np.random.default_rng(0)
    labels = ["a", "b", "c"] * 40 + ["lonely"]  # a class of one cannot be cross-validated: left out
    centres = {"a": 0.0, "b": 3.0, "c": 6.0, "lonely": 9.0}
    informative = np.array([[centres[x]] * 4 for x in labels]) + rng.normal(0, 0.5, (len(labels), 4))
    good = probe_metrics(informative, labels)
    noise = probe_metrics(rng.normal(size=(len(labels), 4)), labels)
    assert good["accuracy"] > 0.95 and noise["accuracy"] < 0.6
    assert set(good["report"]) >= {"a", "b", "c"} and "lonely" not in good["report"]
    with pytest.raises(ValueError, match="2\\+ classes"):
        probe_metrics(informative[:3], ["a", "a", "b"])


def test_slice_metrics_group_documents() -> None:
    scores = DocScores(np.array([1.0, 2.0, 3.0]), np.array([1, 1, 1]), np.array([1, 1, 1]))
    slices = slice_metrics(scores, ["a", "b", "a"])
    assert slices["a"]["documents"] == 2 and slices["a"]["perplexity"] == pytest.approx(np.exp(2.0))


def test_true_entropy_matches_generated_documents(tmp_path) -> None:
    from lmloop.cleaning import doc_id

    summary = write_corpus(tmp_path, seed=1, docs=30, files=1)
    texts = [line for line in (tmp_path / "part-000.jsonl").read_text().splitlines()]
    import json

    ids = [doc_id(json.loads(t)["text"]) for t in texts] + ["0" * 16]
    bits, mask = true_entropy(ids, [tmp_path])
    assert mask.tolist() == [True] * 30 + [False]
    assert bits / summary["bytes"] == pytest.approx(summary["true_bits_per_byte"], rel=1e-6)


def test_lora_classifier_merges_into_a_plain_transformers_model(tmp_path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification

    from lmloop.classify import build_classifier, merge_lora, predict
    from lmloop.model import build_causal_lm

    backbone = build_causal_lm("llama", 64, 1, 32, 2, 16, eos_token_id=0)
    backbone.save_pretrained(tmp_path / "backbone")
    labels = {"a": 0, "b": 1}
    model = build_classifier(str(tmp_path / "backbone"), labels, pad_token_id=0, lora=True)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable < sum(p.numel() for p in model.parameters()) / 2, "LoRA trains adapters and the head only"
    merged = merge_lora(model)
    merged.save_pretrained(tmp_path / "merged")
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged")
    assert reloaded.config.id2label == {0: "a", 1: "b"}
    ids = torch.randint(1, 64, (3, 16))
    encoded = Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": torch.ones_like(ids).tolist()})
    assert predict(reloaded, encoded).tolist() == predict(merged, encoded).tolist()


def test_a_classifier_below_its_linear_baseline_is_not_crowned() -> None:
    from flows.finetune import below_baseline

    beats = {"accuracy": 0.86, "macro_f1": 0.83, "baseline_accuracy": 0.84, "baseline_macro_f1": 0.82}
    assert below_baseline(beats) is None
    loses = {**beats, "macro_f1": 0.57}
    assert "macro_f1 0.570 < 0.820" in below_baseline(loses) and "accuracy" not in below_baseline(loses).split("(")[1]
