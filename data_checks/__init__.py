"""Great Expectations suites for lmloop's data gate. The only module that talks to GX."""

from data_checks.text_suite import Failure, ValidationReport, build_text_suite, validate_frame

__all__ = ["Failure", "ValidationReport", "build_text_suite", "validate_frame"]
