"""Seeded synthetic corpus: topics with their own vocabulary and word-transition statistics.

Each document is a walk through one topic's Markov chain over words. Every random choice is
recorded, so the generator knows the exact negative log-likelihood of each document it wrote —
the floor that no model can beat, reported beside the model's own NLL. ``shift=True`` emits a
drifted distribution: a topic never seen before plus re-drawn statistics for the old topics.
Same seed, same bytes.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TOPICS = ("astronomy", "cooking", "sailing", "music")
SHIFT_TOPIC = "geology"
_ONSETS = ("b", "c", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "st", "tr", "pl")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ou")
_P_END_SENTENCE = 0.12  # after each word, the sentence ends with this probability
_P_END_DOC = 0.2  # after each sentence, the document ends with this probability
_MAX_SENTENCES = 12


@dataclass(frozen=True)
class Topic:
    """A topic: its words, a start distribution and a sparse next-word distribution per word."""

    name: str
    words: tuple[str, ...]
    start: np.ndarray  # (V,) probabilities of the first word of a sentence
    next_ids: np.ndarray  # (V, k) candidate next words
    next_p: np.ndarray  # (V, k) their probabilities (sum to 1)


def _word_pool(rng: np.random.Generator, n: int) -> list[str]:
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < n:
        syllables = rng.integers(2, 4)
        word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def _make_topic(name: str, words: list[str], rng: np.random.Generator, *, k: int = 8) -> Topic:
    vocab = len(words)
    start = rng.dirichlet(np.full(vocab, 0.3))
    next_ids = np.stack([rng.choice(vocab, size=k, replace=False) for _ in range(vocab)])
    next_p = rng.dirichlet(np.full(k, 0.5), size=vocab)
    return Topic(name, tuple(words), start, next_ids, next_p)


def build_topics(seed: int, shift: bool = False, shared: int = 24, *, own: int = 96) -> list[Topic]:
    """Topics for a seed. With ``shift`` the old topics keep their words but get new statistics,
    and a new topic appears."""
    rng = np.random.default_rng(seed)
    pool = _word_pool(rng, shared + own * (len(TOPICS) + 1))
    common, rest = pool[:shared], pool[shared:]
    names = [*TOPICS, SHIFT_TOPIC] if shift else list(TOPICS)
    stats_rng = np.random.default_rng([seed, 1 if shift else 0])
    return [_make_topic(name, common + rest[i * own : (i + 1) * own], stats_rng) for i, name in enumerate(names)]


def generate_document(topic: Topic, rng: np.random.Generator) -> tuple[str, float]:
    """One document and its exact NLL in nats under the generating process."""
    nll = 0.0
    sentences = []
    for n_sentence in range(1, _MAX_SENTENCES + 1):
        word = rng.choice(len(topic.words), p=topic.start)
        nll -= math.log(topic.start[word])
        sentence = [topic.words[word]]
        while True:
            if rng.random() < _P_END_SENTENCE:
                nll -= math.log(_P_END_SENTENCE)
                break
            j = rng.choice(topic.next_ids.shape[1], p=topic.next_p[word])
            nll -= math.log((1 - _P_END_SENTENCE) * topic.next_p[word, j])
            word = topic.next_ids[word, j]
            sentence.append(topic.words[word])
        sentences.append(" ".join(sentence).capitalize() + ".")
        if n_sentence == _MAX_SENTENCES:
            break
        ends = rng.random() < _P_END_DOC
        nll -= math.log(_P_END_DOC if ends else 1 - _P_END_DOC)
        if ends:
            break
    return " ".join(sentences), nll


def write_corpus(
    out: Path, seed: int = 0, shift: bool = False, *, docs: int = 4000, files: int = 4, skip: int = 0
) -> dict:
    """Write ``files`` JSONL files (fields ``text``, ``label``) and ``_meta/generator.json``. ``skip``: the
    generator's first documents are drawn but not written (more documents of a distribution already written).

    Returns the generator summary, including the true entropy in bits per byte.
    """
    topics = build_topics(seed, shift)
    rng = np.random.default_rng([seed, 2, 1 if shift else 0])
    out.mkdir(parents=True, exist_ok=True)
    prefix = "shift" if shift else "part"
    total_bits = total_bytes = 0.0
    per_doc = []
    handles = [(out / f"{prefix}-{i:03d}.jsonl").open("w", encoding="utf-8") for i in range(files)]
    try:
        for _ in range(skip):
            generate_document(topics[rng.integers(len(topics))], rng)
        for n in range(docs):
            topic = topics[rng.integers(len(topics))]
            text, nll = generate_document(topic, rng)
            record = {"text": text, "label": topic.name}
            handles[n % files].write(json.dumps(record, ensure_ascii=False) + "\n")
            n_bytes = len(text.encode("utf-8"))
            total_bits += nll / math.log(2)
            total_bytes += n_bytes
            per_doc.append({"sha256": hashlib.sha256(text.encode()).hexdigest(), "nll_bits": nll / math.log(2)})
    finally:
        for handle in handles:
            handle.close()
    summary = {
        "seed": seed,
        "shift": shift,
        "documents": docs,
        "labels": [t.name for t in topics],
        "true_bits_per_byte": total_bits / total_bytes,
        "bytes": int(total_bytes),
    }
    meta = out / "_meta"
    meta.mkdir(exist_ok=True)
    (meta / "generator.json").write_text(json.dumps(summary, indent=2) + "\n")
    with (meta / "documents.jsonl").open("w") as f:
        f.writelines(json.dumps(d) + "\n" for d in per_doc)
    with (meta / "references.jsonl").open("w") as f:
        f.writelines(json.dumps(pair) + "\n" for pair in reference_pairs(topics, rng))
    return summary


def reference_pairs(topics: list[Topic], rng: np.random.Generator, n: int = 40) -> list[dict[str, str]]:
    """Fresh sentences (never in the corpus) split into a 3-word prompt and its reference continuation."""
    pairs = []
    while len(pairs) < n:
        text, _ = generate_document(topics[rng.integers(len(topics))], rng)
        words = text.split(". ")[0].rstrip(".").split()
        if len(words) >= 6:
            pairs.append({"prompt": " ".join(words[:3]), "reference": " ".join(words[3:]) + "."})
    return pairs


def true_entropy(doc_ids: list[str], folders: list[Path]) -> tuple[float, np.ndarray] | None:
    """Bits the generator spent on the documents it wrote (matched by content id), and which ones matched."""
    known: dict[str, float] = {}
    for folder in folders:
        index = folder / "_meta" / "documents.jsonl"
        if index.is_file():
            for line in index.open():
                record = json.loads(line)
                known[record["sha256"][:16]] = record["nll_bits"]
    mask = np.array([d in known for d in doc_ids], dtype=bool)
    if not mask.any():
        return None
    return float(sum(known[d] for d in doc_ids if d in known)), mask
