"""Match requests: create, run (from the task), fail, retry, decide."""

from __future__ import annotations

import errno
import io
import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone
from PIL import Image

from ml.images import load_rgb
from ml.types import Box, SkuScore
from webapp import ml_gateway
from webapp.audit.services import audit_record
from webapp.catalog.models import SKU, Brand, Category, Series
from webapp.catalog.selectors import reference_ids_for_filters, sku_attribute_keys
from webapp.jobs import JobBusy
from webapp.matching.calibration import confident_threshold
from webapp.matching.models import Candidate, Decision, MatchRequest, QueryPhoto
from webapp.matching.query_inputs import query_text_clean, soft_attributes_clean
from webapp.matching.validation import UploadedPhoto, ValidPhoto, validate_photos

if TYPE_CHECKING:
    from webapp.review.models import BadCase

logger = logging.getLogger(__name__)


class StorageFullError(OSError):
    pass


class DecisionError(ValueError):
    """Refused by the match's state (not finished, already decided)."""


class DecisionInvalid(DecisionError):
    """Well-formed but unusable content: a candidate or SKU that does not fit this match."""


class MatchBusy(JobBusy):
    """Another worker is running this request and is alive (its heartbeat is fresh)."""


def _enqueue(request_id: int) -> None:
    """Send the match task once this commits; with the broker down the row stays QUEUED and
    the sweeper sends it later (webapp.sweeper)."""
    from webapp.matching.tasks import run_match
    from webapp.sweeper import enqueue_on_commit

    MatchRequest.objects.filter(pk=request_id).update(enqueued_at=timezone.now())
    enqueue_on_commit(run_match, request_id)


def match_request_create(
    *,
    user: AbstractBaseUser,
    uploads: Sequence[UploadedPhoto],
    category: Category | None = None,
    brand: Brand | None = None,
    series: Series | None = None,
    query_text: object = "",
    soft_attributes: Mapping[str, object] | Iterable[tuple[object, object]] | None = None,
) -> MatchRequest:
    """Validate the appraiser's words and every photo, then store the request and its photos
    together and enqueue it.

    Raises QueryInputError or PhotoValidationError (nothing stored), or StorageFullError
    (nothing kept).
    """
    text = query_text_clean(query_text)
    attributes = soft_attributes_clean(soft_attributes, known_keys=sku_attribute_keys())
    valid = validate_photos(uploads)
    written: list[str] = []  # every file name, before it is written: a write cut short too
    try:
        with transaction.atomic():
            request = MatchRequest.objects.create(
                created_by=user, category=category, brand=brand, series=series,
                query_text=text, soft_attributes=attributes, enqueued_at=timezone.now(),
            )
            for position, photo in enumerate(valid):
                _photo_store(request, position, photo, written)
            _enqueue(request.id)
    except BaseException as exc:
        for name in written:
            default_storage.delete(name)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise StorageFullError("The server's storage is full; nothing was saved.") from exc
        raise
    return request


def _photo_store(
    request: MatchRequest, position: int, photo: ValidPhoto, written: list[str]
) -> QueryPhoto:
    row = QueryPhoto(
        request=request,
        position=position,
        original_name=photo.name[:255],
        original_format=photo.original_format,
        width=photo.width,
        height=photo.height,
    )
    stem = f"m{request.id}-{position}"
    for field, filename, data in ((row.original, f"{stem}.{photo.extension}", photo.original),
                                  (row.image, f"{stem}.jpg", photo.normalised_jpeg)):
        name = field.storage.get_available_name(field.field.generate_filename(row, filename))
        written.append(name)
        field.name = field.storage.save(name, ContentFile(data))
        written.append(field.name)
    row.save()
    return row


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
            Box(*photo.box) if photo.box_source == QueryPhoto.BoxSource.CORRECTED else None
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
    if request.category_id:
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


def query_photo_box_correct(*, photo: QueryPhoto, box: Box) -> MatchRequest:
    """Keep the appraiser's box for this photo and run the match again with it."""
    if Decision.objects.filter(request_id=photo.request_id).exists():
        raise DecisionError("This match is already decided; start a new one to change the box.")
    if not photo.request.is_finished:
        raise DecisionError("Wait for the match to finish before correcting the box.")
    if not (0 <= box.x0 < box.x1 <= photo.width and 0 <= box.y0 < box.y1 <= photo.height):
        raise DecisionError("The box must lie inside the photo.")
    if box.width < 8 or box.height < 8:
        raise DecisionError("The box is too small.")
    with transaction.atomic():
        photo.box = [round(box.x0, 1), round(box.y0, 1), round(box.x1, 1), round(box.y1, 1)]
        photo.box_source = QueryPhoto.BoxSource.CORRECTED
        photo.detection_label, photo.detection_confidence = "", None
        photo.save()
        MatchRequest.objects.filter(pk=photo.request_id).update(
            status=MatchRequest.Status.QUEUED, error="", progress=0, finished_at=None
        )
        _enqueue(photo.request_id)
    return MatchRequest.objects.get(pk=photo.request_id)


def match_request_fail(*, request_id: int, error: str) -> None:
    MatchRequest.fail(request_id, error=error, stage="")


def match_request_retry(*, request: MatchRequest) -> MatchRequest:
    with transaction.atomic():
        updated = MatchRequest.objects.filter(
            pk=request.pk, status=MatchRequest.Status.FAILED
        ).update(status=MatchRequest.Status.QUEUED, error="", progress=0, finished_at=None)
        if updated:
            _enqueue(request.pk)
    request.refresh_from_db()
    return request


def decision_record(
    *,
    request: MatchRequest,
    user: AbstractBaseUser,
    outcome: str,
    candidate_id: int | None = None,
    sku_id: int | None = None,
    note: str = "",
) -> Decision:
    """Record the appraiser's verdict. Rejections and corrections become bad cases; "new
    SKU" resolves its bad case as a catalogue gap at once, for the catalogue admins."""
    from webapp.matching.gallery import gallery_enrich_from_decision
    from webapp.review.services import bad_case_flag_gap, bad_case_open_for

    if request.status != MatchRequest.Status.DONE:
        raise DecisionError("This match has not finished yet.")
    if Decision.objects.filter(request=request).exists():
        raise DecisionError("A decision has already been recorded for this match.")
    candidate = None
    sku = None
    if outcome == Decision.Outcome.ACCEPT:
        candidate = request.candidates.filter(pk=candidate_id).select_related("sku").first()
        if candidate is None:
            raise DecisionInvalid("Pick one of this match's candidates.")
        sku = candidate.sku
    elif outcome == Decision.Outcome.OTHER_SKU:
        sku = SKU.objects.filter(pk=sku_id, is_active=True).first()
        if sku is None:
            raise DecisionInvalid("Choose an existing, active SKU.")
    elif outcome not in (Decision.Outcome.REJECT, Decision.Outcome.NEW_SKU):
        raise DecisionInvalid(f"Unknown outcome {outcome!r}.")
    with transaction.atomic():
        decision = Decision.objects.create(
            request=request,
            outcome=outcome,
            sku=sku,
            candidate=candidate,
            decided_by=user,
            note=note,
            model_version=request.model_version,
            index_version=request.index_version,
        )
        audit_record(
            actor=user,
            action="decision.record",
            obj=decision,
            changes={"outcome": [None, outcome], "sku": [None, sku.code if sku else None]},
        )
        below_threshold = candidate is not None and candidate.score < confident_threshold(
            candidate.sku.category
        )
        if outcome != Decision.Outcome.ACCEPT or below_threshold:
            bad_case = bad_case_open_for(decision=decision)
            if outcome == Decision.Outcome.NEW_SKU:
                # What QA's "catalogue gap" does, by the one who saw the item.
                bad_case_flag_gap(bad_case=bad_case, actor=user,
                                  note=note.strip() or request.query_text)
        gallery_enrich_from_decision(decision=decision)
    return decision


def decision_undo_deadline(decision: Decision) -> datetime | None:
    """Until when the decider may undo this decision; None when undo is switched off."""
    if settings.UNDO_WINDOW_S <= 0:
        return None
    return decision.decided_at + timedelta(seconds=settings.UNDO_WINDOW_S)


def decision_undoable_by(decision: Decision | None, user: AbstractBaseUser) -> bool:
    if decision is None or decision.decided_by_id != user.pk:
        return False
    deadline = decision_undo_deadline(decision)
    return deadline is not None and timezone.now() <= deadline


def _bad_case_as_left(bad_case: BadCase, decision: Decision) -> bool:
    """True while nobody has acted on the bad case since the decision opened it."""
    from webapp.review.models import BadCase, CatalogueGap, FailureCause

    if decision.outcome == Decision.Outcome.NEW_SKU:
        gap = CatalogueGap.objects.select_for_update().filter(bad_case=bad_case).first()
        return (bad_case.status == BadCase.Status.RESOLVED
                and bad_case.resolved_by_id == decision.decided_by_id
                and bad_case.causes == [FailureCause.CATALOGUE_GAP]
                and gap is not None and gap.status == CatalogueGap.Status.OPEN)
    return (bad_case.status == BadCase.Status.OPEN and not bad_case.causes
            and not bad_case.note and bad_case.correct_sku_id == decision.sku_id)


def decision_undo(*, decision: Decision, user: AbstractBaseUser) -> MatchRequest:
    """Withdraw one's own decision within SKULENS_UNDO_WINDOW_S: the match is undecided again.

    Withdrawn with it: its bad case and catalogue gap (only while nobody else has acted on
    them) and the reference images it added to the gallery (the next index sync drops their
    vectors). The audit trail keeps the decision's entry and records the undo beside it: it is
    the history of what happened, and an undo is part of it.
    """
    from webapp.matching.gallery import gallery_withdraw_decision
    from webapp.review.models import BadCase

    with transaction.atomic():
        # No select_related: PostgreSQL cannot lock the nullable side of an outer join.
        locked = Decision.objects.select_for_update().filter(pk=decision.pk).first()
        if locked is None:
            raise DecisionError("This decision has already been undone.")
        if locked.decided_by_id != user.pk:
            raise DecisionError("Only the appraiser who made a decision can undo it.")
        if not decision_undoable_by(locked, user):
            window = settings.UNDO_WINDOW_S
            raise DecisionError(
                "Undo is switched off." if window <= 0 else
                f"A decision can be undone for {_duration(window)} after it was made; "
                "this one is older."
            )
        bad_case = BadCase.objects.select_for_update().filter(decision=locked).first()
        if bad_case is not None and not _bad_case_as_left(bad_case, locked):
            raise DecisionError("QA or the catalogue admins have already acted on this item's "
                                "bad case, so the decision stays; ask QA to change it.")
        images = gallery_withdraw_decision(decision=locked, actor=user)
        audit_record(
            actor=user,
            action="decision.undo",
            obj=locked,
            changes={
                "outcome": [locked.outcome, None],
                "sku": [locked.sku.code if locked.sku else None, None],
                "bad_case": [bad_case.pk if bad_case else None, None],
                "gallery_images": [images, []],
            },
        )
        request_id = locked.request_id
        locked.delete()  # its bad case and catalogue gap go with it (CASCADE)
    return MatchRequest.objects.get(pk=request_id)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:g} seconds"
    return f"{seconds / 60:g} minutes"
