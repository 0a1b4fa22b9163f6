from pathlib import Path

import pytest

from lmloop.config import ConfigError, PipelineConfig, load_config
from lmloop.settings import PROJECT_ROOT

PRESETS = sorted((PROJECT_ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_every_shipped_preset_loads(path: Path) -> None:
    assert isinstance(load_config(str(path)), PipelineConfig)


def test_overrides_are_parsed_as_yaml() -> None:
    cfg = load_config("tiny", ["train.max_steps=7", "validation.allowed_labels=[a, b]"])
    assert cfg.train.max_steps == 7
    assert cfg.validation.allowed_labels == ["a", "b"]


def test_unknown_field_names_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  max_stepz: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*train\.max_stepz"):
        load_config(str(bad))


def test_invalid_value_and_missing_preset() -> None:
    with pytest.raises(ConfigError, match="n_embd"):
        load_config("tiny", ["model.n_embd=130", "model.n_head=4"])
    with pytest.raises(ConfigError, match="no such config"):
        load_config("does-not-exist")
    with pytest.raises(ConfigError, match="key=value"):
        load_config("tiny", ["train.max_steps"])


def test_digest_changes_with_config() -> None:
    assert load_config("tiny").digest() == load_config("tiny").digest()
    assert load_config("tiny").digest() != load_config("tiny", ["train.seed=1"]).digest()


@pytest.mark.parametrize("preset,low,high", [("tiny", 1e6, 4e6), ("small", 20e6, 30e6), ("gpt2-124m", 120e6, 130e6)])
def test_preset_model_sizes(preset: str, low: float, high: float) -> None:
    import torch

    from lmloop.model import build_causal_lm

    cfg = load_config(preset)
    with torch.device("meta"):
        model = build_causal_lm(
            cfg.model.architecture,
            cfg.tokenizer.vocab_size,
            cfg.model.n_layer,
            cfg.model.n_embd,
            cfg.model.n_head,
            cfg.model.block_size,
            eos_token_id=0,
        )
    assert low <= model.num_parameters() <= high
