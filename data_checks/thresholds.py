"""The thresholds of the text suites: the ``validation`` section of lmloop's config, defined here so that
this package depends on nothing of lmloop (lmloop's data gate calls the suites, never the other way)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

# ASCII control characters other than tab, newline and carriage return: never part of real text
CONTROL_CHARS = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"


class ValidationConfig(BaseModel):
    """Thresholds of the Great Expectations text suite (the ``validation`` section of the config)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_rows: int = Field(20, ge=1, description="Fewer documents than this is not a corpus.")
    min_chars: int = Field(1, ge=1, description="Shortest acceptable document, in characters.")
    max_chars: int = Field(100_000, ge=1, description="Longest acceptable document, in characters.")
    allowed_labels: list[str] | None = Field(None, description="Labels allowed when a label is present.")
    mostly: float = Field(1.0, gt=0.0, le=1.0, description="Share of rows that must pass each row check.")
    max_bad_char_share: float = Field(
        0.01, ge=0.0, le=1.0, description="Per document: replacement/non-printable share."
    )
    max_duplicate_rate: float = Field(0.5, ge=0.0, le=1.0, description="Per file: share of exact duplicate documents.")
    max_tokens: int | None = Field(None, ge=1, description="Per document, once a tokenizer exists.")
    max_failed_file_share: float = Field(
        0.25, ge=0.0, le=1.0, description="Continue without rejected files while their share is at most this."
    )
