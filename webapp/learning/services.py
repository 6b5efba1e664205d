"""Index maintenance: embed reference images, then publish a new index version.

Publishing is incremental when the active index was built with the current model: only the
difference between the database and the index is added or removed. Every publish writes a new
version directory atomically and then flips the active row, so matching never sees a
half-written index.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import cast

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from PIL import Image

from ml.images import ImageDecodeError, load_rgb
from webapp import ml_gateway
from webapp.catalog.isolations import reference_crops
from webapp.catalog.models import SKUImage
from webapp.catalog.selectors import indexable_images
from webapp.learning import artifacts
from webapp.learning.locks import index_publish_lock
from webapp.learning.models import IndexVersion
from webapp.learning.selectors import active_index_version

logger = logging.getLogger(__name__)

EMBED_BATCH = 32


def reference_embeddings_refresh(*, model_ref: str, batch_size: int = EMBED_BATCH) -> int:
    """Embed every reference image not yet embedded by `model_ref`. Returns the count."""
    version = ml_gateway.embedding_version(model_ref)
    stale = SKUImage.objects.exclude(embedding_model=version).order_by("id")
    ids = list(stale.values_list("id", flat=True))
    done = 0
    for start in range(0, len(ids), batch_size):
        batch = SKUImage.objects.filter(id__in=ids[start : start + batch_size]).select_related(
            "sku__series__brand__category"
        )
        # Items are isolated with their own category's detector classes, like a filtered query.
        by_classes: dict[tuple[str, ...], list[tuple[SKUImage, Image.Image]]] = defaultdict(list)
        for reference in batch:
            try:
                with reference.image.open("rb") as handle:
                    image = load_rgb(handle.read())
            except (ImageDecodeError, OSError) as exc:
                logger.error("reference image %s cannot be embedded: %s", reference.pk, exc)
                continue
            classes = tuple(reference.sku.series.brand.category.detection_classes)
            by_classes[classes].append((reference, image))
        for classes, group in by_classes.items():
            crops = reference_crops(
                [image for _, image in group], [r.checksum for r, _ in group], classes=classes
            )
            vectors = ml_gateway.embed_crops(crops, model_ref=model_ref)
            for (reference, _), vector in zip(group, vectors, strict=True):
                reference.embedding = np.asarray(vector, dtype=np.float32).tobytes()
                reference.embedding_model = version
            SKUImage.objects.bulk_update([r for r, _ in group], ["embedding", "embedding_model"])
            done += len(group)
    return done


def _database_vectors(ids: list[int]) -> np.ndarray:
    # The ids are of images embedded by this model (index_publish's `wanted`): none is null.
    rows = cast(dict[int, bytes],
                dict(SKUImage.objects.filter(id__in=ids).values_list("id", "embedding")))
    return np.stack([np.frombuffer(bytes(rows[i]), dtype=np.float32) for i in ids])


def index_publish(
    *, full_rebuild: bool = False, model_ref: str | None = None, reuse_kept: bool = False
) -> IndexVersion:
    """Bring the search index in line with the catalogue and make it the active version.

    Incremental (add/remove the difference) when the active index was built by the same model
    and isolation; a full rebuild, sized by `VectorIndex.build`, otherwise. Passing another
    `model_ref` (a promotion or rollback) re-embeds the catalogue with it first; the model and
    the index then go live together, in one transaction. Publishes run one at a time
    (`locks.index_publish_lock`); without `model_ref`, the model is the one live when the
    lock is taken.

    `reuse_kept` (a rollback): when an earlier index version of `model_ref`, built with the
    same isolation, is still on disk, start from it instead of re-embedding the catalogue:
    its vectors go back into the database and only what changed since is embedded.
    """
    with index_publish_lock():
        return _index_publish(
            full_rebuild=full_rebuild and not reuse_kept, model_ref=model_ref,
            reuse_kept=reuse_kept,
        )


def kept_index_version(model_ref: str) -> IndexVersion | None:
    """The latest ready index version built with `model_ref` and today's isolation, whose files
    are still on disk."""
    model_name = ml_gateway.embedding_version(model_ref)
    for version in IndexVersion.objects.filter(
        model_ref=model_ref, model_version=model_name, status=IndexVersion.Status.READY
    ).order_by("-created_at"):
        if ml_gateway.index_files_present(version.name):
            return version
    return None


def _embeddings_restore(index_name: str, model_name: str) -> int:
    """Write an index version's vectors back as the database embeddings of the images it
    holds. Raises FileNotFoundError or ValueError when its files are missing or corrupt."""

    def present(ids: np.ndarray) -> list[int]:
        images = SKUImage.objects.filter(id__in=[int(i) for i in ids]).exclude(
            embedding_model=model_name
        )
        return sorted(images.values_list("id", flat=True))

    restored = 0
    for chunk, vectors in ml_gateway.index_vectors(index_name, select=present, chunk=1000):
        rows = SKUImage.objects.in_bulk(chunk.tolist())
        for image_id, vector in zip(chunk.tolist(), vectors, strict=True):
            rows[image_id].embedding = np.asarray(vector, dtype=np.float32).tobytes()
            rows[image_id].embedding_model = model_name
        SKUImage.objects.bulk_update(list(rows.values()), ["embedding", "embedding_model"])
        restored += len(chunk)
    return restored


def _index_publish(*, full_rebuild: bool, model_ref: str | None,
                   reuse_kept: bool = False) -> IndexVersion:
    started = time.perf_counter()
    parent = active_index_version()
    model_ref = model_ref or (parent.model_ref if parent and parent.model_ref else None)
    model_ref = model_ref or ml_gateway.default_model_ref()
    model_name = ml_gateway.embedding_version(model_ref)
    kept = kept_index_version(model_ref) if reuse_kept else None
    if kept is not None:
        try:
            restored = _embeddings_restore(kept.name, model_name)
            logger.info("reusing index %s of %s: %d embeddings restored, none recomputed",
                        kept.name, model_ref, restored)
            parent = kept
        except (FileNotFoundError, ValueError) as exc:
            logger.warning("kept index %s unusable (%s): re-embedding", kept.name, exc)
            kept, full_rebuild = None, True
    elif reuse_kept:
        full_rebuild = True  # nothing kept for this model: re-embed the catalogue
    reference_embeddings_refresh(model_ref=model_ref)
    wanted = set(
        indexable_images().filter(embedding_model=model_name).values_list("id", flat=True)
    )
    start_from: str | None = None  # the version updated incrementally (None: a full build)
    if parent and not full_rebuild and parent.model_version == model_name:
        try:
            artifacts.index_local_ensure(name=parent.name)  # built on another machine?
            start_from = parent.name
        except artifacts.ArtifactError as exc:
            logger.error("index files of %s are unusable (%s): rebuilding", parent.name, exc)
    update = ml_gateway.index_update(parent=start_from, wanted=sorted(wanted),
                                     vectors_of=_database_vectors, model_ref=model_ref)
    index, to_add, to_remove = update.draft, update.added, update.removed

    if parent is not None and not to_add and not to_remove and not full_rebuild and (
        parent.model_version == model_name
    ):
        if not parent.is_active:  # a kept version comes back as it was
            with transaction.atomic():
                IndexVersion.objects.filter(is_active=True).update(is_active=False)
                IndexVersion.objects.filter(pk=parent.pk).update(is_active=True)
            parent.refresh_from_db()
            logger.info("re-activated index %s (%d vectors) in %.2f s", parent.name,
                        parent.vector_count, time.perf_counter() - started)
        return parent  # nothing changed: keep that version

    name = timezone.now().strftime("idx-%Y%m%dT%H%M%S%f")
    meta = {"count": index.ntotal, "model_version": model_name, "parent": parent and parent.name}
    index.save(name, meta=meta)
    if settings.RERANK and {"spatial", "text"} & set(settings.RERANK_EVIDENCE):
        # Reference keypoints and words live in the version's directory, versioned with it.
        computed = ml_gateway.reference_store_publish(
            name, index.ids().tolist(), parent=parent.name if parent else None
        )
        logger.info("reference evidence of %s: %d computed, %d reused", name, computed,
                    index.ntotal - computed)
    # Before the flip: a worker on another machine fetches the version from the store.
    artifacts.index_artifact_upload(name=name, model_ref=model_ref)
    with transaction.atomic():
        IndexVersion.objects.filter(is_active=True).update(is_active=False)
        version = IndexVersion.objects.create(
            name=name,
            model_version=model_name,
            model_ref=model_ref,
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
