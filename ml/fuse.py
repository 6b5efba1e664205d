"""Fuse per-photo reference hits into one per-SKU ranking.

A query is 1..N photos; a SKU has 1..M reference images. The index returns, per photo, the
k most similar references; this module turns that ``[n_photos, k]`` table into one SKU list.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ml.types import SkuScore

STRATEGIES = ("best", "mean_top_m", "query_mean")
# Chosen on the trainer's hold-out of grocery train photos (R@1 1.000 against 0.983 for "best"
# with 2-3 photos); on grocery val it beat "best" in 22 of 32 multi-photo cells, tied 4, lost 6
# (docs/benchmarks.md, "Retrieval quality"). With one photo the two are the same ranking.
DEFAULT_STRATEGY = "query_mean"


def cosine_to_score(cosine: float | np.ndarray) -> float | np.ndarray:
    """Map cosine similarity in [-1, 1] to a score in [0, 1]: ``clip((cos + 1) / 2, 0, 1)``."""
    if isinstance(cosine, np.ndarray):
        return np.clip((cosine + 1.0) / 2.0, 0.0, 1.0)
    return float(min(1.0, max(0.0, (float(cosine) + 1.0) / 2.0)))


@dataclass
class _SkuHits:
    best_cos: float = -np.inf
    best_query: int = -1
    best_ref: int = -1
    per_ref: dict[int, float] = field(default_factory=dict)  # ref id -> best cosine over photos
    per_query: dict[int, float] = field(default_factory=dict)  # photo -> best cosine over refs

    def add(self, cos: float, query: int, ref: int) -> None:
        # Deterministic tie-break: lowest photo index, then lowest reference id.
        if (cos, -query, -ref) > (self.best_cos, -self.best_query, -self.best_ref):
            self.best_cos, self.best_query, self.best_ref = cos, query, ref
        if cos > self.per_ref.get(ref, -np.inf):
            self.per_ref[ref] = cos
        if cos > self.per_query.get(query, -np.inf):
            self.per_query[query] = cos


def _collect(
    cosines: np.ndarray, ref_ids: np.ndarray, ref_to_sku: Mapping[int, int]
) -> dict[int, _SkuHits]:
    hits: dict[int, _SkuHits] = {}
    for q in range(cosines.shape[0]):
        for cos, ref in zip(cosines[q].tolist(), ref_ids[q].tolist(), strict=True):
            if ref < 0 or not np.isfinite(cos):
                continue
            sku = ref_to_sku.get(ref)
            if sku is None:  # stale index entry: reference deleted since the index was built
                continue
            hits.setdefault(int(sku), _SkuHits()).add(float(cos), q, int(ref))
    return hits


def _row_floor(cosines: np.ndarray, ref_ids: np.ndarray) -> list[float]:
    """Per photo, the lowest returned cosine: an upper bound on any reference not returned."""
    floors = []
    for q in range(cosines.shape[0]):
        valid = cosines[q][(ref_ids[q] >= 0) & np.isfinite(cosines[q])]
        floors.append(float(valid.min()) if len(valid) else -1.0)
    return floors


def rank_skus(
    cosines: np.ndarray,
    ref_ids: np.ndarray,
    ref_to_sku: Mapping[int, int],
    *,
    top_k: int,
    strategy: str = DEFAULT_STRATEGY,
    m: int = 3,
) -> list[SkuScore]:
    """Rank SKUs from reference hits.

    Args:
        cosines: ``[n_photos, k]`` cosine of each hit (``-inf`` for padding).
        ref_ids: ``[n_photos, k]`` reference id of each hit (``-1`` for padding).
        ref_to_sku: reference id -> SKU id; hits on unknown references are ignored.
        top_k: number of SKUs to return.
        strategy: how one SKU's pairs become its cosine:
            ``"best"``: max over all (photo, reference) pairs;
            ``"mean_top_m"``: mean of the ``m`` best references (each at its best photo);
            ``"query_mean"``: mean over photos of each photo's best reference, a photo that
            retrieved none of the SKU's references counting its lowest returned cosine
            (default; the same as ``"best"`` for one photo).
        m: references averaged by ``"mean_top_m"``.

    Returns:
        Up to ``top_k`` :class:`SkuScore`, by score descending, ties by ``sku_id``. The
        ``query_index``/``reference_id`` of each is its single best pair.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    cosines = np.atleast_2d(np.asarray(cosines, dtype=np.float64))
    ref_ids = np.atleast_2d(np.asarray(ref_ids, dtype=np.int64))
    if cosines.shape != ref_ids.shape:
        raise ValueError(f"cosines {cosines.shape} and ref_ids {ref_ids.shape} differ in shape")
    hits = _collect(cosines, ref_ids, ref_to_sku)
    floors = _row_floor(cosines, ref_ids) if strategy == "query_mean" else []

    scored: list[SkuScore] = []
    for sku, h in hits.items():
        if strategy == "best":
            cos = h.best_cos
        elif strategy == "mean_top_m":
            cos = float(np.mean(sorted(h.per_ref.values(), reverse=True)[: max(1, m)]))
        else:
            cos = float(np.mean([h.per_query.get(q, floors[q]) for q in range(len(floors))]))
        score = float(cosine_to_score(cos))
        scored.append(SkuScore(sku, score, float(cos), h.best_query, h.best_ref))
    scored.sort(key=lambda s: (-s.score, s.sku_id))
    return scored[: max(0, top_k)]


__all__ = ["DEFAULT_STRATEGY", "STRATEGIES", "cosine_to_score", "rank_skus"]
