import math
from pathlib import Path

import numpy as np
import pytest
import torch

from lmloop.evaluation.evaluate import score_documents, sliding_windows, unigram_scores
from lmloop.training.model import build_causal_lm
from lmloop.training.tokenizer import train_bpe


@pytest.mark.parametrize("length,block,stride", [(5, 8, 4), (30, 8, 4), (30, 8, 8), (17, 8, 3)])
def test_sliding_windows_score_every_target_once(length: int, block: int, stride: int) -> None:
    targets = []
    for begin, end, first in sliding_windows(list(range(length)), block, stride):
        assert end - begin <= block and begin < first <= end
        targets.extend(range(first, end))
    assert targets == list(range(1, length))


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):
    texts = ["the cat sat on the mat", "a dog ran in the park", "the sun is hot"] * 20
    return train_bpe(texts, 300, 1, out_dir=Path(tmp_path_factory.mktemp("tok")))


def test_score_matches_the_models_own_loss_for_short_documents(tokenizer) -> None:
    torch.manual_seed(0)
    model = build_causal_lm(
        "llama", len(tokenizer), 1, n_embd=32, n_head=2, block_size=64, eos_token_id=tokenizer.eos_token_id
    ).eval()
    texts = ["the cat sat on the mat", "the sun is hot"]
    scores = score_documents(model, tokenizer, texts, block_size=64, batch_size=2)
    for i, text in enumerate(texts):
        ids = torch.tensor([[tokenizer.eos_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"]]])
        with torch.no_grad():
            loss = model(input_ids=ids, labels=ids).loss.item()
        assert scores.nll[i] == pytest.approx(loss * (ids.shape[1] - 1), rel=1e-4)
    assert scores.bits_per_byte() == pytest.approx(scores.nll.sum() / math.log(2) / scores.bytes.sum())


def test_windows_and_batching_do_not_change_short_document_scores(tokenizer) -> None:
    torch.manual_seed(0)
    model = build_causal_lm(
        "gpt2", len(tokenizer), 1, n_embd=32, n_head=2, block_size=64, eos_token_id=tokenizer.eos_token_id
    ).eval()
    texts = ["the cat sat on the mat", "a dog ran in the park", "the sun is hot"]
    one = score_documents(model, tokenizer, texts, block_size=64, batch_size=1)
    many = score_documents(model, tokenizer, texts, block_size=64, batch_size=3)
    np.testing.assert_allclose(one.nll, many.nll, rtol=1e-4)


def test_unigram_baseline_is_uniform_without_data(tokenizer) -> None:
    scores = unigram_scores(np.array([], dtype=np.int64), ["the cat"], tokenizer)
    assert scores.perplexity() == pytest.approx(len(tokenizer))


def test_the_evaluation_sample_is_capped_deterministic_and_the_same_for_every_model(tokenizer) -> None:
    from lmloop.data.cleaning import doc_id
    from lmloop.evaluation.evaluate import eval_sample

    texts = [f"the cat sat on the mat {i} " * (1 + i % 5) for i in range(300)]
    ids = [doc_id(t) for t in texts]
    everything = eval_sample(texts, ids, tokenizer, max_documents=None, max_tokens=None)
    assert everything == list(range(300))
    by_docs = eval_sample(texts, ids, tokenizer, max_documents=50, max_tokens=None)
    assert len(by_docs) == 50 and by_docs == eval_sample(texts, ids, tokenizer, max_documents=50, max_tokens=None)
    assert by_docs == sorted(sorted(range(300), key=lambda i: ids[i])[:50]), "the first 50 by content hash"
    shuffled = list(reversed(range(300)))  # the same documents in another order: the same ones chosen
    again = eval_sample(
        [texts[i] for i in shuffled], [ids[i] for i in shuffled], tokenizer, max_documents=50, max_tokens=None
    )
    assert {texts[shuffled[i]] for i in again} == {texts[i] for i in by_docs}
    by_tokens = eval_sample(texts, ids, tokenizer, max_documents=None, max_tokens=500)
    lengths = [len(tokenizer(texts[i], add_special_tokens=False)["input_ids"]) + 1 for i in by_tokens]
    assert 0 < sum(lengths) <= 500 and set(by_tokens) < set(everything)
