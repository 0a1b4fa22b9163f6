"""A real labelled text set built on the fly from the installed manual pages (never committed): each page's
one-line NAME description, labelled by its manual section. Nobody here wrote it, and its classes overlap
(a syscall, a library call and a command can describe the same thing), unlike synthetic topics."""

from __future__ import annotations

import gzip
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

SECTIONS = ("1", "2", "3", "5", "7", "8")
_ESCAPES = [
    (re.compile(r"\\f[BIRP]|\\f\(..|\\f\[[^]]*\]"), ""),  # font changes
    (re.compile(r"\\\(em|\\\(en"), "-"),
    (re.compile(r"\\\(.."), ""),  # other special characters
    (re.compile(r"\\\[[^]]*\]"), ""),
    (re.compile(r"\\[&|^%:]"), ""),
    (re.compile(r"\\-"), "-"),
    (re.compile(r"\\e"), "\\\\"),
    (re.compile(r"\\\*\(.."), ""),
    (re.compile(r"\\\*."), ""),
    (re.compile(r'\\"'), ""),
]


def _clean(line: str) -> str:
    for pattern, replacement in _ESCAPES:
        line = pattern.sub(replacement, line)
    return re.sub(r"\s+", " ", line.replace("\\", "")).strip()


def name_description(source: str) -> str | None:
    """The text after the dash of a page's NAME section (troff source), or None."""
    lines = source.splitlines()
    for i, line in enumerate(lines):
        if re.match(r'^\.S[Hh]\s+"?(NAME|Name)"?\s*$', line.strip()):
            body = []
            for nxt in lines[i + 1 : i + 8]:
                if nxt.startswith((".SH", ".Sh")):
                    break
                if nxt.startswith((".Nd", ".ND")):  # mdoc
                    body.append(nxt[3:])
                elif not nxt.startswith((".", "'")):
                    body.append(nxt)
            text = _clean(" ".join(body))
            if " - " in text:
                text = text.split(" - ", 1)[1]
            elif body and any(x.startswith((".Nd", ".ND")) for x in lines[i + 1 : i + 8]):
                pass
            else:
                return None
            return text.strip().strip('"').strip() or None
    return None


def _pages(root: Path) -> Iterator[tuple[str, str]]:
    """(section, troff source) of every readable page of :data:`SECTIONS`, in a fixed order."""
    for section in SECTIONS:
        for page in sorted((root / f"man{section}").glob("*.gz")):
            try:
                yield section, gzip.decompress(page.read_bytes()).decode("utf-8", errors="replace")
            except (OSError, EOFError):
                continue


def build(root: Path = Path("/usr/share/man")) -> list[dict[str, str]]:
    """Deduplicated (text, label) rows; a description found in two sections is dropped (ambiguous)."""
    seen: dict[str, set[str]] = {}
    for section, source in _pages(root):
        text = name_description(source)
        if text and len(text) > 3:
            seen.setdefault(text, set()).add(section)
    return [{"text": t, "label": f"man{next(iter(s))}"} for t, s in sorted(seen.items()) if len(s) == 1]


_TEXT_MACROS = re.compile(
    r"^\.(B|I|BR|IR|RB|BI|IB|RI|SH|SS|TP|IP|Nm|Nd|Fn|Fa|Ar|Fl|Xr|Dv|Er|Pa|Va|Sy|Em|Dq|Ql|Cm|It)\b\s*(.*)"
)
_XREF = re.compile(r"\b([\w.:+-]+)\s*\(\d[a-z]*\)")  # "stat(2)": the section number is the label


def bodies(root: Path = Path("/usr/share/man"), chars: int = 1000, min_chars: int = 200) -> list[str]:
    """Unlabelled text to pretrain on: the first ``chars`` characters of each page's text (NAME, SYNOPSIS,
    the start of DESCRIPTION), troff markup dropped. Pages whose NAME description is in the benchmark's test
    split are left out entirely, and cross-references lose their section numbers (``stat(2)`` → ``stat``),
    so no test row and no label reaches pretraining."""
    out = []
    for _, source in _pages(root):
        description = name_description(source)
        if description and split_of(description) == "test":
            continue
        lines = []
        for line in source.splitlines():
            if line.startswith((".", "'")):
                macro = _TEXT_MACROS.match(line)
                if macro is None:
                    continue
                line = macro.group(2).replace('"', "")
            text = _XREF.sub(r"\1", _clean(line))
            if text:
                lines.append(text)
        body = "\n".join(lines)[:chars]
        if len(body) >= min_chars:
            out.append(body)
    return out


def split_of(text: str, test: float = 0.2, validation: float = 0.1) -> str:
    """The fixed hash split every method uses."""
    # salted: lmloop splits its own input by a content hash too, and must not find its test region empty
    x = int(hashlib.sha256(f"classify-real:{text}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if x < test else "validation" if x < test + validation else "train"


if __name__ == "__main__":
    from collections import Counter

    rows = build()
    print(len(rows), Counter(r["label"] for r in rows), Counter(split_of(r["text"]) for r in rows))
    for r in rows[:5] + rows[-5:]:
        print(r)
