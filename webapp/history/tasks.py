"""Thin, idempotent history tasks: pass ids; the rows' status guards a redelivered message."""

from __future__ import annotations

from webapp.history.isolation import history_isolation_fail, history_isolation_run
from webapp.history.services import history_import_execute, history_import_fail
from webapp.jobs import job_task, linear_backoff


def _import_fail(import_id: int, error: str) -> None:
    history_import_fail(import_id=import_id, error=error)  # nothing was imported


def _isolation_fail(import_id: int, error: str) -> None:
    history_isolation_fail(import_id=import_id, error=error)  # photos keep the full frame


# Queues: CELERY_TASK_ROUTES (the dry run and import on default, isolation on gpu).
@job_task(name="history.run_import", fail=_import_fail, what="history import",
          backoff_s=linear_backoff(30))
def run_import(import_id: int, *, retried: bool) -> None:
    # A retry of this very message may take back the row it was holding.
    history_import_execute(import_id=import_id, takeover=retried)


@job_task(name="history.isolate_photos", fail=_isolation_fail,
          what="isolating history import", backoff_s=linear_backoff(30))
def isolate_photos(import_id: int, *, retried: bool) -> None:
    # One chunk per message: the next goes to the back of the queue, behind live matches.
    if history_isolation_run(import_id=import_id, takeover=retried, max_chunks=1):
        isolate_photos.delay(import_id)
