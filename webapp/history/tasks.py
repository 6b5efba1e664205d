"""Thin, idempotent history tasks: pass ids; the rows' status guards a redelivered message."""

from __future__ import annotations

import logging

from celery import Task, shared_task
from django.db import InterfaceError, OperationalError

from webapp.history.services import (
    history_import_execute,
    history_import_fail,
    history_isolation_fail,
    history_isolation_run,
)

logger = logging.getLogger(__name__)

TRANSIENT_ERRORS = (OperationalError, InterfaceError)
MAX_RETRIES = 3


# Reading, validating and storing photos is CPU and disk work, no model: the default queue.
@shared_task(name="history.run_import", queue="default", bind=True, acks_late=True,
             reject_on_worker_lost=True, max_retries=MAX_RETRIES, ignore_result=True)
def run_import(self: Task, import_id: int) -> None:
    try:
        # A retry of this very message may take back the row it was holding.
        history_import_execute(import_id=import_id, takeover=self.request.retries > 0)
    except TRANSIENT_ERRORS as exc:
        if self.request.retries >= MAX_RETRIES:
            history_import_fail(import_id=import_id, error=f"Database unavailable: {exc}")
            return
        raise self.retry(exc=exc, countdown=30 * (self.request.retries + 1)) from exc
    except Exception as exc:  # noqa: BLE001 - shown on the import's page; nothing was imported
        logger.exception("history import %s failed", import_id)
        history_import_fail(import_id=import_id, error=f"{type(exc).__name__}: {exc}")


# The detector and GrabCut: where the models are.
@shared_task(name="history.isolate_photos", queue="gpu", bind=True, acks_late=True,
             reject_on_worker_lost=True, max_retries=MAX_RETRIES, ignore_result=True)
def isolate_photos(self: Task, import_id: int) -> None:
    try:
        # One chunk per message: the next goes to the back of the queue, behind live matches.
        if history_isolation_run(import_id=import_id, takeover=self.request.retries > 0,
                                 max_chunks=1):
            isolate_photos.delay(import_id)
    except TRANSIENT_ERRORS as exc:
        if self.request.retries >= MAX_RETRIES:
            history_isolation_fail(import_id=import_id, error=f"Database unavailable: {exc}")
            return
        raise self.retry(exc=exc, countdown=30 * (self.request.retries + 1)) from exc
    except Exception as exc:  # noqa: BLE001 - shown on the page; photos keep the full frame
        logger.exception("isolating history import %s failed", import_id)
        history_isolation_fail(import_id=import_id, error=f"{type(exc).__name__}: {exc}")
