"""The text validation suites (Great Expectations 1.x) and runners that return a typed report.

``file_suite`` runs on each raw file (in chunks), with ``source`` and ``line`` attached to every
row so a failure names the file, the line and an example. ``corpus_suite`` runs once on what was
accepted. Thresholds come from :class:`data_checks.thresholds.ValidationConfig`; ``mostly`` lets a share of
rows fail a row check (those rows are dropped, the file is kept).
"""

from __future__ import annotations

import html
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import great_expectations as gx
import great_expectations.expectations as gxe
import numpy as np
import pandas as pd
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)

from data_checks.thresholds import CONTROL_CHARS, ValidationConfig

_EXAMPLES = 3
FILE_DUPLICATES = "file_duplicate_share"  # per row: the share of exact duplicates in the row's file
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
    # A file that repeats itself (boilerplate, a stuck logger) would teach the model to loop. Checked on
    # each row's file-level share of exact duplicates, so one run can check many files (small ones together).
    suite.add_expectation(
        gxe.ExpectColumnValuesToBeBetween(column=FILE_DUPLICATES, min_value=0.0, max_value=cfg.max_duplicate_rate)
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


_QUOTED_CHARS = 200  # a rejected value quoted in GX's results and Data Docs pages, at most


def _bounded(value: Any) -> Any:
    """``value`` (GX's result details: lists of unexpected values and rows) with every string cut to an
    excerpt: a rejected 200 MB single-line file must not become a 200 MB HTML page, logged to MLflow."""
    if isinstance(value, str):
        return value if len(value) <= _QUOTED_CHARS else value[:_QUOTED_CHARS] + f"… ({len(value):,} chars)"
    if isinstance(value, dict):
        return {k: _bounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_bounded(v) for v in value)
    return value


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


_DOCS: ContextVar[Path | None] = ContextVar("data_docs", default=None)


@contextmanager
def data_docs(folder: Path) -> Iterator[Path]:
    """While active, every validation also writes its GX Data Docs page (the validation-result page GX's
    docs site shows) into ``folder``, listed in ``folder/index.html``."""
    folder.mkdir(parents=True, exist_ok=True)
    token = _DOCS.set(folder)
    try:
        yield folder
    finally:
        _DOCS.reset(token)


def _write_docs_page(result: Any, title: str) -> None:
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    folder = _DOCS.get()
    if folder is None:
        return
    # unique without coordination: worker processes of one run write into the same folder
    stem = f"{time.time_ns()}-{os.getpid()}-{result.suite_name}"
    (folder / f"{stem}.html").write_text(DefaultJinjaPageView().render(ValidationResultsPageRenderer().render(result)))
    entry = {"page": f"{stem}.html", "suite": result.suite_name, "what": title, "success": bool(result.success)}
    (folder / f"{stem}.json").write_text(json.dumps(entry))
    write_docs_index(folder)


def write_docs_index(folder: Path) -> None:
    """``folder/index.html``: every page written there, oldest first (rewritten after each page, and once
    more by the run when its workers are done, so no page is left out)."""
    if not folder.exists():
        return
    entries = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    rows = "".join(
        f"<tr><td><a href='{e['page']}'>{html.escape(e['what'])}</a></td><td>{e['suite']}</td>"
        f"<td>{'passed' if e['success'] else 'FAILED'}</td></tr>"
        for e in entries
    )
    tmp = folder / f".index-{os.getpid()}.html"
    tmp.write_text(
        "<html><head><title>lmloop data gate: GX Data Docs</title></head><body>"
        "<h1>Great Expectations Data Docs</h1><table border='1' cellpadding='4'>"
        f"<tr><th>validated</th><th>suite</th><th>result</th></tr>{rows}</table></body></html>"
    )
    tmp.replace(folder / "index.html")


def _run(frame: pd.DataFrame, build: Callable[[], gx.ExpectationSuite], index_columns: list[str]) -> Any:
    """Validate ``frame`` in a fresh ephemeral context (GX needs the context before the suite exists)."""
    # in memory, no Data Docs site: GX's default ephemeral context makes a temporary docs folder every time
    config = DataContextConfig(store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False))
    context = gx.get_context(mode="ephemeral", project_config=config)
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    suite = build()
    asset = context.data_sources.add_pandas("lmloop").add_dataframe_asset("documents")
    batch = asset.add_batch_definition_whole_dataframe("all").get_batch(
        batch_parameters={"dataframe": frame.reset_index(drop=True)}
    )
    result_format = {"result_format": "COMPLETE", "unexpected_index_column_names": index_columns}
    result = batch.validate(context.suites.add(suite), result_format=result_format)
    for one in result.results:  # the values GX quotes (whole documents) go into reports and Data Docs: excerpts
        one.result = _bounded(one.result)
    if "source" in frame:
        sources = frame["source"].unique().tolist()
        title = sources[0] if len(sources) == 1 else f"{len(sources)} files ({sources[0]}, ...)"
    else:
        title = f"the accepted corpus ({len(frame)} documents)"
    _write_docs_page(result, title)
    return result


def _report(frame: pd.DataFrame, result: Any) -> ValidationReport:
    failures, bad_lines = [], set()
    for r in result.results:
        failure, lines = _failure(r)
        if not r.success:
            failures.append(failure)
        if r.expectation_config.kwargs.get("column") != FILE_DUPLICATES:  # a file-level check drops no row
            bad_lines |= lines
    return ValidationReport(bool(result.success), len(frame), len(result.results), failures, frozenset(bad_lines))


def _per_source(frame: pd.DataFrame, result: Any) -> dict[str, ValidationReport]:
    """One report per file of a multi-file frame: each expectation's unexpected rows counted per file, and
    ``mostly`` applied to each file's own rows (as if the file had been validated alone)."""
    sources = frame["source"].unique().tolist()
    failures: dict[str, list[Failure]] = {s: [] for s in sources}
    bad: dict[str, set[int]] = {s: set() for s in sources}
    for r in result.results:
        config = r.expectation_config
        column, mostly = config.kwargs.get("column"), config.kwargs.get("mostly") or 1.0
        unexpected = (r.result or {}).get("unexpected_index_list") or []
        counted = frame[column].notna().groupby(frame["source"]).sum() if column != "text" else None
        for source in sources:
            mine = [row for row in unexpected if row.get("source") == source]
            if not mine:
                continue
            rows = int(counted[source]) if counted is not None else int((frame["source"] == source).sum())
            shown = "text" if column in ("bad_char_share", "n_tokens", FILE_DUPLICATES) else column
            examples = [
                {"file": source, "line": int(row["line"]), "value": _clip(row.get(shown))} for row in mine[:_EXAMPLES]
            ]
            if len(mine) > (1 - mostly) * rows:
                failures[source].append(Failure(config.type, column, len(mine), examples))
            if column != FILE_DUPLICATES:
                bad[source] |= {int(row["line"]) for row in mine}
    return {
        s: ValidationReport(
            not failures[s], int((frame["source"] == s).sum()), len(result.results), failures[s], frozenset(bad[s])
        )
        for s in sources
    }


def with_file_duplicates(frame: pd.DataFrame) -> pd.DataFrame:
    """Add each row's file-level share of exact duplicate documents (by ``doc_id``)."""
    by_file = frame.groupby("source")["doc_id"]
    share = 1.0 - by_file.transform("nunique") / by_file.transform("size")
    return frame.assign(**{FILE_DUPLICATES: share.astype(float)})


def validate_files(frame: pd.DataFrame, cfg: ValidationConfig) -> dict[str, ValidationReport]:
    """The file suite on the rows of one or many files at once (columns text, label, source, line, doc_id,
    bad_char_share), one GX run; one report per file, as if each had been validated alone."""
    frame = with_file_duplicates(frame.reset_index(drop=True))
    has_labels = "label" in frame and frame["label"].notna().any()
    result = _run(frame, lambda: file_suite(cfg, has_labels), ["source", "line", "text"])
    return _per_source(frame, result)


def validate_frame(frame: pd.DataFrame, cfg: ValidationConfig) -> ValidationReport:
    """The file suite on one file's rows (or one chunk of a large file)."""
    (report,) = validate_files(frame, cfg).values()
    return report


def validate_token_lengths(frame: pd.DataFrame, cfg: ValidationConfig) -> ValidationReport:
    """Token-length bounds on rows with columns n_tokens, text, source, line (needs ``cfg.max_tokens``)."""
    return _report(frame, _run(frame, lambda: token_suite(cfg), ["source", "line", "text"]))


def validate_corpus(rows: int, cfg: ValidationConfig) -> ValidationReport:
    """Run the corpus suite on the accepted documents: only their count matters, so a 1-byte column stands in."""
    frame = pd.DataFrame({"row": np.zeros(rows, dtype=np.int8)})
    return _report(frame, _run(frame, lambda: corpus_suite(cfg), []))
