"""Near-duplicates: MinHash estimates, and the data gate dropping near-copies within a batch, of trained
documents (history signatures) and of frozen eval documents (leakage)."""

import json
import random
import re
from pathlib import Path

import numpy as np

from lmloop.core import settings
from lmloop.core.config import DataConfig, ValidationConfig
from lmloop.data import near_dups
from lmloop.data import stages as data_stages
from lmloop.data.state import State

VALID = ValidationConfig(min_rows=5)
WORDS = [f"w{i}" for i in range(5000)]


def _docs(n: int, seed: int, length: int = 60) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(length)) + "." for _ in range(n)]


def _edit(text: str, changes: int, seed: int) -> str:
    rng = random.Random(seed)
    words = text.split()
    for _ in range(changes):
        words[rng.randrange(len(words))] = rng.choice(WORDS)
    return " ".join(words).upper()  # re-cased too: words are compared lower-cased


def _jaccard(a: str, b: str, n: int = 3) -> float:
    def shingles(t: str) -> set:
        w = re.findall(r"\w+", t.lower())
        return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}

    return len(shingles(a) & shingles(b)) / len(shingles(a) | shingles(b))


def test_signatures_estimate_jaccard_similarity() -> None:
    base = _docs(200, seed=1)
    edited = [_edit(t, i % 6, seed=i) for i, t in enumerate(base)]
    estimated = near_dups.similarity(near_dups.signatures(base), near_dups.signatures(edited))
    true = np.array([_jaccard(a, b) for a, b in zip(base, edited, strict=True)])
    assert np.abs(estimated - true).mean() < 0.05, "128 bins: about 0.03 off on average"
    sigs = near_dups.signatures(["", None, "One two three.", "ONE two, three!"])
    assert (sigs[0] == 0xFFFF).all() and (sigs[1] == 0xFFFF).all(), "no words: a signature that matches nothing"
    assert (sigs[2] == sigs[3]).all(), "case and punctuation are normalised away"
    assert not near_dups.within(near_dups.Signatures.of(["", None, "a b c d e f g h i j"]), 0.8)[:2].any()


def _write(folder: Path, name: str, texts: list[str]) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return str(folder / name)


def test_the_gate_drops_near_copies_within_the_batch_and_of_frozen_eval_documents(tmp_path: Path) -> None:
    home, originals = settings.home(), _docs(40, seed=2)
    frozen = _docs(5, seed=3)
    near_copies = [_edit(t, 1, seed=i) for i, t in enumerate(originals[:10])]  # J about 0.9
    far = [_edit(t, 25, seed=i) for i, t in enumerate(originals[10:15])]  # J well below 0.5: kept
    leaks = [_edit(t, 1, seed=i) for i, t in enumerate(frozen)]
    _write(tmp_path / "raw", "a.jsonl", originals)
    _write(tmp_path / "raw", "b.jsonl", near_copies + far + leaks)
    eval_file = _write(tmp_path / "eval", "frozen.jsonl", frozen)
    data = DataConfig(frozen_eval=[eval_file])
    ingested = data_stages.ingest(
        [str(tmp_path / "raw")], data=data, validation=VALID, shards=home.cache / "s", out=tmp_path / "i"
    )
    corpus = data_stages.validate(
        ingested, data=data, validation=VALID, quarantine=tmp_path / "q", state=State(tmp_path / "st")
    )
    summary = corpus.validation.model_dump()
    assert summary["near_duplicates_removed"] == 10 and summary["near_leakage_removed"] == 5
    assert summary["leakage_removed"] == 5 and summary["rows"] == 45
    manifest = json.loads((tmp_path / "i" / "manifest.json").read_text())["files"]
    by_file = {Path(r["uri"]).name: r["near_duplicates"] for r in manifest}
    assert by_file == {"a.jsonl": 0, "b.jsonl": 10}, "counted against the file that held the copy"
    assert "| 10 |" in (tmp_path / "i" / "validation.md").read_text()
    off = DataConfig(frozen_eval=[eval_file], near_dup_threshold=None)
    plain = data_stages.validate(
        ingested, data=off, validation=VALID, quarantine=tmp_path / "q", state=State(tmp_path / "st")
    )
    assert plain.validation.rows == 60 and plain.validation.near_duplicates_removed == 0


def test_near_copies_of_documents_already_trained_on_are_dropped(tmp_path: Path) -> None:
    home, state = settings.home(), State(tmp_path / "state")
    old = _docs(60, seed=4)
    first = data_stages.ingest(
        [_write(tmp_path / "one", "old.jsonl", old)],
        data=DataConfig(),
        validation=VALID,
        shards=home.cache / "s",
        out=tmp_path / "1",
    )
    trained = data_stages.validate(first, data=DataConfig(), validation=VALID, quarantine=tmp_path / "q", state=state)
    trained = trained.with_splits(0.05, 0.10)
    state.record_training_data(trained, "base")
    assert len(state.trained(3).signatures) == trained.sizes["train"], "signatures kept beside the trained ids"
    train_texts = set(trained.split("train")["text"])
    again = [_edit(t, 1, seed=i) for i, t in enumerate(sorted(train_texts)[:8])] + _docs(20, seed=5)
    data = DataConfig(dedup_against_trained=True)
    second = data_stages.ingest(
        [_write(tmp_path / "two", "new.jsonl", again)],
        data=data,
        validation=VALID,
        shards=home.cache / "s",
        out=tmp_path / "2",
    )
    summary = data_stages.validate(
        second, data=data, validation=VALID, quarantine=tmp_path / "q", state=state
    ).validation.model_dump()
    assert summary["near_duplicates_removed"] == 8 and summary["rows"] == 20


def test_an_unchanged_rerun_reuses_the_gate_decision(tmp_path: Path, monkeypatch) -> None:
    from lmloop.data import dedup as data_module

    home, calls = settings.home(), []
    decide = data_module._decide
    monkeypatch.setattr(data_module, "_decide", lambda *a: calls.append(1) or decide(*a))
    source = _write(tmp_path / "raw", "a.jsonl", _docs(30, seed=7) + [_edit(t, 1, seed=0) for t in _docs(3, seed=7)])
    data = DataConfig()

    def gate(out: str, config: DataConfig = data) -> dict:
        ingested = data_stages.ingest(
            [source], data=config, validation=VALID, shards=home.cache / "s", out=tmp_path / out
        )
        state = State(tmp_path / "st")
        return data_stages.validate(
            ingested, data=config, validation=VALID, quarantine=tmp_path / "q", state=state
        ).validation.model_dump()

    first, again = gate("one"), gate("two")
    assert len(calls) == 1 and first == again, "the same shards, eval set, history and settings: decided once"
    assert gate("three", DataConfig(near_dup_threshold=0.9))["rows"] == first["rows"] and len(calls) == 2
