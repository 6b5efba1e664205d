"""Search, fuse and re-rank: where a query's photo vectors become a SKU ranking.

Serving, the promotion gate and ``python -m ml evaluate`` all rank through :func:`rank_vectors`
(or :func:`rank_with_evidence`), with the same search depth rule and fusion strategy.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from ml.fuse import rank_skus
from ml.interfaces import SearchIndex
from ml.rerank.types import RerankQuery
from ml.retrieval.types import (
    DEFAULT_CONFIG,
    EvidenceInputs,
    Ranked,
    RerankStep,
    RetrievalConfig,
    SkuLookup,
)
from ml.types import SkuScore


def rank_vectors(
    vectors_per_query: Sequence[np.ndarray],
    index: SearchIndex,
    sku_of: SkuLookup,
    *,
    allowed: Sequence[np.ndarray | None] | None = None,
    top_k: int,
    config: RetrievalConfig = DEFAULT_CONFIG,
    timings: Sequence[dict[str, float]] | None = None,
    rerank: RerankStep | None = None,
    inputs: Sequence[EvidenceInputs] | None = None,
) -> list[list[SkuScore]]:
    """Search and fuse (and re-rank): the one place a query's photo vectors become a SKU
    ranking. The candidates of :func:`rank_with_evidence`, which documents the arguments."""
    ranked = rank_with_evidence(
        vectors_per_query, index, sku_of, allowed=allowed, top_k=top_k, config=config,
        timings=timings, rerank=rerank, inputs=inputs,
    )
    return [r.candidates for r in ranked]


def rank_with_evidence(
    vectors_per_query: Sequence[np.ndarray],
    index: SearchIndex,
    sku_of: SkuLookup,
    *,
    allowed: Sequence[np.ndarray | None] | None = None,
    top_k: int,
    config: RetrievalConfig = DEFAULT_CONFIG,
    timings: Sequence[dict[str, float]] | None = None,
    rerank: RerankStep | None = None,
    inputs: Sequence[EvidenceInputs] | None = None,
) -> list[Ranked]:
    """Search, fuse and, given ``rerank`` and ``inputs``, re-rank with evidence.

    Args:
        vectors_per_query: per query, ``[n_photos, dim]`` L2-normalised photo embeddings.
        index: reference vectors keyed by reference id.
        sku_of: reference ids -> SKU ids; references it leaves out (a deactivated SKU, a
            reference deleted since the index was built) are not offered.
        allowed: per query, the ``[m]`` reference ids the filters allow (None = all).
        top_k: SKUs to return per query.
        config: fusion strategy and search depth.
        timings: per query, a dict that gets ``search`` and ``fuse`` milliseconds (and the
            stage's ``rerank_*``).
        rerank: the evidence stage; it re-ranks the first ``rerank.reranker.config.top_k``
            fused candidates of every query that has ``inputs``.
        inputs: per query, its crops and typed text (None: no re-ranking).

    Returns:
        Per query, up to ``top_k`` :class:`SkuScore` by score descending, and the evidence.
    """
    allowed = list(allowed) if allowed is not None else [None] * len(vectors_per_query)
    if len(allowed) != len(vectors_per_query):
        raise ValueError("one allowed-id array (or None) per query")
    if inputs is not None and len(inputs) != len(vectors_per_query):
        raise ValueError("one EvidenceInputs per query")
    active = rerank if rerank is not None and inputs is not None else None
    fused_k = max(top_k, active.reranker.config.top_k) if active is not None else top_k
    searched: list[tuple[np.ndarray, np.ndarray]] = []
    search_ms: list[float] = []
    for vectors, ids in zip(vectors_per_query, allowed, strict=True):
        started = time.perf_counter()
        available = index.ntotal if ids is None else len(ids)
        searched.append(index.search(vectors, config.depth(available), allowed_ids=ids))
        search_ms.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    hit_ids = {int(i) for _, ids in searched for i in ids.ravel().tolist() if i >= 0}
    mapping = sku_of(hit_ids)
    lookup_ms = (time.perf_counter() - started) * 1000 / max(1, len(searched))
    out = []
    for q, (cosines, reference_ids) in enumerate(searched):
        started = time.perf_counter()
        visual = rank_skus(cosines, reference_ids, mapping, top_k=fused_k,
                           strategy=config.strategy)
        if timings is not None:
            timings[q]["search"] = search_ms[q]
            timings[q]["fuse"] = (time.perf_counter() - started) * 1000 + lookup_ms
        if active is None or inputs is None or not visual:
            out.append(Ranked(visual[:top_k], visual=visual))
            continue
        given = inputs[q]
        head = [c.sku_id for c in visual[: active.reranker.config.top_k]]
        entries, references = active.catalogue(head)
        result = active.reranker.rerank(
            RerankQuery(crops=given.crops, cosines=cosines, reference_ids=reference_ids,
                        embeddings=vectors_per_query[q], query_text=given.query_text,
                        soft_attributes=dict(given.soft_attributes)),
            visual, catalogue=entries, sku_references=references, ref_to_sku=mapping,
            query_features=given.query_features,
        )
        if timings is not None:
            timings[q].update(result.timings_ms)
        out.append(Ranked(result.candidates[:top_k], result.evidence, result.confident, visual))
    return out


__all__ = ["rank_vectors", "rank_with_evidence"]
