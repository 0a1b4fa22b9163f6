"""A warm start keeps the architecture of the model it starts from; a config that contradicts it is refused."""

from pathlib import Path

import pytest

from lmloop.core.config import ConfigError, ModelConfig
from lmloop.core.presets import load_config
from lmloop.registry.runs import RunIndex, run_key
from lmloop.training.model import build_causal_lm
from lmloop.training.pretrain import base_model_ref, model_config_of, warm_start_model


@pytest.mark.parametrize("architecture,positions", [("llama", 256), ("gpt2", 64)])
def test_a_saved_models_architecture_is_read_back(tmp_path: Path, architecture: str, positions: int) -> None:
    build_causal_lm(architecture, 300, 2, n_embd=32, n_head=2, block_size=positions, eos_token_id=0).save_pretrained(
        tmp_path
    )
    cfg = model_config_of(tmp_path)
    assert (cfg.architecture, cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.block_size) == (
        architecture,
        2,
        32,
        2,
        positions,
    )


def test_the_base_models_architecture_wins_and_a_contradiction_names_both_values(tmp_path: Path) -> None:
    build_causal_lm("llama", 300, 2, n_embd=32, n_head=2, block_size=256, eos_token_id=0).save_pretrained(tmp_path)
    fetched = {"model_dir": str(tmp_path), "tokenizer_dir": str(tmp_path), "version": "3"}
    unset = load_config(None).model  # no preset: nothing about the model was said
    ref = base_model_ref("lmloop-small", fetched, unset)
    assert ref.model.block_size == 256 and ref.model.n_layer == 2, "128 (the default) would pack the wrong blocks"
    agreeing = ModelConfig(n_layer=2, n_embd=32, n_head=2, block_size=256)
    assert warm_start_model(agreeing, ref.model, "x").block_size == 256
    tiny = load_config("tiny").model  # the tiny preset says block_size 128 and 4 layers
    with pytest.raises(ConfigError, match=r"model\.n_layer=4 contradicts lmloop-small v3, which has n_layer=2"):
        base_model_ref("lmloop-small", fetched, tiny)
    with pytest.raises(ConfigError, match=r"block_size=128 .* block_size=256"):
        base_model_ref("lmloop-small", fetched, load_config(None, ["model.block_size=128"]).model)


def test_the_run_index_resumes_failed_and_orphaned_runs_only(tmp_path: Path) -> None:
    index, key = RunIndex(tmp_path), run_key("digest", ["a.txt"], "name")
    assert key == run_key("digest", ["a.txt"], "name") != run_key("digest", ["b.txt"], "name")
    assert index.resumable(key) is None
    index.record(key, "run-1", "running")
    assert index.resumable(key) is None, "its owner (this process) is alive: not ours to resume"
    index.record(key, "run-1", "failed")
    assert index.resumable(key) == "run-1"
    for final in ("complete", "rejected"):
        index.record(key, "run-1", final)
        assert index.resumable(key) is None
    (tmp_path / f"{key}.json").write_text('{"run_id": "run-2", "status": "running", "pid": 999999999, "host": "x"}')
    assert index.resumable(key) == "run-2", "a crashed owner on another host or a dead pid: resume"
