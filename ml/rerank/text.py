"""Words as evidence: OCR'd or typed words fuzzily matched to each candidate's catalogue text.

A candidate's vocabulary is the words of its name, brand, series, description and attribute
values, plus the words read on its reference images when the index was built. Words are
compared accent-folded and case-folded with rapidfuzz: ``ratio`` for whole words, and the
catalogue word inside a read word for words the recogniser ran together ("THEORIGINAL").

A word counts by how well it *separates* the candidates: its weight is
``log((K + 1) / df)``, ``df`` the number of the K candidates whose vocabulary holds it, so
"juice" on a juice carton weighs ~0 among eight juices while the brand weighs most. The
weights need no catalogue-wide statistics, so the same code serves a catalogue of any size.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from rapidfuzz import fuzz, process

from ml.rerank.types import CatalogueEntry, OcrWord, TextEvidence, WordMatch

MIN_CHARS = 3
SIMILARITY = 80.0  # rapidfuzz ratio (0-100) from which two words are the same word
# A catalogue word found inside a longer read word counts when it is at least this long.
MIN_INFIX_CHARS = 4
FIELDS = ("name", "brand", "series", "description", "attributes", "reference_text")
# Words that say nothing about which product it is, in the catalogue's two languages here.
STOPWORDS = frozenset(
    "and the with for from per".split()
    + "och med som for fran till har det den av pa ar ett en".split()
)
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)


def fold(text: str) -> str:
    """Case-fold and strip accents: ``"Mjölk"`` -> ``"mjolk"``."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def words(text: str) -> list[str]:
    """Folded alphanumeric words of at least :data:`MIN_CHARS` characters, stopwords out."""
    return [w for w in _TOKEN.findall(fold(text)) if len(w) >= MIN_CHARS and w not in STOPWORDS]


@dataclass(frozen=True)
class Vocabulary:
    """One candidate's words, each with the first field it came from."""

    sku_id: int
    source: Mapping[str, str]  # word -> field


def vocabulary(entry: CatalogueEntry, reference_words: Iterable[str] = ()) -> Vocabulary:
    """The words of a catalogue entry (name, brand, series, description, attribute values)
    and of its reference images' OCR."""
    source: dict[str, str] = {}
    texts = (
        ("name", entry.name.replace("-", " ")),
        ("brand", entry.brand),
        ("series", entry.series),
        ("attributes", " ".join(str(v) for v in entry.attributes.values())),
        ("description", entry.description),
        ("reference_text", " ".join(reference_words)),
    )
    for field, text in texts:
        for w in words(text):
            source.setdefault(w, field)
    return Vocabulary(entry.sku_id, source)


def similarity(read: str, catalogue_word: str) -> float:
    """0-100: whole-word ratio, or (5 points less) the catalogue word found inside a longer
    read word."""
    score = fuzz.ratio(read, catalogue_word)
    if len(catalogue_word) >= MIN_INFIX_CHARS and len(read) > len(catalogue_word) + 1:
        score = max(score, fuzz.partial_ratio(catalogue_word, read) - 5.0)
    return float(score)


def match_words(
    read: Sequence[OcrWord] | Sequence[str],
    vocabularies: Sequence[Vocabulary],
    *,
    threshold: float = SIMILARITY,
) -> list[TextEvidence]:
    """Match read (or typed) words against each candidate's vocabulary.

    Args:
        read: OCR words (their boxes are kept for highlighting) or plain typed words.
        vocabularies: one per candidate, in candidate order.
        threshold: minimum similarity (0-100).

    Returns:
        One :class:`TextEvidence` per candidate: each catalogue word matched at most once (by
        its most similar read word), ``score`` the sum of ``weight * similarity / 100``.
    """
    tokens: list[str] = []
    origins: list[OcrWord | None] = []
    for item in read:
        text = item.text if isinstance(item, OcrWord) else str(item)
        for w in words(text):
            tokens.append(w)
            origins.append(item if isinstance(item, OcrWord) else None)
    k = len(vocabularies)
    document_frequency: dict[str, int] = {}
    for vocab in vocabularies:
        for w in vocab.source:
            document_frequency[w] = document_frequency.get(w, 0) + 1
    union = sorted(document_frequency)
    sims = similarity_matrix(tokens, union)  # [tokens, union]
    column = {w: j for j, w in enumerate(union)}

    out = []
    for vocab in vocabularies:
        matches = []
        for catalogue_word, field in vocab.source.items():
            if not tokens:
                break
            scores = sims[:, column[catalogue_word]]
            t = int(np.argmax(scores))
            sim = float(scores[t])
            if sim < threshold:
                continue
            origin = origins[t]
            matches.append(WordMatch(
                word=origin.text if origin is not None else tokens[t],
                matched=catalogue_word,
                source=field,
                similarity=round(sim, 1),
                weight=round(math.log((k + 1) / document_frequency[catalogue_word]), 4),
                box=origin.box if origin is not None else None,
                query_index=origin.query_index if origin is not None else 0,
            ))
        matches.sort(key=lambda m: (-m.weight * m.similarity, m.matched))
        score = sum(m.weight * m.similarity / 100.0 for m in matches)
        out.append(TextEvidence(matches, round(score, 4)))
    return out


def similarity_matrix(read: Sequence[str], catalogue: Sequence[str]) -> np.ndarray:
    """``[len(read), len(catalogue)]`` float32 :func:`similarity` of every pair, in C."""
    if not read or not catalogue:
        return np.zeros((len(read), len(catalogue)), np.float32)
    whole = process.cdist(read, catalogue, scorer=fuzz.ratio, dtype=np.float32, workers=1)
    read_len = np.array([len(w) for w in read])[:, None]
    word_len = np.array([len(w) for w in catalogue])[None, :]
    infix = (word_len >= MIN_INFIX_CHARS) & (read_len > word_len + 1)
    if infix.any():
        # partial_ratio aligns the shorter string inside the longer, whichever comes first.
        inside = process.cdist(read, catalogue, scorer=fuzz.partial_ratio, dtype=np.float32,
                               workers=1)
        whole = np.where(infix, np.maximum(whole, inside - 5.0), whole)
    return whole


__all__ = ["FIELDS", "SIMILARITY", "Vocabulary", "fold", "match_words", "similarity",
           "similarity_matrix", "vocabulary", "words"]
