from pathlib import Path

import pytest

from lmloop.core.config import ConfigError, PipelineConfig
from lmloop.core.presets import load_config
from lmloop.core.settings import PROJECT_ROOT

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

    from lmloop.training.model import build_causal_lm

    cfg = load_config(preset)
    with torch.device("meta"):
        model = build_causal_lm(
            cfg.model.architecture,
            cfg.tokenizer.vocab_size,
            cfg.model.n_layer,
            n_embd=cfg.model.n_embd,
            n_head=cfg.model.n_head,
            block_size=cfg.model.block_size,
            eos_token_id=0,
        )
    assert low <= model.num_parameters() <= high


def _another_value(section: str, key: str, current: object) -> object | None:
    """A valid value different from ``current`` for ``section.key``, or None when the field has none."""
    candidates: list[object] = []
    if isinstance(current, bool):
        candidates = [not current]
    elif isinstance(current, int):
        candidates = [current + 1, current * 2, current - 1]
    elif isinstance(current, float):
        candidates = [current / 2, current * 1.5 + 0.01]
    elif isinstance(current, str):
        candidates = ["gpt2", "llama", "cuda", "cpu", "flash", "math", "other-name", "*/5 * * * *"]
    elif current is None:
        candidates = [3, 0.5, "x.txt", True]
    elif isinstance(current, list):
        candidates = [["a", "b"]]
    elif isinstance(current, dict):
        return None
    for value in candidates:
        if value == current:
            continue
        try:
            cfg = load_config("tiny", [f"{section}.{key}={value}"])
        except ConfigError:
            continue
        if getattr(getattr(cfg, section), key) != current:
            return value
    return None


def test_an_override_changes_only_the_key_it_names_in_every_section(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: ``--set finetune.max_steps=30`` used to reset the whole finetune section to the
    general training defaults (learning rate 1e-3 -> 3e-3, warm-up 15 -> 30). YAML, environment and
    --set all go through the same merge; every section and key is walked."""
    base = load_config("tiny").model_dump()
    walked = 0
    for section, fields in base.items():
        for key, current in fields.items():
            value = _another_value(section, key, current)
            if value is None:
                continue
            for how in ("set", "env"):
                if how == "set":
                    cfg = load_config("tiny", [f"{section}.{key}={value}"])
                else:
                    with monkeypatch.context() as mp:
                        mp.setenv(f"LMLOOP_{section.upper()}__{key.upper()}", str(value))
                        cfg = load_config("tiny")
                after = cfg.model_dump()
                assert after[section][key] != current, (section, key, how)
                changed = {(s, k) for s, f in after.items() for k, v in f.items() if v != base[s][k]}
                assert changed == {(section, key)}, (section, key, how, changed)
            walked += 1
    assert walked > 60
    tuned = load_config("tiny", ["finetune.max_steps=30"]).finetune
    assert (tuned.max_steps, tuned.learning_rate, tuned.warmup_steps) == (30, 1e-3, 15)


def test_form_knobs_replace_the_preset_and_set_steps() -> None:
    from lmloop.core.presets import with_knobs

    tiny = load_config("tiny")
    assert with_knobs(tiny) == tiny
    assert with_knobs(tiny, max_steps=7).train.max_steps == 7
    assert with_knobs(tiny, max_steps=9, section="finetune").finetune.max_steps == 9
    assert with_knobs(tiny, preset="small").model == load_config("small").model
