"""Thin, idempotent catalogue tasks: pass ids, guard on the row's status."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from webapp.catalog.bulk import import_bundles_prune
from webapp.catalog.duplicates import duplicate_scan_fail, duplicate_scan_run
from webapp.jobs import job_task


def _scan_fail(scan_id: int, error: str) -> None:
    duplicate_scan_fail(scan_id=scan_id, error=error)


# No retries: any failure is shown on the page, and a rescan is one click. The gpu queue
# (CELERY_TASK_ROUTES): those are the workers every deployment runs (the scan uses Faiss too).
@job_task(name="catalog.scan_duplicates", fail=_scan_fail, what="duplicate scan", max_retries=0)
def scan_duplicates(scan_id: int, *, retried: bool) -> None:
    duplicate_scan_run(scan_id=scan_id)


@shared_task(name="catalog.prune_import_bundles", ignore_result=True)
def prune_import_bundles() -> None:
    from webapp.history.services import history_bundles_prune

    import_bundles_prune(older_than_days=settings.IMPORT_BUNDLE_DAYS)
    history_bundles_prune(older_than_days=settings.IMPORT_BUNDLE_DAYS)
