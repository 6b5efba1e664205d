"""Retrieval evaluation: Recall@K over the fused per-SKU ranking, and MAP@R.

* Recall@K (= Top-K accuracy): fraction of queries whose label is among the first K distinct
  labels of the per-SKU ranking (:func:`ml.fuse.rank_skus`), the ranking appraisers see.
* MAP@R, as in pytorch-metric-learning: R = number of gallery items with the query's label
  (among those the filter allows); AP@R = (1/R) sum_{i<=R} P(i) rel(i) over the reference
  ranking. For a multi-photo query a reference's similarity is its best over the photos.

The gallery and the queries are separate sets (no self-matches to exclude).

:mod:`.metrics` holds the metrics over vectors, :mod:`.run` the evaluation from images and
CSVs; every name is importable from here.
"""

from __future__ import annotations

from ml.evaluate.metrics import (
    RECALL_KS,
    QueryOutcome,
    allowed_per_group,
    average_precision_at_r,
    evaluate_embeddings,
    first_hit_rank,
    group_queries,
    query_outcomes,
    report_from,
)
from ml.evaluate.run import EvalResult, embed_records, evaluate, evaluate_csv, format_table

__all__ = [
    "RECALL_KS",
    "EvalResult",
    "allowed_per_group",
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
