"""One match request end to end: photos -> (detect) -> embed -> search -> fuse."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image

from ml.detect import Detector, crop
from ml.embed import Embedder
from ml.fuse import DEFAULT_STRATEGY, rank_skus
from ml.index import VectorIndex
from ml.types import Box, Ranking

# References retrieved per requested SKU: SKUs have several references each, and the fused
# ranking needs enough distinct SKUs to fill top_k.
REFS_PER_SKU = 10


def match_images(
    images: Sequence[Image.Image],
    *,
    embedder: Embedder,
    index: VectorIndex,
    ref_to_sku: Mapping[int, int],
    allowed_ref_ids: np.ndarray | None,
    top_k: int,
    detector: Detector | None = None,
    strategy: str = DEFAULT_STRATEGY,
) -> Ranking:
    """Rank SKUs for one multi-photo query.

    Args:
        images: 1..N RGB photos of the same item (already oriented, see ``ml.images``).
        embedder: the model.
        index: reference-image vectors keyed by reference id.
        ref_to_sku: reference id -> SKU id.
        allowed_ref_ids: ``[m]`` reference ids the filters allow, or None for no filter.
        top_k: SKUs to return.
        detector: optional subject detector; None embeds full frames and returns None boxes.
        strategy: fusion strategy (see :func:`ml.fuse.rank_skus`).

    Returns:
        A :class:`Ranking`, with ``timings_ms`` for ``"embed"``, ``"search"``, ``"fuse"``
        (and ``"detect"`` when a detector ran).
    """
    if not images:
        raise ValueError("match_images needs at least one image")
    timings: dict[str, float] = {}
    boxes: list[Box | None] = [None] * len(images)
    inputs: Sequence[Image.Image] = images
    if detector is not None:
        t0 = time.perf_counter()
        boxes = detector.detect(images)
        inputs = [crop(im, box) for im, box in zip(images, boxes, strict=True)]
        timings["detect"] = (time.perf_counter() - t0) * 1000

    t0 = time.perf_counter()
    vectors = embedder.embed(inputs, batch_size=max(1, len(inputs)))  # [n_photos, dim]
    timings["embed"] = (time.perf_counter() - t0) * 1000

    t0 = time.perf_counter()
    k = min(top_k * REFS_PER_SKU, index.ntotal)
    cosines, ref_ids = index.search(vectors, k, allowed_ids=allowed_ref_ids)  # [n_photos, k]
    timings["search"] = (time.perf_counter() - t0) * 1000

    t0 = time.perf_counter()
    candidates = rank_skus(cosines, ref_ids, ref_to_sku, top_k=top_k, strategy=strategy)
    timings["fuse"] = (time.perf_counter() - t0) * 1000
    return Ranking(candidates=candidates, timings_ms=timings, boxes=boxes)


__all__ = ["REFS_PER_SKU", "match_images"]
