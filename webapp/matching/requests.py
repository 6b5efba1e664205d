"""Match requests: create one (validated photos, stored together, enqueued on commit), run it
again with a corrected box, or retry a failed one. Running it is webapp.matching.runner."""

from __future__ import annotations

import errno
from collections.abc import Iterable, Mapping, Sequence

from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from ml.types import Box
from webapp.catalog.models import Brand, Category, Series
from webapp.catalog.selectors import sku_attribute_keys
from webapp.matching.decisions import DecisionError
from webapp.matching.models import Decision, MatchRequest, QueryPhoto
from webapp.matching.query_inputs import query_text_clean, soft_attributes_clean
from webapp.matching.runner import StorageFullError
from webapp.matching.tasks import run_match
from webapp.matching.validation import UploadedPhoto, ValidPhoto, validate_photos
from webapp.sweeper import enqueue_on_commit


def _enqueue(request_id: int) -> None:
    """Send the match task once this commits; with the broker down the row stays QUEUED and
    the sweeper sends it later (webapp.sweeper)."""
    MatchRequest.objects.filter(pk=request_id).update(enqueued_at=timezone.now())
    enqueue_on_commit(run_match, request_id)


def match_request_create(
    *,
    user: User,
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


def match_request_retry(*, request: MatchRequest) -> MatchRequest:
    with transaction.atomic():
        updated = MatchRequest.objects.filter(
            pk=request.pk, status=MatchRequest.Status.FAILED
        ).update(status=MatchRequest.Status.QUEUED, error="", progress=0, finished_at=None)
        if updated:
            _enqueue(request.pk)
    request.refresh_from_db()
    return request
