import json
from pathlib import Path

from lmloop.data.sample_data import SHIFT_TOPIC, TOPICS, write_corpus


def _bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.jsonl"))}


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a = write_corpus(tmp_path / "a", seed=3, docs=50)
    b = write_corpus(tmp_path / "b", seed=3, docs=50)
    assert _bytes(tmp_path / "a") == _bytes(tmp_path / "b") and a == b
    write_corpus(tmp_path / "c", seed=4, docs=50)
    assert _bytes(tmp_path / "a") != _bytes(tmp_path / "c")


def test_documents_carry_topic_labels_and_shift_adds_a_topic(tmp_path: Path) -> None:
    base = write_corpus(tmp_path / "base", seed=0, docs=200)
    shifted = write_corpus(tmp_path / "shift", seed=0, docs=200, shift=True)
    labels = {json.loads(line)["label"] for p in (tmp_path / "shift").glob("*.jsonl") for line in p.open()}
    assert set(base["labels"]) == set(TOPICS)
    assert SHIFT_TOPIC in labels
    assert 0 < base["true_bits_per_byte"] < 8 and shifted["true_bits_per_byte"] > 0
