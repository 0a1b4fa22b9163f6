"""Continual learning state and helpers: what is new, what to replay, what to judge on.

Durable state under ``LMLOOP_HOME/state/``:
- ``watermark.json``: content hashes of every landing file a cycle has consumed (new = not in it);
- ``eval_slices/<name>.jsonl``: frozen eval slices — the test split of the first training and of
  every later batch; challenger and champion are always judged on all of them;
- ``corpora.json``: the data folders models trained on, for replay samples.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from datasets import concatenate_datasets

from lmloop.corpus import load_split, split_index
from lmloop.data import sha256_uri
from lmloop.evaluate import DocScores, score_documents
from lmloop.settings import cache_dir, state_dir
from lmloop.sources import discover
from lmloop.token_cache import load_tokens, tokenize_shards


def _read(path: Path, default: Any) -> Any:
    return json.loads(path.read_text()) if path.exists() else default


def _write(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    tmp.replace(path)


def new_files(landing: Path) -> list[dict[str, str]]:
    """Landing files whose content hash no cycle has consumed yet."""
    if not landing.exists():
        return []
    seen = _read(state_dir() / "watermark.json", {})
    files, _ = discover([str(landing)])
    fresh = []
    for source in files:
        sha, _ = sha256_uri(source.uri)
        if sha not in seen:
            fresh.append({"uri": source.uri, "sha256": sha})
    return fresh


def advance_watermark(files: list[dict[str, str]], batch: str) -> None:
    seen = _read(state_dir() / "watermark.json", {})
    seen |= {f["sha256"]: {"uri": f["uri"], "batch": batch} for f in files}
    _write(state_dir() / "watermark.json", seen)


def slices_dir() -> Path:
    return state_dir() / "eval_slices"


def freeze_slice(data_dir: str | Path, name: str) -> Path:
    """The corpus' test split becomes a frozen eval slice for every later cycle."""
    test = load_split(data_dir, "test").select_columns(["text", "label", "doc_id"])
    path = slices_dir() / f"{name}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        f.writelines(json.dumps(row) + "\n" for row in test)
    return path


def frozen_slices() -> dict[str, Path]:
    return {p.stem: p for p in sorted(slices_dir().glob("*.jsonl"))}


def remember_corpus(data_dir: str | Path) -> None:
    corpora = _read(state_dir() / "corpora.json", [])
    if str(data_dir) not in corpora:
        _write(state_dir() / "corpora.json", [*corpora, str(data_dir)])


def replay_tokens(tokenizer_dir: str, documents: int, seed: int) -> tuple[Any, list[dict[str, Any]]]:
    """``documents`` training documents sampled from earlier corpora, as token ids (from the token cache),
    and per corpus how many were drawn."""
    parts, names = [], []
    for data_dir in _read(state_dir() / "corpora.json", []):
        shards = json.loads((Path(data_dir) / "corpus.json").read_text())["shards"]
        cache = tokenize_shards(shards, tokenizer_dir, cache_dir() / "tokens")
        tokens = load_tokens(cache["paths"]).select(np.load(Path(data_dir) / "keep.npy"))
        parts.append(tokens.select(split_index(data_dir, "train")).select_columns(["input_ids"]))
        names.append(data_dir)
    if not parts or documents <= 0:
        return None, []
    pool = concatenate_datasets(parts)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(pool), size=min(documents, len(pool)), replace=False)
    owner = np.searchsorted(np.cumsum([len(p) for p in parts]), chosen, side="right")
    drawn = [
        {"corpus": name, "documents": int((owner == i).sum()), "pool": len(parts[i])} for i, name in enumerate(names)
    ]
    return pool.select(chosen), drawn


def score_slices(
    model: Any, tokenizer: Any, slices: dict[str, list[str]], block_size: int, batch_size: int
) -> dict[str, DocScores]:
    return {
        name: score_documents(model, tokenizer, texts, block_size, batch_size=batch_size)
        for name, texts in slices.items()
    }


def slice_texts(path: Path) -> list[str]:
    return [json.loads(line)["text"] for line in path.open() if line.strip()]


def pack_mix(
    data_dir: str, tokenizer_dir: str, block_size: int, replay_ratio: float, seed: int, out: Path
) -> dict[str, Any]:
    """Training mix = the new batch's training split + ``replay_ratio`` x as many old training documents."""
    from lmloop.packing import pack

    shards = json.loads((Path(data_dir) / "corpus.json").read_text())["shards"]
    cache = tokenize_shards(shards, tokenizer_dir, cache_dir() / "tokens")
    tokens = load_tokens(cache["paths"]).select(np.load(Path(data_dir) / "keep.npy")).select_columns(["input_ids"])
    new = tokens.select(split_index(data_dir, "train"))
    replay, drawn = replay_tokens(tokenizer_dir, int(len(new) * replay_ratio), seed)
    mix = concatenate_datasets([new, replay]) if replay is not None else new
    pack(mix.shuffle(seed=seed), block_size).save_to_disk(str(out / "blocks" / "train"))
    pack(tokens.select(split_index(data_dir, "validation")), block_size).save_to_disk(
        str(out / "blocks" / "validation")
    )
    counts = {"new_documents": len(new), "replay_documents": 0 if replay is None else len(replay)}
    manifest = {
        "new": {"corpus": str(data_dir), "documents": len(new)},
        "replay": drawn,
        "replay_ratio": replay_ratio,
        "seed": seed,
        **counts,
    }
    path = out / "mixture.json"
    path.write_text(json.dumps(manifest, indent=2))
    return {"blocks": str(out / "blocks"), "manifest": str(path), **counts}


def labelled_documents(data_dir: str, batch: str) -> tuple[list[str], list[str]]:
    """Every labelled document of the frozen slices and the new batch's test split."""
    rows = [json.loads(line) for path in frozen_slices().values() for line in path.open() if line.strip()]
    test = load_split(data_dir, "test")
    rows += [{"text": t, "label": lab} for t, lab in zip(test["text"], test["label"], strict=True)]
    labelled = [(r["text"], str(r["label"])) for r in rows if r.get("label") not in (None, "")]
    return [t for t, _ in labelled], [lab for _, lab in labelled]


def probe_comparison(
    models: dict[str, Any], tokenizer: Any, texts: list[str], labels: list[str], block: int, allowed: dict[str, float]
) -> tuple[dict[str, tuple[float, float, float]], dict[str, Any]]:
    """Gate criterion (c): the same linear probe (same folds) on each model's features."""
    from lmloop.classify import embed, probe_metrics

    metrics = {role: probe_metrics(embed(m, tokenizer, texts, block), labels) for role, m in models.items()}
    compared = {
        metric: (metrics["champion"][metric], metrics["challenger"][metric], drop) for metric, drop in allowed.items()
    }
    summary = {role: {k: m[k] for k in ("accuracy", "macro_f1")} for role, m in metrics.items()}
    return compared, {"documents": len(texts), **summary}


def judge(
    champion_dir: str,
    challenger_dir: str,
    data_dir: str,
    batch: str,
    margin: float,
    tolerance: float,
    samples: int,
    classification: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Score champion and challenger on the new batch's test split and every frozen slice; decide.
    ``classification`` (metric -> allowed drop) adds the linear-probe criterion."""
    from transformers import AutoModelForCausalLM

    from lmloop.gate import decide, report_markdown
    from lmloop.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(challenger_dir)
    texts = {batch: list(load_split(data_dir, "test")["text"])}
    texts |= {name: slice_texts(path) for name, path in frozen_slices().items()}
    block = AutoModelForCausalLM.from_pretrained(challenger_dir).config.max_position_embeddings
    models = {
        role: AutoModelForCausalLM.from_pretrained(path)
        for role, path in (("champion", champion_dir), ("challenger", challenger_dir))
    }
    scores = {role: score_slices(model, tokenizer, texts, block, 32) for role, model in models.items()}
    old = [(name, scores["champion"][name], scores["challenger"][name]) for name in texts if name != batch]
    compared, probe = None, {}
    if classification:
        docs, labels = labelled_documents(data_dir, batch)
        compared, probe = probe_comparison(models, tokenizer, docs, labels, block, classification)
    new = (batch, scores["champion"][batch], scores["challenger"][batch])
    decision = decide(new, old, margin, tolerance, compared, samples=samples)
    slices = {
        name: {
            "champion_bits_per_byte": scores["champion"][name].bits_per_byte(),
            "challenger_bits_per_byte": scores["challenger"][name].bits_per_byte(),
            "documents": len(t),
        }
        for name, t in texts.items()
    }
    return {
        "promote": decision.promote,
        "reason": decision.reason,
        "slices": slices,
        "decision": decision.to_dict(),
        "probe": probe,
        "report": report_markdown(decision, None, "?"),
    }
