"""Near-duplicate documents: MinHash signatures over word n-gram shingles, LSH banding for candidates.

A signature is 128 one-permutation-hashing bins (one 64-bit hash per shingle: its top bits pick the
bin, the minimum of the rest is kept; empty bins borrow from the next filled one) stored as 16-bit
values (b-bit MinHash: 256 bytes a document). The share of equal bins estimates the Jaccard
similarity of two documents' shingle sets. Candidates are pairs that agree on all 8 bins of at
least one of 16 bands (probability 1-(1-J^8)^16: 0.95 at J=0.8, 0.06 at J=0.5); each candidate is
then verified by its estimated similarity against the threshold.

Everything is vectorised over a batch of texts (pyarrow for the words, numpy for hashing and the
minima): ~20 MB/s a core, where datasketch's per-document MinHash measured 4 MB/s and its LSH index
14 MB/s here — more than the whole data stage costs. ``datasketch`` is therefore not used.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

BINS = 128
BANDS = 16
ROWS = BINS // BANDS
_EMPTY = np.uint32(0xFFFFFFFF)
_C1, _C2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_PRIME = np.uint64(0x100000001B3)
_FILL_STEP = np.uint32(0x9E3779B1)
_PUNCTUATION = "\"'`.,;:!?()[]{}<>*_-/\\|#~=+"  # stripped from both ends of a word


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a fast, well-spread 64-bit hash of 64-bit integers (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _C1
    x = x ^ (x >> np.uint64(27))
    x = x * _C2
    return x ^ (x >> np.uint64(31))


def _words(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Normalised words (lower case, letters and digits) of each text: ``(word_hashes, offsets)``."""
    lists = pc.utf8_split_whitespace(pc.utf8_lower(texts.fill_null("")))
    flat = pc.utf8_trim(pc.list_flatten(lists), characters=_PUNCTUATION)
    empty = pc.equal(pc.utf8_length(flat), 0)
    encoded = pc.dictionary_encode(flat)
    vocabulary = encoded.dictionary.to_pylist()
    table = np.fromiter(
        (int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little") for w in vocabulary),
        dtype=np.uint64,
        count=len(vocabulary),
    )
    hashes = table[encoded.indices.to_numpy(zero_copy_only=False)] if len(flat) else np.zeros(0, np.uint64)
    offsets = np.asarray(lists.offsets, dtype=np.int64)
    if pc.any(empty).as_py():  # punctuation alone, or a text with no word at all: no word
        keep = ~empty.to_numpy(zero_copy_only=False)
        kept_before = np.concatenate([[0], np.cumsum(keep)])
        hashes, offsets = hashes[keep], kept_before[offsets]
    return hashes, offsets


def _shingles(hashes: np.ndarray, offsets: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every run of ``n`` consecutive words within a text (a text of fewer words: one shingle of
    all of them); ``(shingle_hashes, text_index)``."""
    lengths = np.diff(offsets)
    doc = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    total, combined = len(hashes), hashes
    short = np.flatnonzero((lengths > 0) & (lengths < n))
    partial_hash, partial_doc = [], []
    for k in range(1, n):  # a polynomial over the next n-1 words
        if len(short_k := short[lengths[short] == k]):  # texts of k words: one shingle of all of them
            partial_hash.append(combined[offsets[short_k]])
            partial_doc.append(short_k)
        shifted = np.zeros(total, np.uint64)
        shifted[: total - k] = hashes[k:]
        combined = combined * _PRIME + shifted
    starts = max(0, total - n + 1)
    full = np.zeros(total, bool)  # the run starting at word k stays inside k's text
    full[:starts] = doc[n - 1 :] == doc[:starts]
    return np.concatenate([combined[full], *partial_hash]), np.concatenate([doc[full], *partial_doc])


def _densify(sig: np.ndarray) -> np.ndarray:
    """Fill each empty bin from the next filled bin to its right (circularly), shifted by the distance, so
    two texts with the same shingles get the same signature (one-permutation hashing's rotation)."""
    filled = sig != _EMPTY
    far = np.int16(2 * BINS)
    position = np.where(filled, np.arange(BINS, dtype=np.int16), far)
    following = np.minimum.accumulate(position[:, ::-1], axis=1)[:, ::-1]  # next filled bin at or after j
    wrapped = position.min(axis=1, keepdims=True) + np.int16(BINS)  # none after j: the row's first, one turn on
    following = np.where(following >= far, wrapped, following)
    source = np.take_along_axis(sig, (following & np.int16(BINS - 1)).astype(np.intp), axis=1)
    distance = (following - np.arange(BINS, dtype=np.int16)).astype(np.uint32)
    with np.errstate(over="ignore"):
        out = np.where(filled, sig, source + _FILL_STEP * distance)
    out[~filled.any(axis=1)] = _EMPTY
    return out


def signatures(texts: Sequence[str | None] | pa.Array, ngram: int = 3, counts: bool = False) -> Any:
    """``(len(texts), BINS)`` uint16 signatures; a text without a word gets all-0xFFFF (matches nothing).
    With ``counts``: ``(signatures, shingles per text)``."""
    array = texts if isinstance(texts, pa.Array | pa.ChunkedArray) else pa.array(list(texts), pa.string())
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    n_texts = len(array)
    if n_texts == 0:
        empty = np.zeros((0, BINS), np.uint16)
        return (empty, np.zeros(0, np.int64)) if counts else empty
    hashes, offsets = _words(array)
    values, doc = _shingles(hashes, offsets, ngram)
    mixed = _mix(values)
    bins = (mixed >> np.uint64(57)).astype(np.int64)
    low = np.minimum((mixed & np.uint64(0xFFFFFFFF)).astype(np.uint32), np.uint32(0xFFFFFFFE))
    sig = np.full(n_texts * BINS, _EMPTY, np.uint32)
    np.minimum.at(sig, doc * BINS + bins, low)
    dense = _densify(sig.reshape(n_texts, BINS))
    out = (dense & np.uint32(0xFFFF)).astype(np.uint16)
    out[(dense == _EMPTY).all(axis=1)] = 0xFFFF
    return (out, np.bincount(doc, minlength=n_texts)) if counts else out


MIN_SHINGLES = 8  # fewer: the bins are mostly copies of a few shingles, and bands would collide by chance


def band_keys(sigs: np.ndarray, shingles: np.ndarray | None = None) -> np.ndarray:
    """``(BANDS, n)`` uint64, band-major (the gate reads one band of every document at a time): one hash per
    band of ``ROWS`` bins; 0 for a text without a signature (matches nothing). A text of fewer than
    ``MIN_SHINGLES`` shingles (``shingles``: counts, when known) keeps one key, of its whole signature: it
    matches texts with the same shingles (re-cased, re-punctuated), not merely similar ones."""
    sigs = np.ascontiguousarray(sigs)
    halves = sigs.reshape(len(sigs), BANDS, ROWS).view(np.uint64)  # 8 bins x 16 bits = 2 words a band
    band = np.arange(BANDS, dtype=np.uint64)
    keys = _mix(halves[..., 0] ^ _mix(halves[..., 1] + band))
    if shingles is not None and (short := shingles < MIN_SHINGLES).any():
        keys[short, 0] = _mix(keys[short].view(np.uint64).sum(axis=1, dtype=np.uint64))
        keys[short, 1:] = 0
    keys[(sigs == 0xFFFF).all(axis=1)] = 0
    return np.ascontiguousarray(keys.T)


def similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Estimated Jaccard similarity of rows ``a[i]`` and ``b[i]``."""
    return (a == b).mean(axis=1) if len(a) else np.zeros(0)


class Signatures:
    """The signatures ``(n, BINS)`` and band keys ``(BANDS, n)`` of many documents, in parts (one per shard
    or per trained batch), usually memory-mapped: matching reads one band of every document at a time
    (8 bytes each) and signatures only of candidate pairs, so the gate's memory stays near 8 bytes a
    document whatever the corpus size."""

    def __init__(
        self,
        parts: list[tuple[np.ndarray, np.ndarray]],
        texts: Callable[[np.ndarray], list[str]] | None = None,
        ngram: int = 3,
    ) -> None:
        self.parts, self.texts, self.ngram = parts, texts, ngram
        self.starts = np.cumsum([0] + [len(sigs) for sigs, _ in parts])

    @classmethod
    def of(cls, texts: Sequence[str], ngram: int = 3, keep_texts: bool = True) -> Signatures:
        """In memory, from the texts; with ``keep_texts`` candidates are verified exactly."""
        sigs, shingles = signatures(texts, ngram, counts=True)
        lookup = (lambda index: [texts[i] for i in index.tolist()]) if keep_texts else None
        return cls([(sigs, band_keys(sigs, shingles))] if len(sigs) else [], lookup, ngram)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def band(self, j: int) -> np.ndarray:
        return np.concatenate([bands[j] for _, bands in self.parts]) if self.parts else np.zeros(0, np.uint64)

    def rows(self, index: np.ndarray, bands: bool = False) -> np.ndarray:
        """Signatures of documents ``index`` (``bands``: their band keys, ``(BANDS, len(index))``)."""
        out = np.empty((BANDS, len(index)), np.uint64) if bands else np.empty((len(index), BINS), np.uint16)
        part = np.searchsorted(self.starts, index, side="right") - 1
        order = np.argsort(part, kind="stable")
        bounds = np.searchsorted(part[order], np.arange(len(self.parts) + 1))
        for p in np.flatnonzero(np.diff(bounds)):
            mine = order[bounds[p] : bounds[p + 1]]
            local = index[mine] - self.starts[p]
            if bands:
                out[:, mine] = self.parts[p][1][:, local]
            else:
                out[mine] = self.parts[p][0][local]
        return out


def shingle_set(text: str, ngram: int = 3) -> set[tuple[str, ...]]:
    """The word n-grams of ``text`` with the normalisation :func:`signatures` uses (lower case, split on
    white space, punctuation stripped from both ends of each word)."""
    words = [w for w in (t.strip(_PUNCTUATION) for t in text.lower().split()) if w]
    if len(words) < ngram:
        return {tuple(words)} if words else set()
    return {tuple(words[i : i + ngram]) for i in range(len(words) - ngram + 1)}


def jaccard(a: str, b: str, ngram: int = 3) -> float:
    """The exact Jaccard similarity of two texts' shingle sets."""
    x, y = shingle_set(a, ngram), shingle_set(b, ngram)
    return len(x & y) / len(x | y) if x and y else 0.0


_BLOCK = 500_000  # candidate pairs verified at a time
_MARGIN = 0.2  # with the texts at hand, signatures only pre-filter: exact similarity decides


def _verify(a: Signatures, rows_a: np.ndarray, b: Signatures, *, rows_b: np.ndarray, threshold: float) -> np.ndarray:
    """Which pairs are near-copies: by the exact Jaccard of their shingles when both sides have their texts
    (the batch, frozen eval sets), else by the signatures' estimate (documents trained on earlier)."""
    if not len(rows_a):
        return np.zeros(0, bool)
    exact = a.texts is not None and b.texts is not None
    estimate = similarity(a.rows(rows_a), b.rows(rows_b))
    close = estimate >= threshold - (_MARGIN if exact else 0.0)
    check = close & (estimate < 1.0)  # all 128 bins equal: the same shingles, no need to look
    if exact and check.any():
        pairs = zip(a.texts(rows_a[check]), b.texts(rows_b[check]), strict=True)
        close[check] = [jaccard(x, y, a.ngram) >= threshold for x, y in pairs]
    return close


def _pairs_in_band(keys: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Pairs ``(earlier, later)`` of ``rows`` with the same key: each later row with the first and with the
    previous row of its group. Keys seen once (nearly all) are set aside by hashing, so only the few shared
    ones are sorted."""
    shared = pd.Series(keys).duplicated(keep=False).to_numpy() & (keys != 0)
    if not shared.any():
        return np.zeros((0, 2), np.int64)
    keys, rows = keys[shared], rows[shared]
    order = np.argsort(keys, kind="stable")
    keys, rows = keys[order], rows[order]
    same = keys[1:] == keys[:-1]
    group_start = np.maximum.accumulate(np.where(np.concatenate([[True], ~same]), np.arange(len(rows)), 0))
    later = np.flatnonzero(np.concatenate([[False], same]))
    return np.concatenate(
        [np.stack([rows[later - 1], rows[later]], axis=1), np.stack([rows[group_start[later]], rows[later]], axis=1)]
    )


def near_pairs(store: Signatures, threshold: float, rows: np.ndarray | None = None) -> np.ndarray:
    """Pairs ``(earlier, later)`` of ``rows`` (default all) whose estimated Jaccard is at least ``threshold``."""
    rows = np.arange(len(store)) if rows is None else rows
    if len(rows) < 2:
        return np.zeros((0, 2), np.int64)
    pairs = np.concatenate([_pairs_in_band(store.band(j)[rows], rows) for j in range(BANDS)])
    codes = np.sort(pairs[:, 0].astype(np.int64) * len(store) + pairs[:, 1])  # each pair once (a sort:
    codes = codes[np.concatenate([codes[:1] == codes[:1], codes[1:] != codes[:-1]])]  # hashed unique: slower)
    pairs = np.stack([codes // len(store), codes % len(store)], axis=1)
    keep = np.concatenate(  # in blocks: each pair reads two signatures (512 bytes)
        [
            _verify(store, block[:, 0], store, rows_b=block[:, 1], threshold=threshold)
            for block in np.split(pairs, range(_BLOCK, len(pairs), _BLOCK))
        ]
    )
    return pairs[keep]


def within(store: Signatures, threshold: float, rows: np.ndarray | None = None) -> np.ndarray:
    """True for each document (of ``rows``, default all) that is a near-duplicate (estimated Jaccard >=
    ``threshold``) of an earlier one of ``rows``: the first of each group of near-copies is kept."""
    out = np.zeros(len(store), bool)
    out[near_pairs(store, threshold, rows)[:, 1]] = True
    return out


def against(
    store: Signatures, reference: Signatures, threshold: float, *, rows: np.ndarray | None = None
) -> np.ndarray:
    """True for each document (of ``rows``, default all) with a near-copy in ``reference``."""
    out = np.zeros(len(store), bool)
    rows = np.arange(len(store)) if rows is None else rows
    if not len(rows) or not len(reference):
        return out
    for j in range(BANDS):
        ref = reference.band(j)
        order = np.argsort(ref)
        ref = ref[order]
        keys = store.band(j)[rows]
        at = np.minimum(np.searchsorted(ref, keys), len(ref) - 1)
        hit = np.flatnonzero((ref[at] == keys) & (keys != 0) & ~out[rows])
        close = _verify(store, rows[hit], reference, rows_b=order[at[hit]], threshold=threshold)
        out[rows[hit[close]]] = True
    return out
