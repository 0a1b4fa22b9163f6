"""Text clean-up and the per-document numbers the data checks look at (vectorised with pandas)."""

from __future__ import annotations

import hashlib
import re
import unicodedata

import pandas as pd

# Replacement characters (a decode went wrong upstream), C1 controls, private use, zero-width junk.
_BAD_CHARS = r"[\ufffd\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ue000-\uf8ff\u200b\ufeff]"
_SPACES = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")


def normalize_text(text: str, nfc: bool = True, whitespace: bool = True) -> str:
    """NFC (one code point sequence per visible string) and tidy whitespace, keeping paragraph breaks."""
    if nfc:
        text = unicodedata.normalize("NFC", text)
    if whitespace:
        text = _BLANK_LINES.sub("\n\n", _SPACES.sub(" ", text))
        text = "\n".join(line.strip() for line in text.split("\n")).strip()
    return text


def doc_id(text: str) -> str:
    """Content hash of a (cleaned) document: dedup, leakage and the split all key on it."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def bad_char_share(texts: pd.Series) -> pd.Series:
    lengths = texts.str.len().clip(lower=1)
    return (texts.str.count(_BAD_CHARS) / lengths).fillna(0.0)
