"""Index maintenance: embed reference images, then publish a new index version.

Publishing is incremental when the active index was built with the current model: only the
difference between the database and the index is added or removed. Every publish writes a new
version directory atomically and then flips the active row, so matching never sees a
half-written index.
"""

from __future__ import annotations

import logging
import time

import numpy as np
from django.db import transaction
from django.utils import timezone

from ml.images import ImageDecodeError, load_rgb
from ml.index import VectorIndex
from webapp import ml_gateway
from webapp.catalog.models import SKUImage
from webapp.catalog.selectors import indexable_images
from webapp.learning.models import IndexVersion
from webapp.learning.selectors import active_index_version

logger = logging.getLogger(__name__)

EMBED_BATCH = 32


def reference_embeddings_refresh(*, batch_size: int = EMBED_BATCH) -> int:
    """Embed every reference image with no embedding from the current model. Returns the count."""
    model_name = ml_gateway.embedder().name
    stale = SKUImage.objects.exclude(embedding_model=model_name).order_by("id")
    ids = list(stale.values_list("id", flat=True))
    done = 0
    for start in range(0, len(ids), batch_size):
        batch = list(SKUImage.objects.filter(id__in=ids[start : start + batch_size]))
        images, ok = [], []
        for reference in batch:
            try:
                with reference.image.open("rb") as handle:
                    images.append(load_rgb(handle.read()))
                ok.append(reference)
            except (ImageDecodeError, OSError) as exc:
                logger.error("reference image %s cannot be embedded: %s", reference.pk, exc)
        if not ok:
            continue
        vectors = ml_gateway.embed_images(images)
        for reference, vector in zip(ok, vectors, strict=True):
            reference.embedding = np.asarray(vector, dtype=np.float32).tobytes()
            reference.embedding_model = model_name
        SKUImage.objects.bulk_update(ok, ["embedding", "embedding_model"])
        done += len(ok)
    return done


def _database_vectors(ids: list[int]) -> np.ndarray:
    rows = dict(SKUImage.objects.filter(id__in=ids).values_list("id", "embedding"))
    return np.stack([np.frombuffer(bytes(rows[i]), dtype=np.float32) for i in ids])


def index_publish(*, full_rebuild: bool = False) -> IndexVersion:
    """Bring the search index in line with the catalogue and make it the active version."""
    started = time.perf_counter()
    reference_embeddings_refresh()
    model_name = ml_gateway.embedder().name
    wanted = set(
        indexable_images().filter(embedding_model=model_name).values_list("id", flat=True)
    )
    parent = active_index_version()
    index: VectorIndex | None = None
    if parent and not full_rebuild and parent.model_version == model_name:
        try:
            index, _ = VectorIndex.load(ml_gateway.index_path(parent.name))
        except FileNotFoundError:
            logger.warning("index files of %s are missing: rebuilding", parent.name)
    if index is None:
        parent_ids: set[int] = set()
        index = VectorIndex.create(ml_gateway.embedder().dim, expected_size=len(wanted))
    else:
        parent_ids = {int(i) for i in index.ids()}
    to_add = sorted(wanted - parent_ids)
    to_remove = sorted(parent_ids - wanted)
    if to_remove:
        index.remove(np.asarray(to_remove, dtype=np.int64))
    for start in range(0, len(to_add), 10_000):
        chunk = to_add[start : start + 10_000]
        index.add(np.asarray(chunk, dtype=np.int64), _database_vectors(chunk))

    name = timezone.now().strftime("idx-%Y%m%dT%H%M%S%f")
    meta = {"count": index.ntotal, "model_version": model_name, "parent": parent and parent.name}
    index.save(ml_gateway.index_path(name), meta=meta)
    with transaction.atomic():
        IndexVersion.objects.filter(is_active=True).update(is_active=False)
        version = IndexVersion.objects.create(
            name=name,
            model_version=model_name,
            status=IndexVersion.Status.READY,
            is_active=True,
            vector_count=index.ntotal,
            added=len(to_add),
            removed=len(to_remove),
            parent=parent,
            finished_at=timezone.now(),
        )
    logger.info(
        "published index %s: %d vectors (+%d -%d) in %.2f s",
        name, index.ntotal, len(to_add), len(to_remove), time.perf_counter() - started,
    )
    return version


def index_is_consistent(version: IndexVersion) -> bool:
    """The active index holds exactly the indexable images of its model."""
    wanted = indexable_images().filter(embedding_model=version.model_version).count()
    return wanted == version.vector_count
