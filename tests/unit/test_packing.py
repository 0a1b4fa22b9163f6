from datasets import Dataset

from lmloop.training.packing import group_texts, pack


def test_group_texts_concatenates_and_drops_the_tail() -> None:
    out = group_texts({"input_ids": [[1, 2, 3], [4, 5], [6, 7, 8, 9]]}, block_size=4)
    assert out["input_ids"] == [[1, 2, 3, 4], [5, 6, 7, 8]]


def test_pack_produces_fixed_length_blocks() -> None:
    ds = Dataset.from_dict({"input_ids": [list(range(10)), list(range(7))]})
    blocks = pack(ds, block_size=5)
    assert [len(b) for b in blocks["input_ids"]] == [5, 5, 5]
