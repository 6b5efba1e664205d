"""The retrieval path's inputs, settings and results: plain frozen dataclasses and the lookups
callers hand in (reference ids -> SKU ids; candidate SKUs -> their catalogue text)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from ml.fuse import DEFAULT_STRATEGY, STRATEGIES
from ml.interfaces import EvidenceReranker
from ml.rerank.types import CandidateEvidence, CatalogueEntry, LocalFeatures
from ml.types import Box, Isolation, SkuScore

# References retrieved per photo before fusion, whatever the number of candidates shown: a
# ranking cut at 4 (the gate) is then a prefix of the same ranking cut at 8 (the page). It is
# deep enough for 8 SKUs with ~20 appraisal images each to surface, and cheap on a flat or IVF
# index (docs/benchmarks.md, "Index at 1M vectors").
DEFAULT_SEARCH_DEPTH = 200

SkuLookup = Callable[[Collection[int]], Mapping[int, int]]
# Candidate SKU ids -> (their text and attributes, their reference ids): what the evidence
# stage compares (the web app reads the database; evaluation the gallery CSV).
CatalogueLookup = Callable[
    [Sequence[int]], tuple[Mapping[int, CatalogueEntry], Mapping[int, Sequence[int]]]
]


@dataclass(frozen=True)
class RetrievalConfig:
    """How photos become one ranking; shared by every caller."""

    strategy: str = DEFAULT_STRATEGY
    search_depth: int = DEFAULT_SEARCH_DEPTH

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"fusion strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.search_depth < 1:
            raise ValueError("search_depth must be at least 1")

    def depth(self, available: int) -> int:
        """References to retrieve per photo when ``available`` pass the filter."""
        return max(1, min(self.search_depth, available))


DEFAULT_CONFIG = RetrievalConfig()


@dataclass(frozen=True)
class Query:
    """One item: its photos and what constrains the search."""

    images: Sequence[Image.Image]
    allowed_ids: np.ndarray | None = None  # [m] reference ids the filters allow; None = all
    corrected_boxes: Sequence[Box | None] | None = None  # per photo, the appraiser's box
    detection_classes: Sequence[str] = ()
    # Typed by the appraiser: evidence for re-ranking, never a filter.
    query_text: str = ""
    soft_attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RerankStep:
    """The evidence stage inside the retrieval path: the stage (anything that offers
    :class:`ml.interfaces.EvidenceReranker`, e.g. :class:`ml.rerank.stage.Reranker`) and where
    it reads the candidates' catalogue text and reference ids."""

    reranker: EvidenceReranker
    catalogue: CatalogueLookup


@dataclass(frozen=True)
class EvidenceInputs:
    """What the evidence stage needs of one query beyond its vectors: the isolated crops that
    were embedded, what was typed, and (benchmarks) precomputed per-crop features."""

    crops: Sequence[Image.Image]
    query_text: str = ""
    soft_attributes: Mapping[str, str] = field(default_factory=dict)
    query_features: Sequence[LocalFeatures] | None = None


@dataclass(frozen=True)
class Ranked:
    """One query's ranking; with re-ranking also the evidence of its first candidates (in
    ranked order), the stage's confident flag and the visual ranking it started from."""

    candidates: list[SkuScore]
    evidence: list[CandidateEvidence] = field(default_factory=list)
    confident: bool | None = None
    visual: list[SkuScore] = field(default_factory=list)


@dataclass(frozen=True)
class Retrieval:
    """One query's result: candidates best first, how each photo was isolated, stage timings."""

    candidates: list[SkuScore]
    isolations: list[Isolation]
    timings_ms: dict[str, float] = field(default_factory=dict)
    evidence: list[CandidateEvidence] = field(default_factory=list)  # with re-ranking
    confident: bool | None = None



def lookup_from(mapping: Mapping[int, int]) -> SkuLookup:
    """A :data:`SkuLookup` over a fixed reference id -> SKU id mapping."""
    return lambda ids: {i: mapping[i] for i in ids if i in mapping}


__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_SEARCH_DEPTH",
    "CatalogueLookup",
    "EvidenceInputs",
    "Query",
    "Ranked",
    "RerankStep",
    "Retrieval",
    "RetrievalConfig",
    "SkuLookup",
    "lookup_from",
]
