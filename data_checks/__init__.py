"""Great Expectations suites for lmloop's data gate. The only package that talks to GX."""

from data_checks.text_suite import (
    Failure,
    ValidationReport,
    corpus_suite,
    file_suite,
    token_suite,
    validate_corpus,
    validate_files,
    validate_frame,
    validate_token_lengths,
)

__all__ = [
    "Failure",
    "ValidationReport",
    "corpus_suite",
    "file_suite",
    "token_suite",
    "validate_corpus",
    "validate_files",
    "validate_frame",
    "validate_token_lengths",
]
