"""The continual cycle's library: what is new, the replay mix, and the judgement of a challenger.

Durable records (watermark, frozen slices, replay corpora, trained ids) live in :class:`lmloop.data.state.State`;
token ids come from the content-addressed cache. Every folder is an argument.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from datasets import concatenate_datasets

from lmloop.continual.journal import CycleJournal
from lmloop.core import locks
from lmloop.core.config import PipelineConfig
from lmloop.core.errors import NoModel
from lmloop.core.files import write_json
from lmloop.core.settings import Home
from lmloop.data.state import State
from lmloop.data.values import Corpus
from lmloop.training.packing import pack
from lmloop.training.token_cache import corpus_tokens
from lmloop.training.values import BaseModelRef, Blocks


def current_champion(name: str) -> str | None:
    """The version ``@champion`` of ``name`` points at; None only when the alias does not exist (any other
    registry error is raised: it never reads as "no champion")."""
    from lmloop.registry import model_registry

    return model_registry.alias_version(name, "champion")


def require_champion(name: str) -> str:
    """``@champion`` of ``name``; a user's mistake (no champion yet: train one first) when there is none."""
    champion = current_champion(name)
    if champion is None:
        raise NoModel(f"{name!r} has no champion yet: train one first (lmloop run), then cycles continue it")
    return champion


def cycle_config(config: PipelineConfig, state_root: Path, batch: str) -> PipelineConfig:
    """The cycle's configuration: new data is deduplicated against everything trained on and stripped of frozen-slice documents (but
    for the batch's own slice, frozen already if an earlier attempt at this cycle crashed after that)."""
    frozen = [str(p) for slice_name, p in State(state_root).frozen_slices().items() if slice_name != batch]
    data = config.data.model_copy(update={"dedup_against_trained": True, "frozen_eval": frozen})
    return config.model_copy(update={"data": data})


@contextmanager
def one_at_a_time(batch_key: str, home: Home) -> Iterator[None]:
    """Cycles on the same batch (two ``lmloop continual`` commands, or the schedule and a person, that found
    the same new files) run one after the other: the later one then finds the batch consumed and ends as
    "nothing new", instead of judging documents the first one has just recorded as trained on."""
    lock = home.state / "locks" / f"cycle-{batch_key[:16]}.db"
    with locks.exclusive(f"cycle:{batch_key}", lock, timeout=7 * 24 * 3600.0):  # a cycle may take hours
        yield


def cycle_parent(name: str, batch: str, state: State) -> tuple[str, bool]:
    """The version this cycle warm-starts from and is judged against: ``@champion`` at its first attempt,
    recorded, so a rerun after a crash (even after its own promotion) starts from the same parent. When the
    champion moved since and the cycle was not judged yet (a rollback, another cycle's promotion), the cycle
    is re-planned from the champion now (the old parent may be gone, or rejected by a person). Returns the
    parent and whether the cycle was re-planned (what it trained so far came from another parent)."""
    journal = CycleJournal.of(state, batch)
    champion = require_champion(name)
    parent = journal.parent
    if parent is not None and (parent == champion or journal.decision is not None):
        return parent, False
    journal.planned(state, champion)
    return champion, parent is not None


def replay_tokens(
    state: State, tokenizer_dir: str, documents: int, *, seed: int, tokens_cache: Path
) -> tuple[Any, list[dict[str, Any]]]:
    """``documents`` training documents sampled from earlier corpora, as token ids (from the token cache),
    and per corpus how many were drawn."""
    parts, names = [], []
    for corpus in state.corpora():
        tokens, _ = corpus_tokens(corpus, tokenizer_dir, tokens_cache)
        parts.append(tokens.select(corpus.split_index("train")).select_columns(["input_ids"]))
        names.append(corpus.root)
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


def pack_mix(
    corpus: Corpus,
    base: BaseModelRef,
    *,
    replay_ratio: float,
    seed: int,
    state: State,
    tokens_cache: Path,
    out: Path,
) -> Blocks:
    """Training mix = the new batch's training split + ``replay_ratio`` x as many old training documents,
    packed at the base model's block size; ``counts`` carries the mixture and ``mixture.json``'s path."""
    tokens, _ = corpus_tokens(corpus, base.tokenizer_dir, tokens_cache)
    tokens = tokens.select_columns(["input_ids"])
    new = tokens.select(corpus.split_index("train"))
    replay, drawn = replay_tokens(
        state, base.tokenizer_dir, int(len(new) * replay_ratio), seed=seed, tokens_cache=tokens_cache
    )
    mix = concatenate_datasets([new, replay]) if replay is not None else new
    block = base.block_size
    blocks = Blocks(path=str(out / "blocks"), block_size=block, tokenizer=base.tokenizer_dir)
    pack(mix.shuffle(seed=seed), block).save_to_disk(str(blocks.split_path("train")))
    pack(tokens.select(corpus.split_index("validation")), block).save_to_disk(str(blocks.split_path("validation")))
    counts = {"new_documents": len(new), "replay_documents": 0 if replay is None else len(replay)}
    manifest = {"new": {"corpus": corpus.root, "documents": len(new)}, "replay": drawn}
    path = write_json(out / "mixture.json", {**manifest, "replay_ratio": replay_ratio, "seed": seed, **counts})
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return blocks.model_copy(update={"counts": {**counts, "manifest": str(path), "manifest_sha256": digest}})
