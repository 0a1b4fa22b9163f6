import pandas as pd

from data_checks import validate_frame
from lmloop.config import ValidationConfig

CFG = ValidationConfig(min_rows=3, max_chars=50, allowed_labels=["a", "b"])


def _frame(texts: list, labels: list) -> pd.DataFrame:
    n = len(texts)
    return pd.DataFrame({"text": texts, "label": labels, "source": ["f.jsonl"] * n, "line": list(range(1, n + 1))})


def test_good_frame_passes() -> None:
    report = validate_frame(_frame(["hello", "world", "again"], ["a", "b", None]), CFG)
    assert report.success and report.rows == 3 and not report.failures


def test_bad_frame_names_expectation_file_line_and_example() -> None:
    frame = _frame(["fine", "", None, "x" * 80], ["a", "zz", "a", "b"])
    report = validate_frame(frame, CFG)
    assert not report.success
    failed = {f.expectation: f for f in report.failures}
    assert set(failed) == {
        "expect_column_values_to_not_be_null",
        "expect_column_value_lengths_to_be_between",
        "expect_column_values_to_be_in_set",
    }
    assert failed["expect_column_values_to_be_in_set"].examples == [{"file": "f.jsonl", "line": 2, "value": "zz"}]
    lengths = failed["expect_column_value_lengths_to_be_between"]
    assert {e["line"] for e in lengths.examples} == {2, 4}
    assert "f.jsonl:2" in report.summary()


def test_too_few_rows_fails_the_table_expectation() -> None:
    report = validate_frame(_frame(["one"], ["a"]), CFG)
    assert [f.expectation for f in report.failures] == ["expect_table_row_count_to_be_between"]
    assert report.failures[0].observed == 1


def test_mostly_tolerates_a_share_of_bad_rows() -> None:
    frame = _frame(["ok"] * 9 + [""], ["a"] * 10)
    assert not validate_frame(frame, CFG).success
    assert validate_frame(frame, CFG.model_copy(update={"mostly": 0.85})).success
