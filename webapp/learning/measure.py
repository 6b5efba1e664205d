"""Recall of what is live right now (model + index), on labelled photos that are not in the app.

Queries go through the gateway exactly as a match does (isolation, embedder, the active
index, per-SKU fusion); "cold" restricts the search to catalogue images, "warm" searches the
whole gallery, confirmed appraisal photos included. Used by the loop simulation on the
grocery val split; never by training or the gate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ml.fuse import rank_skus
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


def _recall(vectors: np.ndarray, labels: Sequence[int], allowed: np.ndarray | None,
            index: object, reference_to_sku: dict[int, int]) -> tuple[float, float]:
    k = min(index.ntotal if allowed is None else len(allowed), 400)  # type: ignore[attr-defined]
    cosines, ids = index.search(vectors, k, allowed_ids=allowed)  # type: ignore[attr-defined]
    top1 = top4 = 0
    for row, label in enumerate(labels):
        ranking = rank_skus(cosines[row : row + 1], ids[row : row + 1], reference_to_sku, top_k=4)
        found = [s.sku_id for s in ranking]
        top1 += bool(found) and found[0] == label
        top4 += label in found[:4]
    n = max(1, len(labels))
    return top1 / n, top4 / n


def live_recall(images: Sequence[Image.Image], sku_ids: Sequence[int], *,
                classes: Sequence[str] = (), batch_size: int = 32) -> LiveRecall:
    """Top-1 / Top-4 of the live model and index on (image, true SKU id) pairs."""
    index_name, index, model_ref = ml_gateway.active_index.get()
    vectors = np.concatenate([
        ml_gateway.embed_items(images[i : i + batch_size], classes=classes, model_ref=model_ref)
        for i in range(0, len(images), batch_size)
    ])
    rows = list(SKUImage.objects.values_list("pk", "sku_id", "source"))
    reference_to_sku = {pk: sku for pk, sku, _ in rows}
    in_index = {int(i) for i in index.ids()}
    catalogue = np.asarray(
        sorted(pk for pk, _, source in rows if source == SKUImage.Source.CATALOGUE
               and pk in in_index), dtype=np.int64,
    )
    cold = _recall(vectors, sku_ids, catalogue, index, reference_to_sku)
    warm = _recall(vectors, sku_ids, None, index, reference_to_sku)
    return LiveRecall(
        ml_gateway.embedding_version(model_ref), index_name, len(sku_ids),
        cold[0], cold[1], warm[0], warm[1], len(catalogue), index.ntotal,
    )
