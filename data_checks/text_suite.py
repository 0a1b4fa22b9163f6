"""The text validation suites (Great Expectations 1.x) and runners that return a typed report.

``file_suite`` runs on each raw file (in chunks), with ``source`` and ``line`` attached to every
row so a failure names the file, the line and an example. ``corpus_suite`` runs once on what was
accepted. Thresholds come from :class:`data_checks.thresholds.ValidationConfig`; ``mostly`` lets a share of
rows fail a row check (those rows are dropped, the file is kept).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import great_expectations as gx
import great_expectations.expectations as gxe
import numpy as np
import pandas as pd
from great_expectations.data_context.types.base import ProgressBarsConfig

from data_checks.thresholds import CONTROL_CHARS, ValidationConfig

_EXAMPLES = 3
_EXAMPLE_CHARS = 80


@dataclass(frozen=True)
class Failure:
    """One failed expectation, with where it failed."""

    expectation: str
    column: str | None
    unexpected_count: int
    examples: list[dict[str, Any]]  # {"file", "line", "value"}
    observed: Any = None

    def message(self) -> str:
        where = "; ".join(f"{e['file']}:{e['line']}: {e['value']!r}" for e in self.examples)
        what = f"{self.expectation}" + (f" on column {self.column!r}" if self.column else "")
        if where:
            return f"{what} failed for {self.unexpected_count} row(s), e.g. {where}"
        return f"{what} failed (observed {self.observed!r})"


@dataclass(frozen=True)
class ValidationReport:
    success: bool
    rows: int
    evaluated: int
    failures: list[Failure] = field(default_factory=list)
    bad_lines: frozenset[int] = frozenset()  # lines failing any row-level check (dropped when mostly < 1)

    def to_dict(self) -> dict[str, Any]:
        payload = asdict(self)
        payload.pop("bad_lines")
        return {**payload, "failed_expectations": [f.expectation for f in self.failures]}

    def summary(self) -> str:
        if self.success:
            return f"validation passed: {self.evaluated} expectations on {self.rows} rows"
        return "validation failed:\n" + "\n".join(f"  - {f.message()}" for f in self.failures)


def file_suite(cfg: ValidationConfig, has_labels: bool) -> gx.ExpectationSuite:
    suite = gx.ExpectationSuite(name="lmloop_text_file")
    mostly = cfg.mostly
    # A missing text field is a broken record, not an empty document: never train on it.
    suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column="text", mostly=mostly))
    # Empty documents add nothing but separators; giant ones are usually a dump or a missing newline.
    suite.add_expectation(
        gxe.ExpectColumnValueLengthsToBeBetween(
            column="text", min_value=cfg.min_chars, max_value=cfg.max_chars, mostly=mostly
        )
    )
    # NUL and other control characters mean binary data or a broken export, and confuse tokenizers.
    suite.add_expectation(gxe.ExpectColumnValuesToNotMatchRegex(column="text", regex=CONTROL_CHARS, mostly=mostly))
    # Replacement / non-printable characters signal text decoded with the wrong codec upstream.
    suite.add_expectation(
        gxe.ExpectColumnValuesToBeBetween(column="bad_char_share", max_value=cfg.max_bad_char_share, mostly=mostly)
    )
    # A file that repeats itself (boilerplate, a stuck logger) would teach the model to loop.
    suite.add_expectation(
        gxe.ExpectColumnProportionOfUniqueValuesToBeBetween(column="doc_id", min_value=1 - cfg.max_duplicate_rate)
    )
    if has_labels and cfg.allowed_labels:
        # A label outside the agreed set is a typo or another task's data (null = unlabelled, allowed).
        suite.add_expectation(
            gxe.ExpectColumnValuesToBeInSet(column="label", value_set=cfg.allowed_labels, mostly=mostly)
        )
    return suite


def token_suite(cfg: ValidationConfig) -> gx.ExpectationSuite:
    suite = gx.ExpectationSuite(name="lmloop_tokens")
    # Documents far longer than any context are better split upstream than silently windowed.
    suite.add_expectation(
        gxe.ExpectColumnValuesToBeBetween(column="n_tokens", min_value=1, max_value=cfg.max_tokens, mostly=cfg.mostly)
    )
    return suite


def corpus_suite(cfg: ValidationConfig) -> gx.ExpectationSuite:
    suite = gx.ExpectationSuite(name="lmloop_text_corpus")
    # Too little text trains nothing and makes the held-out metrics noise.
    suite.add_expectation(gxe.ExpectTableRowCountToBeBetween(min_value=cfg.min_rows))
    return suite


def _clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > _EXAMPLE_CHARS:
        return value[:_EXAMPLE_CHARS] + "…"
    return None if isinstance(value, float) and pd.isna(value) else value


def _failure(result: Any) -> tuple[Failure, set[int]]:
    config = result.expectation_config
    column = config.kwargs.get("column")
    details = result.result or {}
    unexpected = details.get("unexpected_index_list") or []
    example_column = "text" if column in ("bad_char_share", "n_tokens") else column
    examples = [
        {"file": row.get("source"), "line": int(row.get("line", 0)), "value": _clip(row.get(example_column))}
        for row in unexpected[:_EXAMPLES]
    ]
    failure = Failure(
        config.type, column, int(details.get("unexpected_count") or 0), examples, details.get("observed_value")
    )
    return failure, {int(row["line"]) for row in unexpected if "line" in row}


def _run(frame: pd.DataFrame, build: Callable[[], gx.ExpectationSuite], index_columns: list[str]) -> Any:
    """Validate ``frame`` in a fresh ephemeral context (GX needs the context before the suite exists)."""
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    suite = build()
    asset = context.data_sources.add_pandas("lmloop").add_dataframe_asset("documents")
    batch = asset.add_batch_definition_whole_dataframe("all").get_batch(
        batch_parameters={"dataframe": frame.reset_index(drop=True)}
    )
    result_format = {"result_format": "COMPLETE", "unexpected_index_column_names": index_columns}
    return batch.validate(context.suites.add(suite), result_format=result_format)


def _report(frame: pd.DataFrame, result: Any) -> ValidationReport:
    failures, bad_lines = [], set()
    for r in result.results:
        failure, lines = _failure(r)
        if not r.success:
            failures.append(failure)
        if r.expectation_config.type != "expect_column_proportion_of_unique_values_to_be_between":
            bad_lines |= lines
    return ValidationReport(bool(result.success), len(frame), len(result.results), failures, frozenset(bad_lines))


def validate_frame(frame: pd.DataFrame, cfg: ValidationConfig) -> ValidationReport:
    """Run the file suite on rows with columns text, label, source, line, doc_id, bad_char_share."""
    has_labels = "label" in frame and frame["label"].notna().any()
    return _report(frame, _run(frame, lambda: file_suite(cfg, has_labels), ["source", "line", "text"]))


def validate_token_lengths(frame: pd.DataFrame, cfg: ValidationConfig) -> ValidationReport:
    """Token-length bounds on rows with columns n_tokens, text, source, line (needs ``cfg.max_tokens``)."""
    return _report(frame, _run(frame, lambda: token_suite(cfg), ["source", "line", "text"]))


def validate_corpus(rows: int, cfg: ValidationConfig) -> ValidationReport:
    """Run the corpus suite on the accepted documents: only their count matters, so a 1-byte column stands in."""
    frame = pd.DataFrame({"row": np.zeros(rows, dtype=np.int8)})
    return _report(frame, _run(frame, lambda: corpus_suite(cfg), []))
