"""Two runs on the same data in one home at once: each writes its own temporary files and renames them
atomically, so neither trips over the other's half-written shard (regression: ``.partial -> .arrow``)."""

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from lmloop.core.config import DataConfig, ValidationConfig


def _ingest_and_tokenize(sources: list[str], cache: str, out: str, tokenizer: str) -> list[str]:
    from lmloop.data import stages as data_stages
    from lmloop.training.token_cache import tokenize_shards

    ingested = data_stages.ingest(
        sources,
        data=DataConfig(),
        validation=ValidationConfig(min_rows=1),
        shards=Path(cache) / "shards",
        out=Path(out),
    )
    shards = [r.shard for r in ingested.reports() if r.status == "accepted"]
    return sorted(tokenize_shards(shards, tokenizer, Path(cache) / "tokens")["paths"]) + sorted(shards)


def test_two_runs_on_the_same_files_at_once(tmp_path: Path) -> None:
    from lmloop.training.tokenizer import train_bpe

    data = tmp_path / "data"
    data.mkdir()
    for f in range(6):
        rows = [{"text": f"file {f} document {i} " + "words " * (i % 40)} for i in range(3000)]
        (data / f"part-{f}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tokenizer = tmp_path / "tokenizer"
    train_bpe([f"document {i} words" for i in range(200)], 300, 1, out_dir=tokenizer)
    cache = tmp_path / "cache"
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=context) as pool:
        jobs = [
            pool.submit(_ingest_and_tokenize, [str(data)], str(cache), str(tmp_path / f"run{i}"), str(tokenizer))
            for i in range(2)
        ]
        first, second = (job.result(timeout=600) for job in jobs)
    assert first == second and len(first) == 12, "the same shards and token files for both runs"
    assert all(Path(p).exists() for p in first)
    assert not list(cache.rglob("*.partial")), "no temporary file left behind"


def test_a_truncated_cache_entry_is_rebuilt_not_read(tmp_path: Path) -> None:
    """A shard or token file cut short (a full disk, a killed copy) broke every later run with "Expected to be
    able to read N bytes" and no file named; entries are sealed with their size and hash when written, and one
    that no longer matches is rebuilt."""
    from lmloop.data.ingest import process_file
    from lmloop.data.sources import discover
    from lmloop.training.token_cache import tokenize_shard, tokenize_shards
    from lmloop.training.tokenizer import train_bpe

    data = tmp_path / "data"
    data.mkdir()
    (data / "a.jsonl").write_text("".join(json.dumps({"text": f"document {i} words " * 5}) + "\n" for i in range(400)))
    (source,), _ = discover([str(data)])
    validation = ValidationConfig(min_rows=1)
    first = process_file(source, DataConfig(), validation, cache=tmp_path / "shards")
    shard = Path(first.shard)
    whole = shard.read_bytes()
    shard.write_bytes(whole[: len(whole) // 2])
    again = process_file(source, DataConfig(), validation, cache=tmp_path / "shards")
    assert again.rows_accepted == first.rows_accepted and shard.read_bytes() == whole, "read again, not reused"

    tokenizer = tmp_path / "tokenizer"
    train_bpe([f"document {i} words" for i in range(200)], 300, 1, out_dir=tokenizer)
    (tokens,) = tokenize_shards([str(shard)], tokenizer, tmp_path / "tokens")["paths"]
    cached = Path(tokens).read_bytes()
    Path(tokens).write_bytes(cached[:-100])
    from lmloop.training.token_cache import encoder

    path, was_cached = tokenize_shard(str(shard), encoder(tokenizer), Path(tokens).parent)
    assert not was_cached and Path(path).read_bytes() == cached
    assert tokenize_shard(str(shard), encoder(tokenizer), Path(tokens).parent)[1], "a sealed entry is reused"


def _close_many(root: str, worker: int, rounds: int) -> None:
    """One `lmloop continual` command's share of cycle closes: its own files into the watermark, its own
    corpus into the replay sources, its own document ids into the trained store, over and over."""
    import numpy as np

    from lmloop.data.dedup import record_trained
    from lmloop.data.state import State
    from lmloop.data.values import Corpus

    state = State(root)
    for r in range(rounds):
        name = f"w{worker}-r{r}"
        state.advance_watermark([{"sha256": name, "uri": f"file:///landing/{name}"}], f"batch-{name}")
        state.remember_corpus(Corpus(root=f"/corpora/{name}"))
        with state.locked():
            record_trained(state.trained_store, np.array([worker * 1000 + r], dtype=np.uint64))


def test_concurrent_cycle_closes_lose_no_update(tmp_path: Path) -> None:
    """Before: the watermark, corpora.json and the trained ids were read, changed and rewritten without a lock
    (and the ids through one fixed temporary name): four processes closing cycles at once lost updates."""
    from lmloop.data.state import State

    workers, rounds = 4, 12
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_close_many, [str(tmp_path)] * workers, range(workers), [rounds] * workers))
    state = State(tmp_path)
    names = {f"w{w}-r{r}" for w in range(workers) for r in range(rounds)}
    assert set(state.watermark()) == names, "every file consumed, none lost"
    assert {Path(c.root).name for c in state.corpora()} == names, "every corpus a replay source"
    assert len(state.trained_ids()) == workers * rounds, "every trained id kept"
    assert not list(tmp_path.glob("*.partial")), "no temporary file left behind"
