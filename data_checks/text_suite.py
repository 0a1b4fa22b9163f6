"""The text validation suite (Great Expectations 1.x) and one runner that returns a typed report.

Rows are validated with their ``source`` file and ``line`` attached, so every failure names the
file, the line and an example of the offending value.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd
from great_expectations.data_context.types.base import ProgressBarsConfig

from lmloop.config import ValidationConfig

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

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "failed_expectations": [f.expectation for f in self.failures]}

    def summary(self) -> str:
        if self.success:
            return f"validation passed: {self.evaluated} expectations on {self.rows} rows"
        return "validation failed:\n" + "\n".join(f"  - {f.message()}" for f in self.failures)


def build_text_suite(cfg: ValidationConfig, has_labels: bool) -> gx.ExpectationSuite:
    suite = gx.ExpectationSuite(name="lmloop_text")
    # A missing text field is a broken record, not an empty document: never train on it.
    suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column="text", mostly=cfg.mostly))
    # Empty documents add nothing but separators; giant ones are usually a dump gone wrong.
    suite.add_expectation(
        gxe.ExpectColumnValueLengthsToBeBetween(
            column="text", min_value=cfg.min_chars, max_value=cfg.max_chars, mostly=cfg.mostly
        )
    )
    if has_labels and cfg.allowed_labels:
        # A label outside the agreed set is a typo or a different task's data (nulls = unlabelled, allowed).
        suite.add_expectation(
            gxe.ExpectColumnValuesToBeInSet(column="label", value_set=cfg.allowed_labels, mostly=cfg.mostly)
        )
    # Too little text trains nothing and makes the held-out metrics noise.
    suite.add_expectation(gxe.ExpectTableRowCountToBeBetween(min_value=cfg.min_rows))
    return suite


def _clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > _EXAMPLE_CHARS:
        return value[:_EXAMPLE_CHARS] + "…"
    return None if isinstance(value, float) and pd.isna(value) else value


def _failure(result: Any) -> Failure:
    config = result.expectation_config
    column = config.kwargs.get("column")
    details = result.result or {}
    examples = [
        {"file": row.get("source"), "line": int(row.get("line", 0)), "value": _clip(row.get(column))}
        for row in (details.get("unexpected_index_list") or [])[:_EXAMPLES]
    ]
    return Failure(
        expectation=config.type,
        column=column,
        unexpected_count=int(details.get("unexpected_count") or 0),
        examples=examples,
        observed=details.get("observed_value"),
    )


def validate_frame(frame: pd.DataFrame, cfg: ValidationConfig) -> ValidationReport:
    """Run the text suite on a frame with columns text, label, source, line."""
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_def = (
        context.data_sources.add_pandas("lmloop")
        .add_dataframe_asset("documents")
        .add_batch_definition_whole_dataframe("all")
    )
    has_labels = "label" in frame and frame["label"].notna().any()
    suite = context.suites.add(build_text_suite(cfg, has_labels))
    batch = batch_def.get_batch(batch_parameters={"dataframe": frame.reset_index(drop=True)})
    result = batch.validate(
        suite,
        result_format={
            "result_format": "COMPLETE",
            "unexpected_index_column_names": ["source", "line"],
            "partial_unexpected_count": _EXAMPLES,
        },
    )
    failures = [_failure(r) for r in result.results if not r.success]
    return ValidationReport(
        success=bool(result.success), rows=len(frame), evaluated=len(result.results), failures=failures
    )
