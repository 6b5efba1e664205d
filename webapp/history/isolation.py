"""Isolating imported history photos: the item box (and mask) of every photo, found by the
detector and GrabCut on the gpu queue after an import commits, as queries get theirs, so that
training crops match what queries see. One chunk per task message (webapp.history.tasks)."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from PIL import Image

from ml.images import load_rgb
from webapp.history.models import HistoryImport
from webapp.history.services import STALE_AFTER
from webapp.matching.models import QueryPhoto

if TYPE_CHECKING:
    from webapp.ml_gateway import Isolation

ISOLATION_CHUNK = 16
Status = HistoryImport.Status


def _claim_isolation(import_id: int, *, takeover: bool) -> bool:
    stale = timezone.now() - STALE_AFTER
    Isolation = HistoryImport.Isolation
    held = (Q(isolation=Isolation.RUNNING) if takeover
            else Q(isolation=Isolation.RUNNING, isolation_heartbeat_at__lt=stale))
    return bool(HistoryImport.objects.filter(
        Q(pk=import_id, status=Status.APPLIED) & (Q(isolation=Isolation.QUEUED) | held)
    ).update(isolation=Isolation.RUNNING, isolation_heartbeat_at=timezone.now(),
             isolation_error=""))


def _isolation_store(photo: QueryPhoto, isolation: Isolation, folder: str) -> None:
    box = isolation.box
    photo.box = [round(box.x0, 1), round(box.y0, 1), round(box.x1, 1), round(box.y1, 1)]
    photo.box_source = isolation.source
    photo.detection_label = isolation.label
    photo.detection_confidence = isolation.confidence
    storage = photo.mask.storage
    if photo.mask.name:  # what `if photo.mask` tests, in a form the type checker follows
        storage.delete(photo.mask.name)
        photo.mask.name = ""
    if isolation.mask is not None:
        buffer = io.BytesIO()
        Image.fromarray(isolation.mask.astype(np.uint8) * 255).save(buffer, "PNG", optimize=True)
        name = f"{folder}/masks/p{photo.pk}.png"
        storage.delete(name)  # a redelivered chunk writes the same name again
        photo.mask.name = storage.save(name, ContentFile(buffer.getvalue()))
    photo.save(update_fields=["box", "box_source", "detection_label", "detection_confidence",
                              "mask"])


def history_isolation_run(
    *, import_id: int, takeover: bool = False, chunk: int = ISOLATION_CHUNK,
    max_chunks: int | None = None, echo: Callable[[int, int], None] | None = None,
) -> bool:
    """Detect and segment the imported photos not isolated yet, `chunk` at a time, at most
    `max_chunks` chunks; True when some remain (the row is queued again for the next call).

    The task does one chunk per message and queues the next, so matches waiting on the same
    gpu worker go in between. Photos never isolated train on the full frame
    (`review.crops.query_photo_crop`)."""
    from webapp import ml_gateway  # the models: only this step needs torch, not the import

    if not _claim_isolation(import_id, takeover=takeover):
        return False
    mine = QueryPhoto.objects.filter(history__history_import_id=import_id)
    pending = mine.filter(box_source="")
    total = mine.count()
    folder = f"history/{import_id}"
    chunks = 0
    while max_chunks is None or chunks < max_chunks:
        batch = list(pending.select_related("request__decision__sku__series__brand__category")
                     .order_by("pk")[:chunk])
        if not batch:
            break
        chunks += 1
        by_classes: dict[tuple[str, ...], list[QueryPhoto]] = {}
        for photo in batch:
            sku = photo.request.decision.sku
            assert sku is not None  # an imported decision always names its SKU
            category = sku.series.brand.category
            by_classes.setdefault(tuple(category.detection_classes), []).append(photo)
        for classes, photos in by_classes.items():
            images = []
            for photo in photos:
                with photo.image.open("rb") as handle:
                    images.append(load_rgb(handle.read()))
            _, isolations = ml_gateway.isolate_items(
                images, corrected_boxes=[None] * len(images), classes=classes, timings={}
            )
            with transaction.atomic():
                for photo, isolation in zip(photos, isolations, strict=True):
                    _isolation_store(photo, isolation, folder)
        done = total - pending.count()
        HistoryImport.objects.filter(pk=import_id).update(
            photos_isolated=done, isolation_heartbeat_at=timezone.now())
        if echo is not None:
            echo(done, total)
    more = pending.exists()
    HistoryImport.objects.filter(pk=import_id, isolation=HistoryImport.Isolation.RUNNING).update(
        isolation=HistoryImport.Isolation.QUEUED if more else HistoryImport.Isolation.DONE,
        photos_isolated=total - pending.count(), isolation_heartbeat_at=timezone.now())
    return more


def history_isolation_fail(*, import_id: int, error: str) -> None:
    HistoryImport.objects.filter(pk=import_id).update(
        isolation=HistoryImport.Isolation.FAILED, isolation_error=error[:2000])
