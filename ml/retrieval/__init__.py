"""One retrieval path: isolate -> embed -> search -> fuse (-> re-rank with evidence).

Serving (the web app's worker), the promotion gate, the live measurement of the learning-loop
simulation and ``python -m ml evaluate`` all rank through :func:`rank_vectors`, with the same
search depth rule and the same fusion strategy, so the gate measures what serving does. Callers
that start from photos use :class:`Retriever`; callers that already hold the item crops (the
gate reads the isolation stored with each past match) enter at the embedding.

With a :class:`RerankStep` and each query's crops (:class:`EvidenceInputs`), the fused top-K
goes through the evidence stage (:mod:`ml.rerank`) inside the same function
(:func:`rank_with_evidence`), so whoever passes them ranks exactly as serving does.
"""

from __future__ import annotations

from ml.interfaces import Found, ImageEmbedder, ItemDetector
from ml.retrieval.isolation import SEGMENTATIONS, Isolator
from ml.retrieval.ranking import rank_vectors, rank_with_evidence
from ml.retrieval.retriever import Retriever, overlapped
from ml.retrieval.types import (
    DEFAULT_CONFIG,
    DEFAULT_SEARCH_DEPTH,
    CatalogueLookup,
    EvidenceInputs,
    Query,
    Ranked,
    RerankStep,
    Retrieval,
    RetrievalConfig,
    SkuLookup,
    lookup_from,
)

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_SEARCH_DEPTH",
    "CatalogueLookup",
    "EvidenceInputs",
    "Found",
    "ImageEmbedder",
    "Isolator",
    "ItemDetector",
    "Query",
    "Ranked",
    "RerankStep",
    "Retrieval",
    "RetrievalConfig",
    "Retriever",
    "SEGMENTATIONS",
    "SkuLookup",
    "lookup_from",
    "overlapped",
    "rank_vectors",
    "rank_with_evidence",
]
