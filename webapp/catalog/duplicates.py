"""Near-duplicate detection across SKUs, from the stored reference embeddings.

Two kinds of evidence, both cosine similarities of L2-normalised vectors:
- image pairs: a reference image of SKU A and one of SKU B nearly identical (a duplicated SKU,
  or an image filed under the wrong SKU);
- SKU pairs: the centroids of all of A's and B's images nearly identical.
Each pair of SKUs becomes one DuplicatePair row for an admin to merge or mark distinct.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from webapp import ml_gateway
from webapp.audit.services import audit_record
from webapp.catalog.models import SKU, DuplicatePair, DuplicateScan, SKUImage
from webapp.catalog.selectors import indexable_images
from webapp.catalog.services import Actor, CatalogueError, MergeSummary, sku_merge
from webapp.enqueue import enqueue_on_commit

logger = logging.getLogger(__name__)

# Neighbours looked at per image; more than this many near-copies of one image are rare.
NEIGHBOURS = 10
QUERY_CHUNK = 4096
EMBEDDING_CHUNK = 2000


def duplicate_threshold() -> float:
    """Default cosine above which two images count as near-duplicates (settable in settings)."""
    return float(getattr(settings, "CATALOGUE_DUPLICATE_COSINE", 0.97))


@dataclass
class FoundPair:
    sku_a: int
    sku_b: int
    image_a: int | None = None
    image_b: int | None = None
    image_cosine: float | None = None
    image_pairs: int = 0
    sku_cosine: float | None = None


def _embeddings() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image ids [n], sku ids [n], vectors [n, dim]) of the indexable images of one model:
    the active index's, else the most common."""
    images = indexable_images()
    # The active index version, read by the reader learning installs in the gateway.
    active = ml_gateway.sources_installed().active_index()
    if active is not None:
        model = active.model_version
    else:
        counted = Counter(images.values_list("embedding_model", flat=True))
        model = counted.most_common(1)[0][0] if counted else ""
    rows = images.filter(embedding_model=model).order_by("id")
    count = rows.count()
    first = rows.values_list("embedding", flat=True).first()
    if not count or first is None:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty((0, 0), np.float32)
    # Streamed into preallocated arrays: the vectors are held once, not also as row tuples.
    dim = len(bytes(first)) // 4
    ids = np.empty(count, np.int64)
    skus = np.empty(count, np.int64)
    vectors = np.empty((count, dim), np.float32)
    filled = 0
    for image_id, sku_id, embedding in rows.values_list("id", "sku_id", "embedding").iterator(
        chunk_size=EMBEDDING_CHUNK
    ):
        if filled == count:
            break  # images added since the count wait for the next scan
        if embedding is None:
            continue  # not embedded yet: the next publish embeds it
        ids[filled], skus[filled] = image_id, sku_id
        vectors[filled] = np.frombuffer(bytes(embedding), dtype=np.float32)
        filled += 1
    return ids[:filled], skus[:filled], vectors[:filled]


def _neighbour_pairs(
    ids: np.ndarray, vectors: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row i [m], row j [m], cosine [m]) for i < j among each row's nearest neighbours."""
    position = {int(identifier): row for row, identifier in enumerate(ids)}
    k = min(NEIGHBOURS + 1, len(ids))
    rows_i, rows_j, cosines = [], [], []
    for start, cos, found in ml_gateway.neighbours(ids, vectors, k=k, chunk=QUERY_CHUNK):
        for offset in range(len(cos)):
            i = start + offset
            for c, identifier in zip(cos[offset], found[offset], strict=True):
                if identifier < 0 or c < threshold:
                    continue
                j = position[int(identifier)]
                if j != i:
                    rows_i.append(min(i, j))
                    rows_j.append(max(i, j))
                    cosines.append(min(float(c), 1.0))  # float32 rounding can pass 1
    return np.asarray(rows_i, np.int64), np.asarray(rows_j, np.int64), np.asarray(cosines)


def duplicate_pairs_find(*, threshold: float) -> tuple[list[FoundPair], int]:
    """Pairs of different active SKUs above `threshold`; also the number of images compared."""
    ids, skus, vectors = _embeddings()
    if len(ids) < 2:
        return [], len(ids)
    pairs: dict[tuple[int, int], FoundPair] = {}
    seen: set[tuple[int, int]] = set()
    rows_i, rows_j, cosines = _neighbour_pairs(ids, vectors, threshold)
    for i, j, c in zip(rows_i, rows_j, cosines, strict=True):
        a, b = int(skus[i]), int(skus[j])
        if a == b or (int(i), int(j)) in seen:
            continue
        seen.add((int(i), int(j)))
        image_a, image_b = (int(ids[i]), int(ids[j])) if a < b else (int(ids[j]), int(ids[i]))
        key = (min(a, b), max(a, b))
        pair = pairs.setdefault(key, FoundPair(*key))
        pair.image_pairs += 1
        if pair.image_cosine is None or c > pair.image_cosine:
            pair.image_a, pair.image_b, pair.image_cosine = image_a, image_b, float(c)

    # SKU centroids: the mean of each SKU's image vectors, normalised.
    sku_ids, inverse = np.unique(skus, return_inverse=True)
    centroids = np.zeros((len(sku_ids), vectors.shape[1]), np.float32)
    np.add.at(centroids, inverse, vectors)
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    if len(sku_ids) >= 2:
        for i, j, _ in zip(*_neighbour_pairs(sku_ids, centroids, threshold), strict=True):
            key = (int(sku_ids[i]), int(sku_ids[j]))
            pairs.setdefault(key, FoundPair(*key))
    row_of = {int(s): r for r, s in enumerate(sku_ids)}
    for pair in pairs.values():
        pair.sku_cosine = float(centroids[row_of[pair.sku_a]] @ centroids[row_of[pair.sku_b]])
    return sorted(pairs.values(), key=lambda p: -(p.image_cosine or p.sku_cosine or 0)), len(ids)


def _first_images(sku_ids: set[int]) -> dict[int, int]:
    first: dict[int, int] = {}
    for image_id, sku_id in (SKUImage.objects.filter(sku_id__in=sku_ids)
                             .order_by("sku_id", "position", "id").values_list("id", "sku_id")):
        first.setdefault(sku_id, image_id)
    return first


@transaction.atomic
def duplicate_pairs_store(*, found: list[FoundPair]) -> int:
    """Upsert open pairs; keep resolved ones as they are; drop open ones no longer found."""
    resolved = set(
        DuplicatePair.objects.exclude(status=DuplicatePair.Status.OPEN)
        .values_list("sku_a_id", "sku_b_id")
    )
    found = [p for p in found if (p.sku_a, p.sku_b) not in resolved]
    first = _first_images({s for p in found if p.image_a is None for s in (p.sku_a, p.sku_b)})
    keys = set()
    for pair in found:
        keys.add((pair.sku_a, pair.sku_b))
        DuplicatePair.objects.update_or_create(
            sku_a_id=pair.sku_a,
            sku_b_id=pair.sku_b,
            defaults={
                "image_a_id": pair.image_a or first.get(pair.sku_a),
                "image_b_id": pair.image_b or first.get(pair.sku_b),
                "image_cosine": pair.image_cosine,
                "image_pairs": pair.image_pairs,
                "sku_cosine": pair.sku_cosine,
            },
        )
    stale = [
        pk for pk, a, b in DuplicatePair.objects.filter(status=DuplicatePair.Status.OPEN)
        .values_list("pk", "sku_a_id", "sku_b_id") if (a, b) not in keys
    ]
    DuplicatePair.objects.filter(pk__in=stale).delete()
    return len(found)


def duplicate_scan_request(*, actor: Actor, threshold: float | None = None) -> DuplicateScan:
    """A scan row, computed by the `catalog.scan_duplicates` task once this commits."""
    threshold = duplicate_threshold() if threshold is None else threshold
    if not 0.5 <= threshold < 1.0:
        raise CatalogueError("The threshold must be between 0.5 and 1.")
    with transaction.atomic():
        scan = DuplicateScan.objects.create(
            requested_by=actor if actor is not None and actor.is_authenticated else None,
            threshold=threshold,
        )
        # By name: catalog.tasks imports this module (a lost message: the sweeper resends).
        enqueue_on_commit("catalog.scan_duplicates", scan.pk)
    return scan


def duplicate_scan_run(*, scan_id: int) -> bool:
    """Compute and store; returns False when another delivery already ran this scan."""
    # A redelivery may take over a running scan: it only recomputes and stores the same pairs.
    if not DuplicateScan.claim(scan_id, takeover=True):
        return False
    scan = DuplicateScan.objects.get(pk=scan_id)
    started = time.perf_counter()
    found, compared = duplicate_pairs_find(threshold=scan.threshold)
    stored = duplicate_pairs_store(found=found)
    DuplicateScan.objects.filter(pk=scan_id).update(
        status=DuplicateScan.Status.DONE, images_compared=compared, pairs_found=stored,
        finished_at=timezone.now(),
    )
    logger.info("duplicate scan %s: %d images, %d open pairs in %.2f s",
                scan_id, compared, stored, time.perf_counter() - started)
    return True


def duplicate_scan_fail(*, scan_id: int, error: str) -> None:
    DuplicateScan.fail(scan_id, error=error)


def _resolve(pair: DuplicatePair, status: str, actor: Actor) -> None:
    pair.status = status
    pair.resolved_by = actor if actor is not None and actor.is_authenticated else None
    pair.resolved_at = timezone.now()
    pair.save(update_fields=["status", "resolved_by", "resolved_at"])


@transaction.atomic
def duplicate_mark_distinct(*, pair: DuplicatePair, actor: Actor) -> DuplicatePair:
    """Remember that these two SKUs are different products; scans will not list them again."""
    pair = DuplicatePair.objects.select_for_update().get(pk=pair.pk)
    if pair.status != DuplicatePair.Status.OPEN:
        raise CatalogueError("This pair has already been resolved.")
    _resolve(pair, DuplicatePair.Status.DISTINCT, actor)
    for sku in (pair.sku_a, pair.sku_b):
        other = pair.sku_b if sku == pair.sku_a else pair.sku_a
        audit_record(actor=actor, action="sku.mark_distinct", obj=sku,
                     changes={"distinct_from": [None, other.code]})
    return pair


@transaction.atomic
def duplicate_merge(*, pair: DuplicatePair, keep: SKU, actor: Actor) -> MergeSummary:
    """Resolve a pair by merging the other SKU into `keep`."""
    pair = DuplicatePair.objects.select_for_update().get(pk=pair.pk)
    if pair.status != DuplicatePair.Status.OPEN:
        raise CatalogueError("This pair has already been resolved.")
    if keep.pk not in (pair.sku_a_id, pair.sku_b_id):
        raise CatalogueError("Keep one of the pair's two SKUs.")
    source = pair.sku_b if keep.pk == pair.sku_a_id else pair.sku_a
    summary = sku_merge(source=source, target=keep, actor=actor)
    pair.refresh_from_db()
    if pair.status == DuplicatePair.Status.OPEN:
        _resolve(pair, DuplicatePair.Status.MERGED, actor)
    return summary
