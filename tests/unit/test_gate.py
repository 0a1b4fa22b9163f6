"""The data gate on real files: quarantine, ceiling, dedup, leakage and the token cache."""

import hashlib
import json
from pathlib import Path

import pytest

from lmloop.core import settings
from lmloop.core.config import DataConfig, TokenizerConfig, ValidationConfig
from lmloop.data import stages as data_stages
from lmloop.data.gate import DataValidationError
from lmloop.data.state import State
from lmloop.data.values import Corpus
from lmloop.training import stages as training_stages
from tests.bad_inputs import EXPECTED, write_bad_inputs

VALID = ValidationConfig(min_rows=5)


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if not p.is_symlink()}


HOME = settings.home()
STATE = State(HOME.state)


def _corpus(sources: list[str], out: Path, data: DataConfig, validation: ValidationConfig = VALID) -> Corpus:
    ingested = data_stages.ingest(sources, data=data, validation=validation, shards=HOME.cache / "shards", out=out)
    return data_stages.validate(
        ingested, data=data, validation=validation, quarantine=HOME.quarantine / out.name, state=STATE
    )


def _gate(sources: list[str], out: Path, data: DataConfig, validation: ValidationConfig = VALID) -> dict:
    return _corpus(sources, out, data, validation).validation.model_dump()


def load_corpus(root: Path) -> object:
    return Corpus(root=str(root)).load()


def test_every_bad_input_is_named_quarantined_and_left_untouched(tmp_path: Path) -> None:
    bad, outside = tmp_path / "bad", tmp_path / "outside"
    eval_file = write_bad_inputs(bad, outside)
    before = _hashes(bad)
    data = DataConfig(frozen_eval=[str(eval_file)], roots=[str(bad)])
    with pytest.raises(DataValidationError) as err:
        _gate([str(bad)], tmp_path / "out", data)
    message = err.value.details
    rejected = {Path(r["file"]).name: " ".join(r["reasons"]) for r in err.value.report["rejected_files"]}
    assert set(rejected) == set(EXPECTED)
    for name, reason in EXPECTED.items():
        assert name in message
        assert reason in rejected[name], (name, rejected[name])
    assert _hashes(bad) == before, "raw files are never modified"
    quarantined = HOME.quarantine / "out"
    reasons = sorted(p.name for p in quarantined.glob("*.reason.json"))
    assert len(reasons) == len(EXPECTED)
    assert not any("secret" in p.name for p in quarantined.iterdir()), "a file outside the root is never read"
    assert (tmp_path / "out" / "validation.md").read_text().count("` | rejected |") == len(EXPECTED)


def test_a_bad_file_below_the_ceiling_is_quarantined_and_the_run_goes_on(tmp_path: Path, corpus: Path) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    summary = _gate([str(corpus), str(extra)], tmp_path / "out", DataConfig())
    assert summary["success"] and summary["files_rejected"] == 1 and summary["rows"] > 500
    assert [Path(r["file"]).name for r in summary["rejected_files"]] == ["latin1.txt"]
    assert list((HOME.quarantine / "out").glob("*latin1.txt"))


def test_dedup_across_files_and_leakage_are_counted(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    texts = [f"document {i} about things" for i in range(30)]
    for name in ("a.jsonl", "b.jsonl"):
        (docs / name).write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    frozen = tmp_path / "frozen.jsonl"
    frozen.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts[:5]))
    summary = _gate([str(docs)], tmp_path / "out", DataConfig(frozen_eval=[str(frozen)]))
    assert (summary["rows"], summary["duplicates_removed"], summary["leakage_removed"]) == (25, 25, 10)
    assert summary["already_trained_removed"] == 0
    assert set(load_corpus(tmp_path / "out")["text"]).isdisjoint(texts[:5])
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [f["rows_accepted"] for f in manifest["files"]] == [25, 0]


def test_token_cache_reuses_unchanged_shards_and_tokenizes_only_a_new_file(tmp_path: Path, corpus: Path) -> None:
    data, tok = DataConfig(), TokenizerConfig(vocab_size=300)
    out1 = tmp_path / "run1"
    split = _corpus([str(corpus)], out1 / "data", data).with_splits(data.val_fraction, data.test_fraction)
    tokenizer = training_stages.prepare_tokenizer(split, tok, out1).path
    first = training_stages.pack_blocks(
        split, tokenizer, block_size=32, validation=VALID, tokens_cache=HOME.cache / "tokens", out=out1
    ).counts
    assert first["shards_tokenized"] == 3 and first["train_blocks"] > 0
    out2 = tmp_path / "run2"
    new = tmp_path / "new"
    new.mkdir()
    (new / "more.jsonl").write_text("".join(json.dumps({"text": f"fresh text {i}"}) + "\n" for i in range(20)))
    split = _corpus([str(corpus), str(new)], out2 / "data", data).with_splits(data.val_fraction, data.test_fraction)
    reused = training_stages.prepare_tokenizer(split, tok.model_copy(update={"path": tokenizer}), out2)
    second = training_stages.pack_blocks(
        split, reused.path, block_size=32, validation=VALID, tokens_cache=HOME.cache / "tokens", out=out2
    ).counts
    assert (second["shards_tokenized"], second["shards_from_cache"]) == (1, 3)


def test_a_fully_leaked_file_is_rejected_and_the_corpus_stays_aligned(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    leaked = [f"evaluation document {i}" for i in range(10)]
    (docs / "a_leaks.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in leaked))
    (docs / "b_good.jsonl").write_text("".join(json.dumps({"text": f"training text {i}"}) + "\n" for i in range(30)))
    frozen = tmp_path / "frozen.jsonl"
    frozen.write_text("".join(json.dumps({"text": t}) + "\n" for t in leaked))
    data = DataConfig(frozen_eval=[str(frozen)])
    summary = _gate([str(docs)], tmp_path / "out", data, VALID.model_copy(update={"max_failed_file_share": 0.5}))
    assert [Path(r["file"]).name for r in summary["rejected_files"]] == ["a_leaks.jsonl"]
    assert sorted(load_corpus(tmp_path / "out")["text"]) == sorted(f"training text {i}" for i in range(30))


def test_documents_already_trained_on_are_dropped_when_asked(tmp_path: Path) -> None:
    STATE.trained_store.unlink(missing_ok=True)
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    old = [f"old document {i}" for i in range(40)]
    (first / "a.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in old))
    split = _corpus([str(first)], tmp_path / "out1", DataConfig()).with_splits(0.05, 0.10)
    n_trained = STATE.record_training_data(split, "test-slice")
    new = [f"new document {i}" for i in range(10)]
    (second / "b.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in old + new))
    summary = _gate([str(second)], tmp_path / "out2", DataConfig(dedup_against_trained=True))
    assert summary["already_trained_removed"] == n_trained and summary["rows"] == 50 - n_trained
    assert _gate([str(second)], tmp_path / "out3", DataConfig())["rows"] == 50, "off by default"
    STATE.trained_store.unlink()
