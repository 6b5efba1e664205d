"""Running match requests (from the task): claim, the model, store the results, or fail.

`match_request_run` claims its request (webapp.jobs.JobRow.claim), takes up to MATCH_BATCH - 1
other queued ones along, hands their photos to `ml_gateway.match_batch` while a thread keeps
their heartbeats fresh, and stores each one's candidates exactly once.
"""

from __future__ import annotations

import errno
import io
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone
from PIL import Image

from ml.images import load_rgb
from ml.types import Box, SkuScore
from webapp import ml_gateway
from webapp.catalog.models import SKU, Category
from webapp.catalog.selectors import reference_ids_for_filters
from webapp.jobs import JobBusy
from webapp.matching.calibration import confident_threshold
from webapp.matching.models import Candidate, MatchRequest, QueryPhoto

logger = logging.getLogger(__name__)


class StorageFullError(OSError):
    pass


class MatchBusy(JobBusy):
    """Another worker is running this request and is alive (its heartbeat is fresh)."""


@dataclass(frozen=True)


class FilterPlan:
    allowed_reference_ids: np.ndarray | None
    relaxed: list[str]


def filter_plan(request: MatchRequest) -> FilterPlan:
    """Honour the filters exactly; when nothing passes, drop series, then brand, then category."""
    levels = {
        "category": request.category_id,
        "brand": request.brand_id,
        "series": request.series_id,
    }
    if not any(levels.values()):
        return FilterPlan(None, [])
    relaxed: list[str] = []
    for drop in ("series", "brand", "category", None):
        ids = reference_ids_for_filters(
            category_id=levels["category"], brand_id=levels["brand"], series_id=levels["series"]
        )
        if ids:
            return FilterPlan(np.asarray(ids, dtype=np.int64), relaxed)
        if drop is None:
            break
        if levels[drop]:
            levels[drop] = None
            relaxed.append(drop)
    return FilterPlan(None, relaxed)


def _claim(request_id: int, *, redelivered_ok: bool = True) -> bool:
    """Compare-and-swap to RUNNING. A redelivered task may take over a RUNNING row only once
    its heartbeat is stale (its worker died); a request taken along in another's batch may
    only be claimed while QUEUED. Raises MatchBusy while a live worker holds the row."""
    takeover = timedelta(seconds=settings.MATCH_STALE_S) if redelivered_ok else False
    if MatchRequest.claim(request_id, takeover=takeover,
                          attempts=F("attempts") + 1, stage="embedding", progress=20):
        return True
    if redelivered_ok and MatchRequest.objects.filter(
        pk=request_id, status=MatchRequest.Status.RUNNING
    ).exists():
        raise MatchBusy(f"match {request_id} is running on a live worker")
    return False


class _Heartbeat:
    """Writes heartbeat_at of the claimed requests every MATCH_HEARTBEAT_S from a thread, so
    that a dead worker's rows go stale and a live worker's rows never do."""

    def __init__(self, request_ids: list[int]) -> None:
        self.request_ids = request_ids
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="match-heartbeat", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        from django.db import connection

        failing = False
        try:
            while not self._stop.wait(settings.MATCH_HEARTBEAT_S):
                try:
                    MatchRequest.objects.filter(
                        pk__in=self.request_ids, status=MatchRequest.Status.RUNNING
                    ).update(heartbeat_at=timezone.now())
                    failing = False
                except DatabaseError as exc:  # the task itself reports the outage
                    if not failing:
                        logger.warning("heartbeat of %s failed: %s", self.request_ids, exc)
                    failing = True
                    connection.close()
        finally:
            connection.close()


@dataclass


class _MatchInput:
    request_id: int
    photos: list[QueryPhoto]
    plan: FilterPlan
    query: ml_gateway.MatchQuery
    load_ms: float


def _match_input(request_id: int) -> _MatchInput:
    """Read a claimed request's photos and work out its filters."""
    request = MatchRequest.objects.get(pk=request_id)
    photos = list(request.photos.order_by("position"))
    started = time.perf_counter()
    images = []
    for photo in photos:
        with photo.image.open("rb") as handle:
            images.append(load_rgb(handle.read()))
    load_ms = (time.perf_counter() - started) * 1000
    plan = filter_plan(request)
    query = ml_gateway.MatchQuery(
        images,
        allowed_ids=plan.allowed_reference_ids,
        corrected_boxes=[
            Box(*photo.box)
            if photo.box_source == QueryPhoto.BoxSource.CORRECTED and photo.box is not None
            else None
            for photo in photos
        ],
        detection_classes=detection_classes_for(request),
        # The appraiser's words: evidence for re-ranking, not filters.
        query_text=request.query_text,
        soft_attributes=request.soft_attributes,
    )
    return _MatchInput(request_id, photos, plan, query, load_ms)


def _batch_mates(leader_id: int, limit: int) -> list[_MatchInput]:
    """Claim up to `limit` of the oldest other queued requests, to run in the leader's batch.

    Their own tasks find them finished and do nothing; if this worker dies, those tasks are
    still in the queue and re-claim them."""
    if limit <= 0:
        return []
    waiting = (
        MatchRequest.objects.filter(status=MatchRequest.Status.QUEUED)
        .exclude(pk=leader_id)
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    mates = []
    for request_id in list(waiting):
        if not _claim(request_id, redelivered_ok=False):
            continue  # another worker took it first
        try:
            mates.append(_match_input(request_id))
        except Exception as exc:  # noqa: BLE001 - one bad request must not stop the batch
            logger.exception("match %s failed", request_id)
            match_request_fail(request_id=request_id, error=f"{type(exc).__name__}: {exc}")
    return mates


def match_request_run(*, request_id: int) -> bool:
    """Run the pipeline for this request, together with up to MATCH_BATCH - 1 other queued
    ones, and store each one's candidates exactly once.

    Returns False if this request was already finished. If the batch fails, every request in
    it is run alone, so that one bad request fails only itself."""
    if not _claim(request_id):
        return False
    with _Heartbeat([request_id]) as heartbeat:
        leader = _match_input(request_id)
        batch = [leader, *_batch_mates(request_id, settings.MATCH_BATCH - 1)]
        heartbeat.request_ids = [item.request_id for item in batch]
        if settings.MATCH_TEST_DELAY_S:
            time.sleep(settings.MATCH_TEST_DELAY_S)
        return _run_batch(leader, batch)


def _run_batch(leader: _MatchInput, batch: list[_MatchInput]) -> bool:
    try:
        results = ml_gateway.match_batch([item.query for item in batch], top_k=settings.MATCH_TOP_K)
    except Exception:
        if len(batch) == 1:
            raise
        logger.exception("a batch of %d matches failed; running each alone", len(batch))
        for mate in batch[1:]:
            _run_alone(mate)
        batch = [leader]
        results = ml_gateway.match_batch([leader.query], top_k=settings.MATCH_TOP_K)
    stored = [_result_store(item, result, batch_size=len(batch))
              for item, result in zip(batch, results, strict=True)]
    return stored[0]


def _run_alone(item: _MatchInput) -> None:
    try:
        (result,) = ml_gateway.match_batch([item.query], top_k=settings.MATCH_TOP_K)
        _result_store(item, result, batch_size=1)
    except Exception as exc:  # noqa: BLE001 - shown on the request's page
        logger.exception("match %s failed", item.request_id)
        match_request_fail(request_id=item.request_id, error=f"{type(exc).__name__}: {exc}")


def _result_store(item: _MatchInput, result: ml_gateway.MatchResult, *, batch_size: int) -> bool:
    """Store candidates and isolation once; False if the request is no longer running.

    All or nothing: if a mask cannot be written (a full disk), the rows are rolled back and
    the masks already written are deleted, and StorageFullError says so."""
    written: list[str] = []
    try:
        return _result_store_once(item, result, batch_size=batch_size, written=written)
    except BaseException as exc:
        for name in written:
            default_storage.delete(name)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise StorageFullError(
                "The server's storage is full: the result could not be saved. Retry once "
                "space has been freed; nothing was lost."
            ) from exc
        raise


def _result_store_once(
    item: _MatchInput, result: ml_gateway.MatchResult, *, batch_size: int, written: list[str]
) -> bool:
    MatchRequest.objects.filter(pk=item.request_id, status=MatchRequest.Status.RUNNING).update(
        stage="storing", progress=90
    )
    started = time.perf_counter()
    with transaction.atomic():
        locked = MatchRequest.objects.select_for_update().get(pk=item.request_id)
        if locked.status != MatchRequest.Status.RUNNING:
            return False
        locked.candidates.all().delete()
        for photo, isolation in zip(item.photos, result.isolations, strict=True):
            _photo_isolation_store(photo, isolation, written)
        evidence = {int(str(e["sku_id"])): e for e in result.evidence}
        Candidate.objects.bulk_create(
            Candidate(
                request=locked,
                rank=rank,
                sku_id=hit.sku_id,
                score=hit.score,
                cosine=hit.cosine,
                query_photo=item.photos[hit.query_index],
                reference_image_id=hit.reference_id,
                evidence=evidence.get(hit.sku_id, {}),
            )
            for rank, hit in enumerate(result.candidates, start=1)
        )
        locked.confident = _is_confident(result.candidates)
        timings = {"load": item.load_ms, **result.timings_ms}
        timings["store"] = (time.perf_counter() - started) * 1000
        locked.status = MatchRequest.Status.DONE
        locked.stage = ""
        locked.progress = 100
        locked.error = ""
        locked.relaxed_filters = item.plan.relaxed
        locked.model_version = result.model_version
        locked.index_version = result.index_version
        locked.timings_ms = {k: round(v, 2) for k, v in timings.items()}
        locked.batch_size = batch_size
        locked.finished_at = timezone.now()
        locked.save()
    return True


def _is_confident(candidates: Sequence[SkuScore]) -> bool:
    """The first candidate reaches its category's calibrated threshold (the page's rule)."""
    if not candidates:
        return False
    top = SKU.objects.select_related("series__brand__category").get(pk=candidates[0].sku_id)
    return candidates[0].score >= confident_threshold(top.category)


def detection_classes_for(request: MatchRequest) -> list[str]:
    """Detector classes for the request: its category's, or every category's when unfiltered.

    An empty list lets any class count (categories that configure none)."""
    if request.category is not None:
        return list(request.category.detection_classes)
    configured = Category.objects.exclude(detection_classes=[]).values_list(
        "detection_classes", flat=True
    )
    if Category.objects.filter(detection_classes=[]).exists():
        return []
    return sorted({name for names in configured for name in names})


def _photo_isolation_store(
    photo: QueryPhoto, isolation: ml_gateway.Isolation, written: list[str]
) -> None:
    box = isolation.box
    photo.box = [round(box.x0, 1), round(box.y0, 1), round(box.x1, 1), round(box.y1, 1)]
    photo.box_source = isolation.source
    photo.detection_label = isolation.label
    photo.detection_confidence = isolation.confidence
    old_mask = photo.mask.name if photo.mask else ""
    if isolation.mask is not None:
        buffer = io.BytesIO()
        Image.fromarray(isolation.mask.astype(np.uint8) * 255).save(buffer, "PNG", optimize=True)
        # Named first, so that a write cut short (a full disk) is known and deleted.
        storage = photo.mask.storage
        name = storage.get_available_name(photo.mask.field.generate_filename(
            photo, f"m{photo.request_id}-{photo.position}.png"))
        written.append(name)
        photo.mask.name = storage.save(name, ContentFile(buffer.getvalue()))
        written.append(photo.mask.name)
    else:
        photo.mask = ""  # type: ignore[assignment]
    photo.save()
    if old_mask and old_mask != photo.mask.name:
        # The old mask goes only once the new rows are committed.
        transaction.on_commit(lambda: default_storage.delete(old_mask))


def match_request_fail(*, request_id: int, error: str) -> None:
    MatchRequest.fail(request_id, error=error, stage="")
