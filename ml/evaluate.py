"""Retrieval evaluation: Recall@K over the fused per-SKU ranking, and MAP@R.

* Recall@K (= Top-K accuracy): fraction of queries whose label is among the first K distinct
  labels of the per-SKU ranking (:func:`ml.fuse.rank_skus`), the ranking appraisers see.
* MAP@R, as in pytorch-metric-learning: R = number of gallery items with the query's label
  (among those the filter allows); AP@R = (1/R) sum_{i<=R} P(i) rel(i) over the reference
  ranking. For a multi-photo query a reference's similarity is its best over the photos.

The gallery and the queries are separate sets (no self-matches to exclude).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ml.datasets import ImageRecord, read_image_csv
from ml.fuse import DEFAULT_STRATEGY
from ml.index import VectorIndex
from ml.retrieval import (
    DEFAULT_CONFIG,
    DEFAULT_SEARCH_DEPTH,
    EvidenceInputs,
    Isolator,
    RerankStep,
    RetrievalConfig,
    lookup_from,
    rank_vectors,
)
from ml.types import EvalReport, QueryOutcome

RECALL_KS = (1, 4, 10)


@dataclass(frozen=True)
class EvalResult:
    """Reports for one run; ``filtered`` only when a filter column was given."""

    model: str
    unfiltered: EvalReport
    filtered: EvalReport | None = None
    filter_column: str | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    # Per query group (unfiltered), the labels of the fused ranking, best first.
    rankings: list[list[str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model, "unfiltered": self.unfiltered.to_dict()}
        if self.filtered is not None:
            out["filtered"] = self.filtered.to_dict()
            out["filter_column"] = self.filter_column
        out["seconds"] = round(self.seconds, 3)
        out.update(self.extra)
        return out


# ----- pure metric helpers ----------------------------------------------------------------


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


# ----- images -> metrics ------------------------------------------------------------------


def embed_records(
    embedder: Any,
    records: Sequence[ImageRecord],
    *,
    isolator: Isolator | None = None,
    detection_classes: Sequence[str] = (),
    batch_size: int = 32,
    progress: bool = False,
) -> np.ndarray:
    """``[n, dim]`` embeddings of the records' images; with an ``isolator``, of their item crops
    (detected among ``detection_classes`` and segmented exactly as the app isolates queries and
    references)."""
    from ml.embed import embed_files
    from ml.images import load_rgb

    paths = [r.path for r in records]
    if isolator is None:
        return embed_files(embedder, paths, batch_size=batch_size, progress=progress)
    out = []
    for start in range(0, len(paths), batch_size):
        images = [load_rgb(p) for p in paths[start : start + batch_size]]
        crops, _ = isolator.isolate(images, classes=detection_classes)
        out.append(embedder.embed(crops, batch_size=batch_size))
    return np.concatenate(out) if out else np.zeros((0, embedder.dim), np.float32)


def evaluate(
    gallery: Sequence[ImageRecord],
    queries: Sequence[ImageRecord],
    embedder: Any,
    *,
    filter_column: str | None = None,
    group_size: int | None = None,
    full_groups: bool = False,
    strategy: str = DEFAULT_STRATEGY,
    search_depth: int = DEFAULT_SEARCH_DEPTH,
    isolator: Isolator | None = None,
    detection_classes: Sequence[str] = (),
    batch_size: int = 32,
    progress: bool = False,
) -> EvalResult:
    """Embed gallery and query images with ``embedder`` (an :class:`ml.embed.Embedder`) and
    compute the metrics, unfiltered and, with ``filter_column``, restricted per query to the
    gallery rows with the same value in that column. ``isolator`` (optional) isolates every
    image's item first, as the app does. ``full_groups`` keeps only groups of exactly
    ``group_size`` photos (a leftover single photo is not an n-photo query)."""
    start = time.perf_counter()
    labels = sorted({r.label for r in gallery} | {r.label for r in queries})
    label_id = {lab: i for i, lab in enumerate(labels)}
    gallery_labels = np.array([label_id[r.label] for r in gallery], dtype=np.int64)
    query_labels = np.array([label_id[r.label] for r in queries], dtype=np.int64)
    groups = group_queries(queries, group_size=group_size)
    if full_groups and group_size:
        groups = [g for g in groups if len(g) == group_size]
    config = RetrievalConfig(strategy=strategy, search_depth=search_depth)

    opts: dict[str, Any] = {
        "isolator": isolator, "detection_classes": detection_classes,
        "batch_size": batch_size, "progress": progress,
    }
    gallery_vectors = embed_records(embedder, gallery, **opts)
    query_vectors = embed_records(embedder, queries, **opts)
    outcomes = query_outcomes(
        gallery_vectors, gallery_labels, query_vectors, query_labels, groups, config=config
    )
    filtered = None
    extra: dict[str, Any] = {
        "n_gallery": len(gallery),
        "n_query_images": len(queries),
        "strategy": strategy,
        "search_depth": search_depth,
        "isolation": isolator.name if isolator is not None else "none",
        "group_size": group_size,
        "full_groups": full_groups,
    }
    if filter_column:
        allowed, n_unfiltered = allowed_per_group(gallery, queries, groups, filter_column)
        filtered = report_from(query_outcomes(
            gallery_vectors, gallery_labels, query_vectors, query_labels, groups,
            allowed=allowed, config=config,
        ))
        extra["n_queries_without_filter_value"] = n_unfiltered
    return EvalResult(
        model=getattr(embedder, "name", "unknown"),
        unfiltered=report_from(outcomes),
        filtered=filtered,
        filter_column=filter_column,
        seconds=time.perf_counter() - start,
        extra=extra,
        rankings=[[labels[s.sku_id] for s in o.ranking] for o in outcomes],
    )


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


def evaluate_csv(
    gallery_csv: str | Path,
    queries_csv: str | Path,
    *,
    model: str | None = None,
    filter_column: str | None = None,
    group_size: int | None = None,
    full_groups: bool = False,
    strategy: str = DEFAULT_STRATEGY,
    search_depth: int = DEFAULT_SEARCH_DEPTH,
    isolator: Isolator | None = None,
    detection_classes: Sequence[str] = (),
    device: str = "auto",
    batch_size: int = 32,
    progress: bool = False,
) -> EvalResult:
    """:func:`evaluate` on two image-list CSVs with a model name or checkpoint path."""
    from ml.embed import load_embedder

    gallery = read_image_csv(gallery_csv)
    queries = read_image_csv(queries_csv)
    embedder = load_embedder(model, device=device)
    result = evaluate(
        gallery,
        queries,
        embedder,
        filter_column=filter_column,
        group_size=group_size,
        full_groups=full_groups,
        strategy=strategy,
        search_depth=search_depth,
        isolator=isolator,
        detection_classes=detection_classes,
        batch_size=batch_size,
        progress=progress,
    )
    result.extra.update({"gallery": str(gallery_csv), "queries": str(queries_csv)})
    return result


def format_table(result: EvalResult) -> str:
    """Human-readable metrics table."""
    lines = [
        f"model: {result.model}   ({result.seconds:.1f} s)",
        f"{'':<24}{'R@1':>8}{'R@4':>8}{'R@10':>8}{'MAP@R':>8}{'queries':>9}",
    ]
    rows = [("unfiltered", result.unfiltered)]
    if result.filtered is not None:
        rows.append((f"filtered ({result.filter_column})", result.filtered))
    for name, rep in rows:
        lines.append(
            f"{name:<24}{rep.recall_at_1:>8.4f}{rep.recall_at_4:>8.4f}"
            f"{rep.recall_at_10:>8.4f}{rep.map_at_r:>8.4f}{rep.n_queries:>9d}"
        )
    return "\n".join(lines)


__all__ = [
    "RECALL_KS",
    "EvalResult",
    "QueryOutcome",
    "embed_records",
    "query_outcomes",
    "report_from",
    "average_precision_at_r",
    "evaluate",
    "evaluate_csv",
    "evaluate_embeddings",
    "first_hit_rank",
    "format_table",
    "group_queries",
]
