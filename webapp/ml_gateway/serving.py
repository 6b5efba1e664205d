"""Matching and measuring with the live model and index: plain queries in, ml.types out.

A worker process loads the embedder once and reloads the index only when the active index
version changes.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from PIL import Image

from ml.evaluate import query_outcomes
from ml.rerank.memo import QueryEvidenceMemo
from ml.retrieval import EvidenceInputs, Query, Retriever, rank_with_evidence
from ml.types import Box, Isolation, QueryOutcome, SkuScore
from webapp.ml_gateway import evidence, runtime
from webapp.ml_gateway.indexes import active_index
from webapp.ml_gateway.sources import IndexUnavailable, sources_installed

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MatchResult:
    candidates: list[SkuScore]
    timings_ms: dict[str, float]
    model_version: str
    index_version: str
    isolations: list[Isolation]
    # Re-ranking evidence per candidate (ml.rerank CandidateEvidence as JSON, each with its
    # sku_id) and the stage's confident flag; empty / None without re-ranking.
    evidence: list[dict[str, object]] = field(default_factory=list)
    confident: bool | None = None


def gallery_outcomes(
    gallery_vectors: np.ndarray,
    gallery_labels: np.ndarray,
    query_vectors: np.ndarray,
    query_labels: np.ndarray,
    groups: Sequence[Sequence[int]],
    *,
    allowed: Sequence[np.ndarray | None],
    top_k: int,
    gallery_image_ids: Sequence[int] | None = None,
    crops: Sequence[Sequence[Image.Image]] | None = None,
    model_ref: str | None = None,
    memo: QueryEvidenceMemo | None = None,
) -> list[QueryOutcome]:
    """Labelled queries ranked against an in-memory gallery exactly as a match ranks them
    (same depth rule and fusion, and, given the gallery's SKUImage ids and each group's crops,
    the same re-ranking): the gate's per-query figures. ``memo`` keeps the query crops'
    features and words for the next call on the same photos."""
    step = inputs = None
    if settings.RERANK and gallery_image_ids is not None and crops is not None:
        step = evidence.gallery_rerank_step(gallery_image_ids, gallery_labels,
                                            model_ref or runtime.default_model_ref(),
                                            memo=memo)
        inputs = _EvidenceOnDemand(crops)
    return query_outcomes(
        gallery_vectors, gallery_labels, query_vectors, query_labels, groups,
        allowed=allowed, config=runtime.retrieval_config(), top_k=top_k, rerank=step,
        inputs=inputs,
    )


class _EvidenceOnDemand(Sequence[EvidenceInputs]):
    """Per query, its evidence inputs made when the evidence stage reaches it and not kept:
    the gate re-ranks thousands of requests without holding every crop and its local
    features at once (``crops`` may itself load each query's crops on access)."""

    def __init__(self, crops: Sequence[Sequence[Image.Image]]) -> None:
        self._crops = crops

    def __len__(self) -> int:
        return len(self._crops)

    def __getitem__(self, q: int) -> EvidenceInputs:  # type: ignore[override]
        return EvidenceInputs(list(self._crops[q]))


def warm_up() -> None:
    """Load the models and index now, so the first task does not pay for it."""
    try:
        active_index.get()  # first: it fetches a trained checkpoint the embedder needs
    except IndexUnavailable as exc:
        logger.warning("warm-up: %s", exc)
    runtime.embedder()
    runtime.detector()


MatchQuery = Query  # one request's photos and constraints, as the model sees them


def active_sku_lookup(reference_ids: Collection[int]) -> dict[int, int]:
    """Reference id -> SKU id for references of active SKUs: a SKU deactivated since the last
    index sync must not be offered."""
    return sources_installed().sku_of(reference_ids)


def _live_retriever(*, rerank: bool = False) -> tuple[str, str, Retriever]:
    index_name, index, model_ref = active_index.get()
    retriever = Retriever(
        embedder=runtime.embedder(model_ref), index=index, sku_of=active_sku_lookup,
        isolator=runtime.isolator(), config=runtime.retrieval_config(),
        overlap_photos=settings.OVERLAP_PHOTOS,
        rerank=(evidence.rerank_step(index_name, model_ref)
                if rerank and settings.RERANK else None),
    )
    return index_name, model_ref, retriever


def match(
    images: Sequence[Image.Image],
    *,
    allowed_reference_ids: np.ndarray | None,
    top_k: int,
    corrected_boxes: Sequence[Box | None] | None = None,
    detection_classes: Sequence[str] = (),
) -> MatchResult:
    query = Query(images, allowed_reference_ids, corrected_boxes, detection_classes)
    return match_batch([query], top_k=top_k)[0]


def match_batch(queries: Sequence[Query], *, top_k: int) -> list[MatchResult]:
    """Several requests through the model together (`ml.retrieval.Retriever`): one detector
    call per set of target classes and one embedding pass for every photo, then a search and a
    fusion per request. A request's stage timings are its share of the batch's."""
    if not queries:
        return []
    index_name, model_ref, retriever = _live_retriever(rerank=True)
    version = runtime.embedding_version(model_ref)
    return [
        MatchResult(found.candidates, found.timings_ms, version, index_name, found.isolations,
                    [e.to_json() for e in found.evidence], found.confident)
        for found in retriever.retrieve(queries, top_k=top_k)
    ]


@dataclass(frozen=True)
class LiveRankings:
    """Rankings of labelled photos by the live model and index (`rank_live`)."""

    model_version: str
    index_version: str
    index_size: int
    rankings: dict[str, list[list[SkuScore]]]  # variant -> per query, SKUs best first


def rank_live(
    queries: Sequence[Sequence[Image.Image]],
    *,
    variants: dict[str, np.ndarray | None],
    classes: Sequence[str] = (),
    top_k: int,
    batch_size: int = 32,
) -> LiveRankings:
    """Rank each query (1..N photos) exactly as a match does, once per variant of allowed
    reference ids (e.g. "cold": catalogue images only, "warm": everything), embedding once."""
    index_name, model_ref, retriever = _live_retriever(rerank=True)
    vectors: list[np.ndarray] = []
    crops: list[list[Image.Image]] = []
    for start in range(0, len(queries), batch_size):
        chunk = [Query(photos, detection_classes=classes) for photos in
                 queries[start : start + batch_size]]
        chunk_vectors, _isolations, chunk_crops = retriever.embed_queries_with_crops(chunk)
        vectors.extend(chunk_vectors)
        crops.extend(chunk_crops)
    inputs = [EvidenceInputs(c) for c in crops] if retriever.rerank_step is not None else None
    rankings = {
        name: [r.candidates for r in rank_with_evidence(
            vectors, retriever.index, retriever.sku_of, allowed=[allowed] * len(vectors),
            top_k=top_k, config=retriever.config, rerank=retriever.rerank_step, inputs=inputs,
        )]
        for name, allowed in variants.items()
    }
    return LiveRankings(runtime.embedding_version(model_ref), index_name,
                        retriever.index.ntotal, rankings)
