"""Data-stage throughput on 1 and N workers: MB/s, peak RSS per worker, the re-run on unchanged data.

    python benchmarks/data_throughput.py [--mb 1024] [--workers 1 2] [--json]

The corpus is generated: the documents of ``lmloop sample-data``, each copy's words shuffled by its
serial number (so copies are neither exact nor near duplicates), in JSONL files of ~20 MB. For each
worker count, on a fresh cache, the data stage runs as the training flow runs it — inside a Prefect
flow, per-unit ingest (read, clean, GX file suite, shard, MinHash signatures) and per-shard
tokenization mapped over the task runner (in this process, then local process pools of each N), the
corpus gate (dedup, near-duplicates, leakage) in between:

- ``pipeline_mb_per_s``: ingest + gate + tokenize, raw MB over wall seconds (at the largest N;
  ``pipeline_mb_per_s_by_workers`` has each N, ``ratios.workers_N_vs_1`` the speed-up, and
  ``workers_N_vs_in_process`` against the single-process path, whose tokenizer already runs on every core);
- ``speedup_vs_default``: the headline, N workers against the default in-process path (``baselines`` names
  each ratio's baseline);
- ``peak_rss_mb_per_worker``: the largest worker process's RSS, sampled (psutil) while it runs (pool workers
  only: not a temporary Prefect server);
- ``near_dups_cost``: the in-process run with near-duplicate detection off, and the slowdown it costs;
- ``rerun_s_per_gb``: the whole stage again on unchanged data (nothing recomputed: every file's report,
  shard and token ids come from the cache).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("LMLOOP_HOME", tempfile.mkdtemp(prefix="lmloop-bench-"))

from lmloop.core.settings import configure_environment  # noqa: E402

configure_environment()

from prefect import flow  # noqa: E402

from lmloop.core.config import DataConfig, ValidationConfig  # noqa: E402
from lmloop.data.gate import gate  # noqa: E402
from lmloop.data.planning import plan_ingest  # noqa: E402
from lmloop.data.sample_data import write_corpus  # noqa: E402
from lmloop.training import token_cache  # noqa: E402
from lmloop.training.tokenizer import train_bpe  # noqa: E402
from tasks.runners import data_workers, ingest_unit, map_units  # noqa: E402
from tasks.tokenize import tokenize_unit  # noqa: E402

FILE_MB = 20


def make_corpus(root: Path, megabytes: int) -> list[Path]:
    """~``megabytes`` MB of distinct documents in JSONL files of ~20 MB."""
    base = root / "base"
    write_corpus(base, seed=0, docs=20_000, files=1)
    docs = [json.loads(line) for line in (base / "part-000.jsonl").open()]
    docs = [(d["text"].split(), d.get("label")) for d in docs if isinstance(d.get("text"), str)]
    files, serial, written = [], 0, 0
    out = root / "corpus"
    out.mkdir()
    while written < megabytes * 1_000_000:
        path = out / f"bench-{len(files):03d}.jsonl"
        with path.open("w") as f:
            size = 0
            while size < FILE_MB * 1_000_000:
                words, label = docs[serial % len(docs)]
                words = words[:]
                random.Random(serial).shuffle(words)
                line = json.dumps({"text": " ".join(words), "label": label}) + "\n"
                f.write(line)
                size += len(line)
                serial += 1
        written += path.stat().st_size
        files.append(path)
    return files


@flow(name="data-stage-benchmark")
def data_stage(folder: str, data: DataConfig, validation: ValidationConfig, cache: str, tokenizer: str) -> dict:
    """The training flow's data stage without MLflow: plan, mapped ingest, gate, mapped tokenize."""
    cache_root, kind = Path(cache), data.task_runner
    with data_workers():  # as the training flow: one pool for ingest and tokenize
        return _stages(folder, data, validation, cache_root, kind, tokenizer)


def _stages(folder: str, data: DataConfig, validation: ValidationConfig, cache_root: Path, kind: str, tokenizer: str) -> dict:  # fmt: skip
    times = {}
    start = time.perf_counter()
    plan = plan_ingest([folder], data, validation, cache=cache_root / "shards")
    done = map_units(
        ingest_unit, plan.units, kind, data, data=data, validation=validation, cache=cache_root / "shards",
        docs=cache_root / "docs",
    )  # fmt: skip
    for i, reports in enumerate(done):
        plan.fill(i, reports)
    times["ingest_s"] = time.perf_counter() - start
    start = time.perf_counter()
    out = cache_root / f"corpus-{time.time_ns()}"
    corpus = gate(plan.result(), data=data, validation=validation, out=out, quarantine_dir=out / "q")
    times["gate_s"] = time.perf_counter() - start
    start = time.perf_counter()
    pending = token_cache.pending_shards(corpus.shards(), tokenizer, cache_root / "tokens")
    map_units(tokenize_unit, pending, kind, data, tokenizer=tokenizer, cache_root=cache_root / "tokens")
    times["tokenize_s"] = time.perf_counter() - start
    return {**times, "units": len(plan.units), "shards_tokenized": len(pending), "rows": corpus.validation.rows,
            "near_duplicates_removed": corpus.validation.near_duplicates_removed}  # fmt: skip


def _is_worker(process: object) -> bool:
    """A process-pool worker (multiprocessing's spawn or fork), not another child such as a Prefect server."""
    cmdline = " ".join(process.cmdline())  # type: ignore[attr-defined]
    return "multiprocessing" in cmdline and "uvicorn" not in cmdline and " server " not in f" {cmdline} "


class WorkerMemory:
    """The largest RSS of a worker process (the process pool's workers only: a temporary Prefect server or any
    other child is not a worker) while the block runs, sampled every 0.2 s with psutil."""

    def __enter__(self) -> WorkerMemory:
        import threading

        import psutil

        self.peak_mb, self._stop = 0.0, threading.Event()
        me = psutil.Process()

        def sample() -> None:
            while not self._stop.wait(0.2):
                for child in me.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        if _is_worker(child):
                            self.peak_mb = max(self.peak_mb, child.memory_info().rss / 1e6)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = round(self.peak_mb, 1)


def run(folder: Path, data: DataConfig, cache: Path, tokenizer: Path, mb: float) -> dict:
    validation = ValidationConfig(max_duplicate_rate=0.5)
    result = data_stage(str(folder), data, validation, str(cache), str(tokenizer))
    total = result["ingest_s"] + result["gate_s"] + result["tokenize_s"]
    return {**result, "mb_per_s": round(mb / total, 2), "seconds": round(total, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=1024, help="corpus size in MB (1 GB for the issue's figures)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--skip-near-off", action="store_true", help="skip the run without near-duplicates")
    parser.add_argument("--json", action="store_true", help="print one JSON line with every figure")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="lmloop-data-bench-"))
    files = make_corpus(root, args.mb)
    mb = sum(p.stat().st_size for p in files) / 1e6
    tokenizer = root / "tokenizer"
    train_bpe((json.loads(line)["text"] for line in files[0].open()), 2048, 2, out_dir=tokenizer)
    inline = run(files[0].parent, DataConfig(task_runner="thread"), root / "cache-inline", tokenizer, mb)
    inline_rss = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(f"in this process: {inline}", flush=True)
    by_workers, rss = {}, {}
    for n in args.workers:
        with WorkerMemory() as memory:
            data = DataConfig(task_runner="process", workers=n)
            by_workers[str(n)] = run(files[0].parent, data, root / f"cache-{n}", tokenizer, mb)
        rss[str(n)] = memory.peak_mb
        print(f"{n} worker process(es): {by_workers[str(n)]}", flush=True)
    if not args.skip_near_off:
        off = run(files[0].parent, DataConfig(task_runner="thread", near_dup_threshold=None), root / "cache-off", tokenizer, mb)  # fmt: skip
        print(f"near-duplicates off, in this process: {off}", flush=True)
    top = str(max(args.workers))
    again = run(files[0].parent, DataConfig(task_runner="process", workers=int(top)), root / f"cache-{top}", tokenizer, mb)  # fmt: skip
    figures = {
        "corpus_mb": round(mb, 1),
        "documents": by_workers[top]["rows"],
        "pipeline_mb_per_s": by_workers[top]["mb_per_s"],
        "pipeline_mb_per_s_in_process": inline["mb_per_s"],
        "pipeline_mb_per_s_by_workers": {n: r["mb_per_s"] for n, r in by_workers.items()},
        "seconds_by_phase": {n: {k: round(r[k], 1) for k in ("ingest_s", "gate_s", "tokenize_s")} for n, r in {"in_process": inline, **by_workers}.items()},
        "peak_rss_mb_per_worker": rss,
        "peak_rss_mb_in_process": inline_rss,
        "near_duplicates_removed": inline["near_duplicates_removed"],
        "rerun_s_per_gb": round(again["seconds"] / (mb / 1000), 2),
        "rerun_units_recomputed": again["units"] + again["shards_tokenized"],
        # the headline: N workers against what a user runs by default (the in-process path: task_runner auto picks
        # it below data.parallel_min_mb, and its tokenizer already uses every core)
        "speedup_vs_default": round(by_workers[top]["mb_per_s"] / inline["mb_per_s"], 2),
        "ratios": {
            **{f"workers_{n}_vs_1": round(r["mb_per_s"] / by_workers[min(by_workers, key=int)]["mb_per_s"], 2) for n, r in by_workers.items()},
            f"workers_{top}_vs_in_process": round(by_workers[top]["mb_per_s"] / inline["mb_per_s"], 2),
        },
        "baselines": {
            "speedup_vs_default": "the default in-process path (task_runner auto below data.parallel_min_mb)",
            "workers_N_vs_1": "a process pool of one worker (tokenizer single-threaded in workers)",
        },
    }  # fmt: skip
    if not args.skip_near_off:
        figures["near_dups_cost"] = {"mb_per_s_off": off["mb_per_s"], "mb_per_s_on": inline["mb_per_s"], "slowdown": round(1 - inline["mb_per_s"] / off["mb_per_s"], 3)}  # fmt: skip
    for key, value in figures.items():
        print(f"{key:>30}: {value}")
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
