"""Great Expectations suites for lmloop's data gate. The only package that talks to GX.

GX takes seconds to import, so the suites load on first use: importing ``data_checks.thresholds``
(the config) must not pull it into every ``lmloop --help``."""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = [
    "Failure",
    "ValidationReport",
    "corpus_suite",
    "data_docs",
    "file_suite",
    "token_suite",
    "validate_corpus",
    "validate_files",
    "validate_frame",
    "validate_token_lengths",
    "write_docs_index",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(import_module("data_checks.text_suite"), name)
    raise AttributeError(f"module 'data_checks' has no attribute {name!r}")
