"""Models made from config or loaded from a folder, also by several threads of one process at once."""

import threading
from pathlib import Path

from transformers import AutoModelForCausalLM, PreTrainedModel

from lmloop.training.model import build_causal_lm, load_pretrained


def _tied(model: PreTrainedModel) -> bool:
    head, table = model.get_output_embeddings().weight, model.get_input_embeddings().weight
    return not head.is_meta and head.data_ptr() == table.data_ptr()


def test_models_made_in_threads_at_once_keep_their_tied_output_layer(tmp_path: Path) -> None:
    """Regression: transformers 5 turns ``tie_weights`` off for the whole process while it loads a model.
    Two continual cycles in one process's threads registered a model whose output layer was left on the
    meta device, and the process kept ``tie_weights`` off afterwards. Without lmloop's lock, every model
    here came out untied."""
    build_causal_lm("llama", 300, 2, n_embd=32, n_head=2, block_size=64, eos_token_id=0).save_pretrained(tmp_path)
    tie_weights = PreTrainedModel.tie_weights
    made: list[bool] = []

    def make() -> None:
        for _ in range(4):
            made.append(_tied(load_pretrained(AutoModelForCausalLM, tmp_path)))
            made.append(_tied(build_causal_lm("llama", 300, 2, n_embd=32, n_head=2, block_size=64, eos_token_id=0)))

    threads = [threading.Thread(target=make) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert made == [True] * 32
    assert PreTrainedModel.tie_weights is tie_weights, "the process keeps transformers' own tie_weights"
