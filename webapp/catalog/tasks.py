"""Thin, idempotent catalogue tasks: pass ids, guard on the row's status."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from webapp.catalog.bulk import import_bundles_prune
from webapp.catalog.duplicates import duplicate_scan_fail, duplicate_scan_run

logger = logging.getLogger(__name__)


# On the gpu queue: those are the workers every deployment runs (the scan uses Faiss too).
@shared_task(name="catalog.scan_duplicates", queue="gpu", acks_late=True,
             reject_on_worker_lost=True, ignore_result=True)
def scan_duplicates(scan_id: int) -> None:
    try:
        duplicate_scan_run(scan_id=scan_id)
    except Exception as exc:  # noqa: BLE001 - shown on the page; a rescan is one click
        logger.exception("duplicate scan %s failed", scan_id)
        duplicate_scan_fail(scan_id=scan_id, error=f"{type(exc).__name__}: {exc}")


@shared_task(name="catalog.prune_import_bundles", ignore_result=True)
def prune_import_bundles() -> None:
    from webapp.history.services import history_bundles_prune

    import_bundles_prune(older_than_days=settings.IMPORT_BUNDLE_DAYS)
    history_bundles_prune(older_than_days=settings.IMPORT_BUNDLE_DAYS)
