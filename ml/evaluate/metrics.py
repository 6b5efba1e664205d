"""Retrieval metrics: Recall@K over the fused per-SKU ranking, and MAP@R.

* Recall@K (= Top-K accuracy): fraction of queries whose label is among the first K distinct
  labels of the per-SKU ranking (:func:`ml.fuse.rank_skus`), the ranking appraisers see.
* MAP@R, as in pytorch-metric-learning: R = number of gallery items with the query's label
  (among those the filter allows); AP@R = (1/R) sum_{i<=R} P(i) rel(i) over the reference
  ranking. For a multi-photo query a reference's similarity is its best over the photos.

The gallery and the queries are separate sets (no self-matches to exclude).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ml.datasets import ImageRecord
from ml.fuse import DEFAULT_STRATEGY
from ml.index import VectorIndex
from ml.retrieval import (
    DEFAULT_CONFIG,
    DEFAULT_SEARCH_DEPTH,
    EvidenceInputs,
    RerankStep,
    RetrievalConfig,
    lookup_from,
    rank_vectors,
)
from ml.types import EvalReport, QueryOutcome

RECALL_KS = (1, 4, 10)


def average_precision_at_r(relevant: np.ndarray, r: int) -> float:
    """AP@R of one ranking.

    Args:
        relevant: ``[n]`` bool, relevance of the ranked references, best first (n >= r is
            not required: missing positions count as not relevant).
        r: number of relevant references in the gallery.
    """
    if r <= 0:
        return 0.0
    rel = np.zeros(r, dtype=np.float64)
    top = np.asarray(relevant[:r], dtype=np.float64)
    rel[: len(top)] = top
    precision = np.cumsum(rel) / np.arange(1, r + 1)
    return float((precision * rel).sum() / r)


def first_hit_rank(ranked_labels: Sequence[int], label: int) -> int | None:
    """0-based position of ``label`` in a ranking, or None."""
    for i, lab in enumerate(ranked_labels):
        if lab == label:
            return i
    return None


def group_queries(
    records: Sequence[ImageRecord], *, group_size: int | None = None
) -> list[list[int]]:
    """Query groups as lists of row indices.

    Rows with a ``group`` value are grouped by it; other rows are single-photo queries, unless
    ``group_size`` is given, which chunks consecutive ungrouped rows of the same label into
    synthetic multi-photo queries of up to ``group_size`` photos.
    """
    groups: dict[str, list[int]] = {}
    singles: list[list[int]] = []
    pending: dict[str, list[int]] = {}
    for i, rec in enumerate(records):
        if rec.group:
            groups.setdefault(rec.group, []).append(i)
        elif group_size and group_size > 1:
            chunk = pending.setdefault(rec.label, [])
            chunk.append(i)
            if len(chunk) == group_size:
                singles.append(pending.pop(rec.label))
        else:
            singles.append([i])
    singles.extend(chunk for chunk in pending.values() if chunk)
    out = list(groups.values()) + singles
    for rows in groups.values():
        labels = {records[i].label for i in rows}
        if len(labels) > 1:
            raise ValueError(f"query group {records[rows[0]].group!r} mixes labels {labels}")
    return sorted(out, key=lambda rows: rows[0])


def query_outcomes(
    gallery_vectors: np.ndarray,
    gallery_labels: np.ndarray,
    query_vectors: np.ndarray,
    query_labels: np.ndarray,
    groups: Sequence[Sequence[int]] | None = None,
    *,
    allowed: Sequence[np.ndarray | None] | None = None,
    config: RetrievalConfig = DEFAULT_CONFIG,
    top_k: int = max(RECALL_KS),
    rerank: RerankStep | None = None,
    inputs: Sequence[EvidenceInputs] | None = None,
) -> list[QueryOutcome]:
    """Per query group: the ranking serving would show (:func:`ml.retrieval.rank_vectors`, same
    depth rule and fusion, and the same re-ranking given ``rerank`` and per group ``inputs``:
    gallery row numbers are its reference ids) and AP@R over the exact full reference ranking.

    Args:
        gallery_vectors: ``[g, dim]`` L2-normalised.
        gallery_labels: ``[g]`` int labels.
        query_vectors: ``[n, dim]`` L2-normalised.
        query_labels: ``[n]`` int labels.
        groups: query groups (row indices of ``query_vectors``); default one row per query.
        allowed: per group, the gallery row indices the filter allows (None = all).
        config: fusion strategy and search depth.
        top_k: SKUs kept in each ranking.
    """
    gallery_labels = np.asarray(gallery_labels, dtype=np.int64)
    query_labels = np.asarray(query_labels, dtype=np.int64)
    if groups is None:
        groups = [[i] for i in range(len(query_vectors))]
    allowed = list(allowed) if allowed is not None else [None] * len(groups)
    # Exact search (never an IVF approximation): metrics need the true rankings.
    index = VectorIndex.build(
        np.arange(len(gallery_vectors), dtype=np.int64), gallery_vectors, kind="flat"
    )
    rankings = rank_vectors(
        [query_vectors[list(rows)] for rows in groups], index,
        lookup_from(dict(enumerate(gallery_labels.tolist()))),
        allowed=allowed, top_k=top_k, config=config, rerank=rerank, inputs=inputs,
    )
    out = []
    for rows, allowed_ids, ranking in zip(groups, allowed, rankings, strict=True):
        label = int(query_labels[rows[0]])
        available = index.ntotal if allowed_ids is None else len(allowed_ids)
        cos, ids = index.search(query_vectors[list(rows)], max(1, available),
                                allowed_ids=allowed_ids)
        pool = gallery_labels if allowed_ids is None else gallery_labels[allowed_ids]
        r = int((pool == label).sum())
        ap = average_precision_at_r(gallery_labels[_reference_ranking(cos, ids)] == label, r)
        out.append(QueryOutcome(ranking, first_hit_rank([s.sku_id for s in ranking], label), ap))
    return out


def evaluate_embeddings(
    gallery_vectors: np.ndarray,
    gallery_labels: np.ndarray,
    query_vectors: np.ndarray,
    query_labels: np.ndarray,
    groups: Sequence[Sequence[int]] | None = None,
    *,
    allowed: Sequence[np.ndarray | None] | None = None,
    strategy: str = DEFAULT_STRATEGY,
    search_depth: int = DEFAULT_SEARCH_DEPTH,
) -> EvalReport:
    """Recall@1/4/10 and MAP@R from embeddings (see :func:`query_outcomes`)."""
    outcomes = query_outcomes(
        gallery_vectors, gallery_labels, query_vectors, query_labels, groups, allowed=allowed,
        config=RetrievalConfig(strategy=strategy, search_depth=search_depth),
    )
    return report_from(outcomes)


def report_from(outcomes: Sequence[QueryOutcome]) -> EvalReport:
    n = len(outcomes)
    recall = [sum(o.hit(k) for o in outcomes) / n if n else 0.0 for k in RECALL_KS]
    return EvalReport(
        recall_at_1=float(recall[0]),
        recall_at_4=float(recall[1]),
        recall_at_10=float(recall[2]),
        map_at_r=sum(o.ap_at_r for o in outcomes) / n if n else 0.0,
        n_queries=n,
    )


def _reference_ranking(cos: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Gallery ids best first, each at its best cosine over the query photos."""
    best: dict[int, float] = {}
    for c, i in zip(cos.ravel().tolist(), ids.ravel().tolist(), strict=True):
        if i >= 0 and c > best.get(i, -np.inf):
            best[i] = c
    order = sorted(best, key=lambda i: (-best[i], i))
    return np.asarray(order, dtype=np.int64)


def allowed_per_group(
    gallery: Sequence[ImageRecord],
    queries: Sequence[ImageRecord],
    groups: Sequence[Sequence[int]],
    column: str,
) -> tuple[list[np.ndarray | None], int]:
    """Per group, gallery rows whose ``column`` equals the query's; None when the query has
    no value (it is then searched unfiltered and counted)."""
    by_value: dict[str, list[int]] = {}
    for i, rec in enumerate(gallery):
        value = rec.get(column)
        if value is not None:
            by_value.setdefault(value, []).append(i)
    allowed: list[np.ndarray | None] = []
    missing = 0
    for rows in groups:
        value = queries[rows[0]].get(column)
        if value is None:
            allowed.append(None)
            missing += 1
        else:
            allowed.append(np.asarray(by_value.get(value, []), dtype=np.int64))
    return allowed, missing


__all__ = [
    "RECALL_KS",
    "QueryOutcome",
    "allowed_per_group",
    "average_precision_at_r",
    "evaluate_embeddings",
    "first_hit_rank",
    "group_queries",
    "query_outcomes",
    "report_from",
]
