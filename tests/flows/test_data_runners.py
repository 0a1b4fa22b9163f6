"""The data stage's per-file work on every task runner: in this process, a local process pool (with a
worker killed mid-file), and a real Dask ``LocalCluster`` of 2 worker processes. The shards, digests,
splits and token ids are the same whatever ran them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from prefect import flow

from lmloop.core.config import DataConfig, TokenizerConfig, ValidationConfig
from lmloop.core.settings import Home
from lmloop.core.values import Run
from lmloop.data.sample_data import write_corpus
from lmloop.registry import tracking
from lmloop.training.tokenizer import train_bpe
from lmloop.training.values import TokenizerRef
from tasks.data import ingest_data, split_data, validate_data
from tasks.tokenize import tokenize_and_pack

pytestmark = pytest.mark.slow
VALIDATION = ValidationConfig(min_rows=10)


@flow(name="data-stage")
def data_stage(sources: list[str], data: DataConfig, tokenizer: str, root: str, run_id: str) -> dict:
    run = Run(run_id=run_id, home=Home(root=root))
    ingested = ingest_data(sources, data=data, validation=VALIDATION, run=run)
    corpus = validate_data(ingested, data=data, validation=VALIDATION, run=run)
    corpus = split_data(corpus, data=data, sources=sources, run=run, log_datasets=False)
    ref = TokenizerRef(path=tokenizer)
    blocks = tokenize_and_pack(corpus, ref, block_size=32, validation=VALIDATION, run=run, data=data)
    return {"corpus": corpus.model_dump(), "counts": blocks.counts, "ingested": ingested.dir}


def _digest(paths: list[Path]) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(paths)}


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("raw")
    write_corpus(root / "big", seed=3, docs=3000, files=3)  # ~290 KB each: one unit per file
    write_corpus(root / "small", seed=4, docs=90, files=3)  # small files: one unit together
    rows = (json.loads(line) for f in sorted(root.rglob("*.jsonl")) for line in f.open())
    texts = (r["text"] for r in rows if isinstance(r.get("text"), str))
    tokenizer = root / "tokenizer"
    train_bpe(texts, TokenizerConfig().vocab_size, 2, out_dir=tokenizer)
    return root, str(tokenizer)


def _run(raw: tuple[Path, str], home: Path, data: DataConfig) -> dict:
    root, tokenizer = raw
    run_id = tracking.start_run("data-runners", "data-stage")
    result = data_stage([str(root / "big"), str(root / "small")], data, tokenizer, str(home), run_id)
    tracking.finish_run(run_id, "FINISHED")
    corpus = Path(result["corpus"]["root"])
    cache = home / "cache"
    return {
        "reports": [
            {k: r[k] for k in ("sha256", "status", "rows_read", "rows_accepted", "near_duplicates")}
            | {"shard": r["shard"] and Path(r["shard"]).name}
            for r in json.loads((Path(result["ingested"]) / "files.json").read_text())
        ],
        "validation": {k: v for k, v in result["corpus"]["validation"].items()},
        "digests": result["corpus"]["digests"],
        "index": _digest(list(corpus.glob("*.npy"))),
        "shards": _digest([p for p in cache.rglob("shards/*") if p.suffix not in (".json", ".partial")]),
        "tokens": _digest([p for p in cache.rglob("tokens/*/*.arrow") if not p.name.startswith("cache-")]),
        "units": result["counts"]["shards_tokenized"],
        "task_runner": tracking.client().get_run(run_id).data.tags["lmloop.data.task_runner"],
    }


def test_every_runner_gives_the_same_shards_splits_and_tokens(prefect_harness, raw, tmp_path, monkeypatch) -> None:
    inline = _run(raw, tmp_path / "thread", DataConfig(task_runner="thread"))
    assert inline["task_runner"] == "thread" and inline["units"] == 6  # one tokenize unit per shard
    assert sum(r["status"] == "accepted" for r in inline["reports"]) == 6 and inline["tokens"]

    # a worker dies (SIGKILL) right after writing a shard and before its report: the unit runs again
    marker = tmp_path / "crashed-once"
    monkeypatch.setenv("LMLOOP_CRASH_AT", "ingest-shard-written")
    monkeypatch.setenv("LMLOOP_CRASH_ONCE", str(marker))
    pool = _run(raw, tmp_path / "process", DataConfig(task_runner="process", workers=2))
    monkeypatch.delenv("LMLOOP_CRASH_AT")
    assert marker.exists(), "a worker was killed mid-unit"
    assert pool["task_runner"] == "process"

    dask = _run(raw, tmp_path / "dask", DataConfig(task_runner="dask", workers=2))
    assert dask["task_runner"] == "dask"

    for other in (pool, dask):
        for key in ("reports", "validation", "digests", "index", "shards", "tokens", "units"):
            assert other[key] == inline[key], key
    # the killed worker (and the pool's other worker, stopped with it) may leave a private .partial file;
    # nothing ever reads one: every report names a finished shard
    reports = json.loads((next((tmp_path / "process" / "work").rglob("files.json"))).read_text())
    assert all(r["shard"].endswith(".arrow") and Path(r["shard"]).exists() for r in reports if r["shard"])
