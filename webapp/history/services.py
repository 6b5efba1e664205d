"""Labelled history import: a marketplace's past listings become confirmed matches.

Each item (a listing, or one photo) becomes what a confirmed live match leaves behind, so
every existing reader treats it as labelled data:
- a `MatchRequest` with `source="history"`, status done and no candidates,
- its `QueryPhoto` rows (validated and normalised exactly like uploads),
- a `Decision` naming the SKU ("attached another SKU", there being no candidates), decided by
  the importing admin, with no bad case: `learning.dataset.labelled_requests` trains on it and
  `is_holdout` gives a share of it to the gate;
- reference images by the gallery enrichment policy (`planning.gallery_room`), named like
  `webapp.matching.gallery`'s so the gate keeps each request's own photos out of its gallery.

An import is a row people can watch (`HistoryImport`): the page's uploads are planned (the dry
run) and applied by the `history.run_import` task on the default queue, claimed by
compare-and-swap; the command line runs the same code in-process. Applying is all or nothing:
the photos are stored first (outside any transaction, so progress shows), then every row is
written in one transaction; any rejected row or error deletes the files again. After it
commits, `learning.sync_index` indexes the new reference images and `history.isolate_photos`
(gpu queue, webapp.history.isolation) finds each photo's item box, so training crops match
what queries see.
"""

from __future__ import annotations

import io
import logging
import time
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import F
from django.db.models.fields.files import FieldFile
from django.utils import timezone

from webapp.accounts.roles import Actor
from webapp.audit.services import audit_record
from webapp.catalog.bundles import ImageSource, open_zip_csv
from webapp.catalog.importing import CatalogueFormatError
from webapp.catalog.models import SKU, SKUImage
from webapp.catalog.services import catalogue_changed_on_commit
from webapp.enqueue import enqueue_on_commit
from webapp.history.format import HISTORY_CSV_NAME, HistoryRow, parse_history_csv
from webapp.history.models import HistoryImport, HistoryPhoto
from webapp.history.planning import (
    HistoryPlan,
    PhotoFiles,
    PlannedItem,
    Progress,
    gallery_room,
    plan_rows,
)
from webapp.matching.models import Decision, MatchRequest, QueryPhoto

logger = logging.getLogger(__name__)

# Decisions need a person; command-line imports without --user are recorded under this one.
SYSTEM_USERNAME = "history-import"
# A working row whose heartbeat is older than this lost its worker and may be taken over.
STALE_AFTER = timedelta(minutes=10)
PROGRESS_EVERY_S = 1.0
BULK = 500

Status = HistoryImport.Status


class HistoryImportError(ValueError):
    """A refused action; `str(exc)` is safe to show to the admin."""


def _user(actor: Actor) -> User | None:
    return actor if actor is not None and actor.is_authenticated else None


def history_decider(actor: Actor) -> User:
    """The user the imported decisions are recorded under: the admin, else the system user."""
    user = _user(actor)
    if user is not None:
        return user
    model = get_user_model()
    system, created = model.objects.get_or_create(
        username=SYSTEM_USERNAME, defaults={"is_active": False}
    )
    if created:
        system.set_unusable_password()
        system.save(update_fields=["password"])
    return system


class _RowProgress:
    """Writes rows done and a heartbeat to the import row about once a second."""

    def __init__(self, import_id: int, echo: Progress | None = None) -> None:
        self.import_id = import_id
        self.echo = echo
        self.last = 0.0

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last >= PROGRESS_EVERY_S:
            self.last = now
            HistoryImport.objects.filter(pk=self.import_id).update(
                rows_done=done, heartbeat_at=timezone.now()
            )
        if self.echo is not None:
            self.echo(done)


def _stage(import_id: int, stage: str) -> None:
    HistoryImport.objects.filter(pk=import_id).update(stage=stage, heartbeat_at=timezone.now())


def _finish(record: HistoryImport, status: str, plan: HistoryPlan, **fields: object) -> None:
    values = {"status": status, "report": plan.as_json(), "stage": "",
              "rows_done": len(plan.rows), "finished_at": timezone.now(), "error": "", **fields}
    HistoryImport.objects.filter(pk=record.pk).update(**values)
    for key, value in values.items():
        setattr(record, key, value)


# ----- applying: stored files, then every row in one transaction ---------------------------


class _Refused(Exception):
    def __init__(self, plan: HistoryPlan) -> None:
        self.plan = plan


def _recheck(plan: HistoryPlan, items: list[PlannedItem]) -> set[str]:
    """Inside the transaction: every SKU still active (locked); gallery photos the cap drops.

    Returns the gallery file names no longer wanted. Raises _Refused."""
    sku_ids = {item.sku_id for item in items}
    active = set(SKU.objects.select_for_update().filter(pk__in=sku_ids, is_active=True)
                 .values_list("pk", flat=True))
    by_line = {row.line: row for row in plan.rows}
    gone = sku_ids - active
    if gone:
        for item in items:
            if item.sku_id in gone:
                for photo in item.photos:
                    row = by_line[photo.line]
                    row.action = "reject"
                    row.reasons.append(f"SKU {row.sku_code} was deactivated during the import")
        raise _Refused(plan)
    room = gallery_room(sku_ids)  # live decisions may have used some since the pass
    dropped = set()
    for item in items:
        for photo in item.photos:
            if photo.gallery is None:
                continue
            if room[item.sku_id] > 0:
                room[item.sku_id] -= 1
            else:
                dropped.add(photo.gallery)
                by_line[photo.line].gallery = False
    return dropped


def _record(
    record: HistoryImport, plan: HistoryPlan, items: list[PlannedItem], decider: User
) -> tuple[int, set[str]]:
    """Write every item's rows; returns (reference images added, gallery files unused)."""
    dropped = _recheck(plan, items)
    now = timezone.now()
    requests = [
        MatchRequest(created_by=decider, status=MatchRequest.Status.DONE, progress=100,
                     source=MatchRequest.Source.HISTORY, started_at=item.matched_at or now,
                     finished_at=item.matched_at or now)
        for item in items
    ]
    MatchRequest.objects.bulk_create(requests, batch_size=BULK)
    dated = [r for r, item in zip(requests, items, strict=True) if item.matched_at]
    for request in dated:  # auto_now_add stamped them with today
        assert request.started_at is not None  # set above
        request.created_at = request.started_at
    MatchRequest.objects.bulk_update(dated, ["created_at"], batch_size=BULK)

    photos: list[QueryPhoto] = []
    for request, item in zip(requests, items, strict=True):
        for position, stored in enumerate(item.photos):
            photos.append(QueryPhoto(
                request=request, position=position, original=stored.original,
                image=stored.image, original_name=stored.path[-255:],
                original_format=stored.original_format, width=stored.width,
                height=stored.height,
            ))
    QueryPhoto.objects.bulk_create(photos, batch_size=BULK)

    label = f"Imported history (import #{record.pk})"
    decisions = [
        Decision(request=request, outcome=Decision.Outcome.OTHER_SKU, sku_id=item.sku_id,
                 decided_by=decider,
                 note=f"{label}, listing {item.listing}" if item.listing else label)
        for request, item in zip(requests, items, strict=True)
    ]
    Decision.objects.bulk_create(decisions, batch_size=BULK)
    for decision, request in zip(decisions, requests, strict=True):
        assert request.finished_at is not None  # set above
        decision.decided_at = request.finished_at
    Decision.objects.bulk_update(decisions, ["decided_at"], batch_size=BULK)

    origins, references = [], []
    photo_rows = iter(photos)
    for request, item in zip(requests, items, strict=True):
        for stored in item.photos:
            photo = next(photo_rows)
            origins.append(HistoryPhoto(
                history_import=record, request=request, photo=photo, line=stored.line,
                path=stored.path[:500], listing=item.listing, checksum=stored.checksum,
            ))
            if stored.gallery is not None and stored.gallery not in dropped:
                references.append(SKUImage(
                    sku_id=item.sku_id, image=stored.gallery, source=SKUImage.Source.APPRAISAL,
                    # webapp.matching.gallery's naming: the gate recognises a photo's request.
                    position=1000 + request.pk,
                    original_name=f"match-{request.pk}-photo-{photo.position}",
                    checksum=stored.gallery_checksum,
                ))
    HistoryPhoto.objects.bulk_create(origins, batch_size=BULK)
    SKUImage.objects.bulk_create(references, batch_size=BULK)
    return len(references), dropped


def _audit(record: HistoryImport, actor: Actor, items: list[PlannedItem], added: int) -> None:
    photos = Counter({item.sku_id: 0 for item in items})
    listings: Counter[int] = Counter()
    for item in items:
        photos[item.sku_id] += len(item.photos)
        listings[item.sku_id] += 1
    audit_record(actor=actor, action="history.import", obj=record, changes={
        "items": [None, len(items)], "photos": [None, sum(photos.values())],
        "reference_images": [None, added], "skus": [None, len(photos)],
    })
    for sku in SKU.objects.filter(pk__in=photos.keys()):
        audit_record(actor=actor, action="history.import", obj=record, sku=sku, changes={
            "items": [None, listings[sku.pk]], "photos": [None, photos[sku.pk]]})


def _apply(
    record: HistoryImport,
    rows: Sequence[HistoryRow],
    source: ImageSource,
    actor: Actor,
    echo: Progress | None = None,
) -> HistoryImport:
    """Store, then record; the row ends applied or refused (or the error propagates)."""
    files = PhotoFiles(record.pk)
    files.delete_all()  # a dead worker's half-written files, if this is a takeover
    try:
        _stage(record.pk, "storing photos")
        plan, items = plan_rows(rows=rows, source=source, files=files,
                                progress=_RowProgress(record.pk, echo))
        if not plan.ok:
            files.delete_all()
            _finish(record, Status.REFUSED, plan)
            return record
        _stage(record.pk, "recording")
        decider = history_decider(actor)
        try:
            with transaction.atomic():
                locked = HistoryImport.objects.select_for_update().get(pk=record.pk)
                if locked.status != Status.APPLYING:
                    raise HistoryImportError(f"import #{record.pk} is no longer being applied")
                added, dropped = _record(locked, plan, items, decider)
                plan.applied = True
                photos = sum(len(item.photos) for item in items)
                _finish(record, Status.APPLIED, plan, applied_at=timezone.now(),
                        items_created=len(items), photos_created=photos, gallery_added=added,
                        isolation=HistoryImport.Isolation.QUEUED if photos else "")
                _audit(record, actor, items, added)
                if added:
                    catalogue_changed_on_commit()
                if photos:
                    _enqueue_isolation(record.pk)
        except _Refused as refused:
            files.delete_all()
            _finish(record, Status.REFUSED, refused.plan)
            return record
    except BaseException:
        files.delete_all()  # the rows were rolled back: their files go too
        raise
    for name in dropped:
        files.storage.delete(name)
    if record.bundle:
        record.bundle.delete(save=False)  # the photos are stored; the upload is not needed
        HistoryImport.objects.filter(pk=record.pk).update(bundle="")
    logger.info("history import %s: %d items, %d photos, %d reference images", record.pk,
                record.items_created, record.photos_created, record.gallery_added)
    return record


def history_import_run(
    *,
    rows: Sequence[HistoryRow],
    source: ImageSource,
    actor: Actor,
    origin: str = "command",
    original_name: str = "",
    dry_run: bool = False,
    echo: Progress | None = None,
) -> tuple[HistoryPlan, HistoryImport | None]:
    """The command line's (and the demo's) import, in this process.

    A dry run writes nothing at all; otherwise an import row records the outcome (applied, or
    refused with its report) and the page shows its progress while it runs."""
    if dry_run:
        plan, _ = plan_rows(rows=rows, source=source, progress=echo)
        return plan, None
    user = _user(actor)
    record = HistoryImport.objects.create(
        created_by=user, applied_by=user, origin=origin, original_name=original_name[:255],
        status=Status.APPLYING, rows_total=len(rows), attempts=1, started_at=timezone.now(),
        heartbeat_at=timezone.now(),
    )
    try:
        _apply(record, rows, source, actor, echo)
    except BaseException as exc:
        history_import_fail(import_id=record.pk, error=f"{type(exc).__name__}: {exc}")
        raise
    return HistoryPlan.from_json(record.report), record


# ----- the page: upload, dry run and apply by the worker -------------------------------------


def _enqueue_run(import_id: int) -> None:
    # A broker that is down: the sweeper resends.
    enqueue_on_commit("history.run_import", import_id)


def _enqueue_isolation(import_id: int) -> None:
    enqueue_on_commit("history.isolate_photos", import_id)


def history_import_start(*, actor: Actor, zip_data: bytes, original_name: str) -> HistoryImport:
    """Store the upload and queue its dry run. Raises CatalogueFormatError for a file that is
    no history bundle at all (not a zip, no CSV, missing columns): that is said at once."""
    text, csv_name, _ = open_zip_csv(io.BytesIO(zip_data), preferred=HISTORY_CSV_NAME)
    rows = parse_history_csv(text, name=csv_name)
    with transaction.atomic():
        record = HistoryImport(created_by=_user(actor), origin="upload",
                               original_name=original_name[:255], rows_total=len(rows),
                               stage="waiting for a worker")
        record.bundle.save("history-import.zip", ContentFile(zip_data), save=False)
        record.save()
        _enqueue_run(record.pk)
    return record


def history_import_apply_request(*, record: HistoryImport, actor: Actor) -> HistoryImport:
    """Queue the import of a clean dry run; a second click finds it queued already."""
    with transaction.atomic():
        updated = HistoryImport.objects.filter(pk=record.pk, status=Status.PLANNED).update(
            status=Status.APPLY_QUEUED, applied_by=_user(actor), rows_done=0,
            stage="waiting for a worker", error="",
        )
        if updated:
            _enqueue_run(record.pk)
    record.refresh_from_db()
    if not updated and record.status in (Status.REFUSED, Status.FAILED):
        raise HistoryImportError("This import cannot be applied: see its report.")
    return record


def _claim(import_id: int, *, takeover: bool) -> str | None:
    """Compare-and-swap a queued row to working; returns the phase claimed, or None.

    A row already working is taken over only when its heartbeat is stale (its worker died)
    or when `takeover` says this delivery is the retry of the one that held it."""
    for waiting, working in ((Status.QUEUED, Status.PLANNING),
                             (Status.APPLY_QUEUED, Status.APPLYING)):
        if HistoryImport.claim(import_id, takeover=True if takeover else STALE_AFTER,
                               waiting=waiting, working=working,
                               rows_done=0, attempts=F("attempts") + 1):
            return working
    return None


def _open_bundle(record: HistoryImport) -> tuple[FieldFile, list[HistoryRow], ImageSource]:
    try:
        if not record.bundle:
            raise OSError("pruned")
        handle = record.bundle.open("rb")
    except OSError as exc:
        raise CatalogueFormatError("the upload is no longer stored; upload it again") from exc
    text, csv_name, source = open_zip_csv(handle, preferred=HISTORY_CSV_NAME)
    return handle, parse_history_csv(text, name=csv_name), source


def history_import_execute(*, import_id: int, takeover: bool = False) -> bool:
    """Run the dry run or the import the row waits for; False when there was nothing to do
    (a redelivered message for a finished row, or one another worker holds)."""
    phase = _claim(import_id, takeover=takeover)
    if phase is None:
        return False
    record = HistoryImport.objects.select_related("applied_by").get(pk=import_id)
    handle, rows, source = _open_bundle(record)
    with handle:
        HistoryImport.objects.filter(pk=import_id).update(rows_total=len(rows))
        if phase == Status.PLANNING:
            _stage(import_id, "checking every photo")
            plan, _ = plan_rows(rows=rows, source=source, progress=_RowProgress(import_id))
            _finish(record, Status.PLANNED if plan.ok else Status.REFUSED, plan)
        else:
            _apply(record, rows, source, record.applied_by)
    return True


def history_import_fail(*, import_id: int, error: str) -> None:
    """An error (not a rejected row): shown on the page; nothing was imported."""
    HistoryImport.fail(import_id, error=error, stage="")


def history_bundles_prune(*, older_than_days: int) -> int:
    """Delete stored uploads of imports older than this that were never applied."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    pruned = 0
    for record in HistoryImport.objects.filter(created_at__lt=cutoff).exclude(bundle=""):
        record.bundle.delete(save=False)
        HistoryImport.objects.filter(pk=record.pk).update(bundle="")
        pruned += 1
    return pruned
