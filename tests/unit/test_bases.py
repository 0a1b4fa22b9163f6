"""Pretrained bases (offline): a model folder, a hub id through a Hugging Face cache laid out in a temporary
folder, safetensors only, no custom code, LoRA targets found from the architecture, encoder-aware encoding."""

from pathlib import Path

import pytest

from lmloop.data.sample_data import write_corpus
from lmloop.training import bases
from lmloop.training.bases import BaseUnavailable, UnsafeWeights, resolve
from tests.pretrained import hub_cache, texts_of, tiny_bert, tiny_gpt2, tiny_llama


@pytest.fixture(scope="module")
def texts(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    corpus = tmp_path_factory.mktemp("corpus")
    write_corpus(corpus, seed=0, docs=200, files=1)
    return texts_of(corpus)


@pytest.fixture(scope="module")
def bert(tmp_path_factory: pytest.TempPathFactory, texts: list[str]) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("bert"), texts)


def test_a_model_folder_is_described_for_lineage(bert: Path) -> None:
    base = resolve(str(bert))
    assert (base.source, base.model_type, base.encoder, base.max_positions) == ("folder", "bert", True, 128)
    assert base.license == "apache-2.0" and len(base.weights_sha256) == 64
    assert resolve(str(bert)).weights_sha256 == base.weights_sha256, "the same weights, the same digest"
    tags = base.lineage()
    assert tags["lmloop.base.source"] == "folder" and tags["lmloop.base.id"] == str(bert.resolve())
    assert tags["lmloop.base.license"] == "apache-2.0" and tags["lmloop.base.weights_sha256"] == base.weights_sha256


def test_a_hub_id_resolves_through_the_cache_offline(bert: Path, offline_cache: Path) -> None:
    commit = hub_cache(offline_cache, "tiny-org/tiny-bert", bert)
    base = resolve("hf:tiny-org/tiny-bert")
    assert (base.source, base.id, base.commit) == ("hub", "tiny-org/tiny-bert", commit)
    assert Path(base.dir) == offline_cache / "models--tiny-org--tiny-bert" / "snapshots" / commit
    assert base.lineage()["lmloop.base.revision"] == commit and base.spec == "hf:tiny-org/tiny-bert"
    assert resolve(f"hf:tiny-org/tiny-bert@{commit}").commit == commit


def test_an_uncached_hub_id_offline_is_one_clear_line(offline_cache: Path) -> None:
    with pytest.raises(BaseUnavailable) as caught:
        resolve("hf:nobody/not-cached@v2")
    message = str(caught.value)
    assert "\n" not in message and "hf:nobody/not-cached" in message and "offline" in message
    assert "hf download nobody/not-cached --revision v2" in message and "local model folder" in message


def test_pickle_only_weights_are_refused_unless_the_user_opts_in(bert: Path, tmp_path: Path) -> None:
    folder = tmp_path / "pickled"
    folder.mkdir()
    for name in ("config.json", "tokenizer_config.json", "tokenizer.json"):
        (folder / name).write_bytes((bert / name).read_bytes())
    (folder / "pytorch_model.bin").write_bytes(b"never unpickled by this check")
    with pytest.raises(UnsafeWeights) as caught:
        resolve(str(folder))
    assert "pytorch_model.bin" in str(caught.value) and "model.allow_pickle_weights=true" in str(caught.value)
    assert resolve(str(folder), allow_pickle=True).pickle_weights


def test_custom_code_and_non_models_are_refused(bert: Path, tmp_path: Path) -> None:
    import json

    custom = tmp_path / "custom"
    custom.mkdir()
    for path in bert.iterdir():
        (custom / path.name).write_bytes(path.read_bytes())
    config = json.loads((custom / "config.json").read_text())
    (custom / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoModel": "x.Model"}}))
    with pytest.raises(BaseUnavailable, match="trust_remote_code"):
        resolve(str(custom))
    with pytest.raises(BaseUnavailable, match="no config.json"):
        resolve(str(tmp_path))
    with pytest.raises(BaseUnavailable, match="no such folder"):
        resolve(str(tmp_path / "missing"))


def test_what_names_a_pretrained_base() -> None:
    assert bases.is_pretrained("hf:org/name") and bases.is_pretrained("./models/x") and bases.is_pretrained("/m")
    assert not bases.is_pretrained("champion") and not bases.is_pretrained("3")
    assert bases.is_encoder("bert") and bases.is_encoder("roberta") and not bases.is_encoder("gpt2")
    assert bases.is_causal("llama") and bases.is_causal("qwen2") and not bases.is_causal("bert")


def test_lora_targets_are_found_from_each_architecture(bert: Path, texts: list[str], tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from lmloop.training.classify import lora_targets
    from lmloop.training.model import load_pretrained

    encoder = load_pretrained(AutoModelForSequenceClassification, bert, num_labels=3)
    assert lora_targets(encoder) == ["dense", "key", "query", "value"]  # the head and pooler excepted
    gpt2 = load_pretrained(AutoModelForCausalLM, tiny_gpt2(tmp_path / "gpt2", texts))
    assert lora_targets(gpt2) == ["c_attn", "c_fc", "c_proj"]  # GPT-2's Conv1D layers
    llama = load_pretrained(AutoModelForCausalLM, tiny_llama(tmp_path / "llama", texts))
    assert lora_targets(llama) == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]


def test_an_encoder_sees_its_special_tokens_a_decoder_its_text(bert: Path, texts: list[str]) -> None:
    from lmloop.training.classifier_training import encode
    from lmloop.training.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(bert)
    assert tokenizer.unk_token_id not in tokenizer(texts[0], add_special_tokens=False)["input_ids"]
    text = " ".join([texts[0].split()[1]] * 40)
    encoded = encode([text], [0], tokenizer, limit=16, special=True).ids[0]
    assert len(encoded) == 16 and encoded[0] == tokenizer.cls_token_id and encoded[-1] == tokenizer.sep_token_id
    plain = encode([text], [0], tokenizer, limit=16).ids[0]
    assert len(plain) == 16 and tokenizer.cls_token_id not in plain


def test_a_causal_base_with_pickle_weights_trains_only_when_the_user_opted_in(texts: list[str], tmp_path: Path) -> None:
    """The opt-in reaches the LM path: continued training loads a ``pytorch_model.bin``-only folder (through
    transformers' ``torch.load(weights_only=True)``) only when ``model.allow_pickle_weights`` let it resolve."""
    import torch
    from transformers import AutoModelForCausalLM

    from lmloop.core.config import ModelConfig
    from lmloop.training.pretrain import causal_lm, pretrained_ref
    from lmloop.training.tokenizer import load_tokenizer

    folder = tiny_gpt2(tmp_path / "gpt2", texts)
    pickled = tmp_path / "pickled"  # an older checkpoint: transformers 5 writes safetensors only
    model = AutoModelForCausalLM.from_pretrained(folder)
    model.config.save_pretrained(pickled)
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")
    load_tokenizer(str(folder)).save_pretrained(str(pickled))
    assert (pickled / "pytorch_model.bin").exists() and not (pickled / "model.safetensors").exists()
    with pytest.raises(UnsafeWeights):
        resolve(str(pickled))
    base = pretrained_ref(resolve(str(pickled), allow_pickle=True), ModelConfig(), task="lm")
    assert base.pickle_weights
    tokenizer = load_tokenizer(base.tokenizer_dir)
    with pytest.raises(OSError):  # safetensors only: the default refuses to read the pickle
        causal_lm(tokenizer, ModelConfig(), base.dir, lora=False)
    loaded = causal_lm(tokenizer, ModelConfig(), base.dir, lora=False, safe_only=not base.pickle_weights)
    assert loaded.config.model_type == "gpt2"
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items()), "its own weights"
