"""Data-path throughput: ingest, validate and tokenize MB/s, peak RSS, token-cache reuse.

    python benchmarks/data_throughput.py [--mb 200] [--json]

The corpus is generated: documents from ``lmloop sample-data`` made unique with a serial number,
written to JSONL files of ~20 MB. Phases:

- ingest   streaming read + clean (NFC, whitespace, hashing), no checks;
- validate the Great Expectations file suite on the same frames;
- pipeline the real ``ingest_files`` + gate (read, clean, GX, shards, dedup) end to end;
- tokenize lmloop's token cache vs ``tokenizers.Tokenizer.encode_batch`` on the same texts, same cores;
- cache    a re-run on unchanged data, then one added file.

Peak RSS is read after the lmloop phases, before the baseline holds all texts in memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("LMLOOP_HOME", tempfile.mkdtemp(prefix="lmloop-bench-"))

from lmloop.settings import configure_environment, home  # noqa: E402

configure_environment()

from data_checks import validate_frame  # noqa: E402
from lmloop.config import DataConfig, ValidationConfig  # noqa: E402
from lmloop.corpus import gate  # noqa: E402
from lmloop.ingest import CHUNK_ROWS, _chunks, ingest_files, release_memory, to_frame  # noqa: E402
from lmloop.readers import Columns, read_rows  # noqa: E402
from lmloop.sample_data import write_corpus  # noqa: E402
from lmloop.sources import discover  # noqa: E402
from lmloop.token_cache import tokenize_shards  # noqa: E402
from lmloop.tokenizer import load_tokenizer, train_bpe  # noqa: E402

FILE_MB = 20


def make_corpus(root: Path, megabytes: int) -> list[Path]:
    """~``megabytes`` MB of unique documents in JSONL files of ~20 MB."""
    base = root / "base"
    write_corpus(base, seed=0, docs=20_000, files=1)
    docs = [json.loads(line) for line in (base / "part-000.jsonl").open()]
    files, serial, written = [], 0, 0
    out = root / "corpus"
    out.mkdir()
    while written < megabytes * 1_000_000:
        path = out / f"bench-{len(files):03d}.jsonl"
        with path.open("w") as f:
            size = 0
            while size < FILE_MB * 1_000_000:
                doc = docs[serial % len(docs)]
                line = json.dumps({"text": f"{doc['text']} Serial {serial}.", "label": doc["label"]}) + "\n"
                f.write(line)
                size += len(line)
                serial += 1
        written += path.stat().st_size
        files.append(path)
    return files


RSS_BY_PHASE: dict[str, float] = {}


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn, phase: str | None = None):
    start = time.perf_counter()
    result = fn()
    if phase:
        RSS_BY_PHASE[phase] = round(rss_mb(), 1)
    return result, time.perf_counter() - start


def phase_read_and_validate(folder: Path, data: DataConfig, validation: ValidationConfig) -> tuple[float, float]:
    read_s = validate_s = 0.0
    for source in discover([str(folder)])[0]:
        rows = read_rows(source, Columns())
        while True:
            frame, dt = timed(lambda rows=rows, source=source: _next_frame(rows, source, data))
            read_s += dt
            if frame is None:
                break
            _, dt = timed(lambda frame=frame: validate_frame(frame, validation))
            validate_s += dt
            release_memory(len(frame))
    return read_s, validate_s


def _next_frame(rows, source, data):
    chunk = next(_chunks(rows, CHUNK_ROWS), None)
    return None if chunk is None else to_frame(chunk, source, data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=200, help="corpus size in MB (at least 200 for the issue's figure)")
    parser.add_argument("--json", action="store_true", help="print one JSON line with every figure")
    args = parser.parse_args()
    data, validation = DataConfig(), ValidationConfig(max_duplicate_rate=0.5)
    root = Path(tempfile.mkdtemp(prefix="lmloop-data-bench-"))
    files = make_corpus(root, args.mb)
    folder = files[0].parent
    mb = sum(p.stat().st_size for p in files) / 1e6
    RSS_BY_PHASE["start"] = round(rss_mb(), 1)
    (read_s, validate_s), _ = timed(lambda: phase_read_and_validate(folder, data, validation), "read+validate")
    reports, pipeline_s = timed(
        lambda: ingest_files([str(folder)], data, validation, home().cache / "shards"), "ingest"
    )
    summary, gate_s = timed(lambda: gate(reports, data, validation, root / "out", root / "quarantine"), "gate")
    shards = [r.shard for r in reports if r.status == "accepted"]
    tok_dir = root / "tokenizer"
    sample = (json.loads(line)["text"] for line in files[0].open())
    train_bpe(sample, 2048, 2, tok_dir)
    first, tokenize_s = timed(lambda: tokenize_shards(shards, tok_dir, home().cache / "tokens"), "tokenize")
    rerun, rerun_s = timed(lambda: tokenize_shards(shards, tok_dir, home().cache / "tokens"))
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # one more file: only it is read and tokenized
    extra = root / "extra"
    extra.mkdir()
    (extra / "new.jsonl").write_text(
        "".join(json.dumps({"text": f"an added document {i}"}) + "\n" for i in range(1000))
    )
    added_reports = ingest_files([str(folder), str(extra)], data, validation, home().cache / "shards")
    added = tokenize_shards(
        [r.shard for r in added_reports if r.status == "accepted"], tok_dir, home().cache / "tokens"
    )
    # baseline: tokenizers' encode_batch straight on the same texts, same batch size (10,000), same cores
    backend = load_tokenizer(tok_dir).backend_tokenizer
    texts = [json.loads(line)["text"] for p in files for line in p.open()]

    def baseline() -> None:
        for i in range(0, len(texts), 10_000):
            backend.encode_batch(texts[i : i + 10_000])  # results dropped: measure encoding, not retention

    _, baseline_s = timed(baseline)
    figures = {
        "corpus_mb": round(mb, 1),
        "documents": summary["rows"],
        "ingest_mb_per_s": round(mb / read_s, 2),
        "validate_mb_per_s": round(mb / validate_s, 2),
        "pipeline_mb_per_s": round(mb / (pipeline_s + gate_s), 2),
        "tokenize_mb_per_s": round(mb / tokenize_s, 2),
        "encode_batch_mb_per_s": round(mb / baseline_s, 2),
        "peak_rss_mb": round(peak_rss_mb, 1),
        "peak_rss_mb_after": RSS_BY_PHASE,
        "rerun_tokenize_s": round(rerun_s, 3),
        "rerun_shards_tokenized": rerun["tokenized"],
        "added_file_shards_tokenized": added["tokenized"],
        "ratios": {"tokenize_vs_encode_batch": round(baseline_s / tokenize_s, 3)},
    }
    for key, value in figures.items():
        print(f"{key:>30}: {value}")
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
