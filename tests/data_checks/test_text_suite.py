import pandas as pd

from data_checks import validate_corpus, validate_frame, validate_token_lengths
from lmloop.core.config import ValidationConfig
from lmloop.data.cleaning import bad_char_share, doc_id

CFG = ValidationConfig(min_rows=3, max_chars=50, allowed_labels=["a", "b"])


def _frame(texts: list, labels: list | None = None) -> pd.DataFrame:
    n = len(texts)
    frame = pd.DataFrame({"text": texts, "label": labels or [None] * n, "source": ["f.jsonl"] * n})
    frame["line"] = range(1, n + 1)
    frame["doc_id"] = [doc_id(t) if isinstance(t, str) else "" for t in texts]
    frame["bad_char_share"] = bad_char_share(frame["text"].fillna(""))
    return frame


def _failed(report) -> dict:
    return {f.expectation: f for f in report.failures}


def test_good_frame_passes() -> None:
    report = validate_frame(_frame(["hello", "world", "again"], ["a", "b", None]), CFG)
    assert report.success and report.rows == 3 and not report.failures and not report.bad_lines


def test_bad_rows_name_expectation_file_line_and_example() -> None:
    frame = _frame(
        ["fine", "", None, "x" * 80, "nul\x00byte", "mojibake \ufffd\ufffd", "ok"], ["a", "zz", "a", "b", "a", "a", "a"]
    )
    report = validate_frame(frame, CFG)
    failed = _failed(report)
    assert set(failed) == {
        "expect_column_values_to_not_be_null",
        "expect_column_value_lengths_to_be_between",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_not_match_regex",
        "expect_column_values_to_be_between",
    }
    assert failed["expect_column_values_to_be_in_set"].examples == [{"file": "f.jsonl", "line": 2, "value": "zz"}]
    assert {e["line"] for e in failed["expect_column_value_lengths_to_be_between"].examples} == {2, 4}
    assert failed["expect_column_values_to_not_match_regex"].examples[0]["line"] == 5
    assert {e["line"] for e in failed["expect_column_values_to_be_between"].examples} == {5, 6}
    assert report.bad_lines == {2, 3, 4, 5, 6}
    assert "f.jsonl:2" in report.summary()


def test_duplicate_ceiling() -> None:
    report = validate_frame(_frame(["same"] * 9 + ["other"]), CFG)
    assert list(_failed(report)) == ["expect_column_values_to_be_between"]  # on each row's file duplicate share
    assert report.failures[0].column == "file_duplicate_share" and report.bad_lines == set(), "the file, not rows"
    assert validate_frame(_frame(["same"] * 2 + ["other", "more"]), CFG).success


def test_mostly_tolerates_a_share_of_bad_rows_which_are_listed_for_dropping() -> None:
    frame = _frame([f"ok {i}" for i in range(9)] + [""])
    assert not validate_frame(frame, CFG).success
    report = validate_frame(frame, CFG.model_copy(update={"mostly": 0.85}))
    assert report.success and report.bad_lines == {10}


def test_corpus_and_token_suites() -> None:
    assert [f.expectation for f in validate_corpus(2, CFG).failures] == ["expect_table_row_count_to_be_between"]
    frame = _frame(["short", "a much longer document"])
    frame["n_tokens"] = [2, 40]
    report = validate_token_lengths(frame, CFG.model_copy(update={"max_tokens": 10}))
    assert not report.success and report.failures[0].examples[0]["line"] == 2


def test_data_docs_pages_are_written_where_asked_and_no_temporary_docs_site_elsewhere(tmp_path, caplog) -> None:
    import logging

    from data_checks import data_docs

    caplog.set_level(logging.INFO, logger="great_expectations")
    validate_frame(_frame(["hello", "world", "again"]), CFG)  # outside the block: nothing written
    with data_docs(tmp_path / "docs") as docs:
        validate_frame(_frame(["hello", "world", "again"]), CFG)
        validate_corpus(2, CFG)  # fails min_rows=3
    pages = sorted(p.name for p in docs.glob("*.html") if p.name != "index.html")
    assert len(pages) == 2 and "file" in pages[0] and "corpus" in pages[1], pages
    index = (docs / "index.html").read_text()
    assert "f.jsonl" in index and "passed" in index and "FAILED" in index
    assert "Great Expectations" in (docs / pages[0]).read_text()
    assert not any("docs site" in r.getMessage() for r in caplog.records), "no temporary docs folder per run"


def test_a_giant_rejected_value_is_quoted_as_an_excerpt_in_the_data_docs(tmp_path) -> None:
    """A rejected 20 MB single-line document became a 20 MB+ HTML page (GX quotes every unexpected value):
    pages and reports quote bounded excerpts, and the rejection still names the file and line."""
    from data_checks import data_docs

    giant = "word " * 4_000_000  # 20 MB, far over max_chars
    with data_docs(tmp_path / "docs") as docs:
        report = validate_frame(_frame(["fine", giant, "also fine"]), CFG)
    assert not report.success and 2 in report.bad_lines
    (page,) = [p for p in docs.glob("*.html") if p.name != "index.html"]
    assert page.stat().st_size < 500_000, page.stat().st_size
    assert all(len(repr(e["value"])) < 200 for f in report.failures for e in f.examples)
