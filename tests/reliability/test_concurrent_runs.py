"""Two runs on the same data in one home at once: each writes its own temporary files and renames them
atomically, so neither trips over the other's half-written shard (regression: ``.partial -> .arrow``)."""

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from lmloop.config import DataConfig, ValidationConfig


def _ingest_and_tokenize(sources: list[str], cache: str, out: str, tokenizer: str) -> list[str]:
    from lmloop import stages
    from lmloop.token_cache import tokenize_shards

    ingested = stages.ingest(
        sources,
        data=DataConfig(),
        validation=ValidationConfig(min_rows=1),
        shards=Path(cache) / "shards",
        out=Path(out),
    )
    shards = [r.shard for r in ingested.reports() if r.status == "accepted"]
    return sorted(tokenize_shards(shards, tokenizer, Path(cache) / "tokens")["paths"]) + sorted(shards)


def test_two_runs_on_the_same_files_at_once(tmp_path: Path) -> None:
    from lmloop.tokenizer import train_bpe

    data = tmp_path / "data"
    data.mkdir()
    for f in range(6):
        rows = [{"text": f"file {f} document {i} " + "words " * (i % 40)} for i in range(3000)]
        (data / f"part-{f}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tokenizer = tmp_path / "tokenizer"
    train_bpe([f"document {i} words" for i in range(200)], 300, 1, tokenizer)
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
