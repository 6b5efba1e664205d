"""Recall of what is live right now (model + index), on labelled photos that are not in the app.

Queries are ranked by the gateway exactly as a match ranks them (`ml_gateway.rank_live`: the
same isolation, embedder, active index, search depth and fusion setting); "cold" restricts the
search to catalogue images, "warm" searches the whole gallery, confirmed appraisal photos
included; "pairs" fuses two photos of one item into one query, cold. Used by the loop
simulation on the grocery val split; never by training or the gate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ml.types import SkuScore
from webapp import ml_gateway
from webapp.catalog.models import SKUImage


@dataclass(frozen=True)
class LiveRecall:
    model_version: str
    index_version: str
    queries: int
    cold_r1: float
    cold_r4: float
    warm_r1: float
    warm_r4: float
    gallery_catalogue: int
    gallery_total: int
    pairs: int = 0
    pair_r1: float = 0.0
    pair_r4: float = 0.0


def consecutive_pairs(labels: Sequence[int]) -> list[list[int]]:
    """Consecutive photos of the same label, two by two (a leftover photo is dropped): the
    2-photo queries of `python -m ml evaluate --group-size 2`, full pairs only."""
    pairs: list[list[int]] = []
    pending: dict[int, int] = {}
    for i, label in enumerate(labels):
        if label in pending:
            pairs.append([pending.pop(label), i])
        else:
            pending[label] = i
    return sorted(pairs)


def _hits(rankings: Sequence[Sequence[SkuScore]], labels: Sequence[int]) -> tuple[float, float]:
    n = max(1, len(labels))
    found = [[s.sku_id for s in ranking] for ranking in rankings]
    top1 = sum(bool(f) and f[0] == label for f, label in zip(found, labels, strict=True))
    top4 = sum(label in f[:4] for f, label in zip(found, labels, strict=True))
    return top1 / n, top4 / n


def live_recall(
    images: Sequence[Image.Image], sku_ids: Sequence[int], *, classes: Sequence[str] = ()
) -> LiveRecall:
    """Top-1 / Top-4 of the live model and index on (image, true SKU id) pairs."""
    in_index = set(ml_gateway.indexed_reference_ids().tolist())
    catalogue = np.asarray(sorted(
        pk for pk in SKUImage.objects.filter(source=SKUImage.Source.CATALOGUE)
        .values_list("pk", flat=True) if pk in in_index
    ), dtype=np.int64)
    singles = ml_gateway.rank_live(
        [[image] for image in images], variants={"cold": catalogue, "warm": None},
        classes=classes, top_k=4,
    )
    pairs = consecutive_pairs(sku_ids)
    paired = ml_gateway.rank_live(
        [[images[i] for i in pair] for pair in pairs], variants={"cold": catalogue},
        classes=classes, top_k=4,
    )
    cold = _hits(singles.rankings["cold"], sku_ids)
    warm = _hits(singles.rankings["warm"], sku_ids)
    pair = _hits(paired.rankings["cold"], [sku_ids[p[0]] for p in pairs])
    return LiveRecall(
        singles.model_version, singles.index_version, len(sku_ids),
        cold[0], cold[1], warm[0], warm[1], len(catalogue), singles.index_size,
        len(pairs), pair[0], pair[1],
    )
