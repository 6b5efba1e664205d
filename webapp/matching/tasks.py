"""Thin, idempotent tasks: pass ids, guard on status, retry only transient errors."""

from __future__ import annotations

import logging

from celery import Task, shared_task
from celery.signals import worker_process_init, worker_ready
from django.conf import settings

from webapp.jobs import MAX_RETRIES, TRANSIENT_ERRORS, job_task
from webapp.matching.calibration import fusion_recalibrate, thresholds_recalibrate
from webapp.matching.runner import match_request_fail, match_request_run
from webapp.sweeper import stuck_work_sweep

logger = logging.getLogger(__name__)


def _fail(request_id: int, error: str) -> None:
    match_request_fail(request_id=request_id, error=error)


def _database_gone(request_id: int, exc: Exception) -> None:
    # The row cannot be written now either: a task of its own writes it once it can.
    failure_record.delay(request_id, f"Database unavailable after {MAX_RETRIES} "
                                     f"retries: {exc}".strip())


@job_task(name="matching.run_match", fail=_fail, what="match",
          busy_countdown_s=lambda: settings.MATCH_STALE_S, database_gone=_database_gone)
def run_match(request_id: int, *, retried: bool) -> None:
    match_request_run(request_id=request_id)  # raises MatchBusy while a live worker has it


@shared_task(name="matching.record_failure", bind=True, acks_late=True, max_retries=30)
def failure_record(self: Task, request_id: int, error: str) -> None:
    """Write a failure once the database answers again (a finished match is never touched)."""
    try:
        match_request_fail(request_id=request_id, error=error)
    except TRANSIENT_ERRORS as exc:
        raise self.retry(exc=exc, countdown=min(60, 2 ** (self.request.retries + 1))) from exc


@shared_task(name="matching.sweep_stuck_work", ignore_result=True)
def sweep_stuck_work() -> int:
    """Celery beat: re-send the tasks of rows whose message was lost (webapp.sweeper)."""
    return stuck_work_sweep().total


@shared_task(name="matching.recalibrate_thresholds", acks_late=True, ignore_result=True)
def recalibrate_thresholds() -> int:
    """Daily: refit the re-ranking's fusion on decisions, then the thresholds on its scores."""
    fusion_recalibrate()
    return len(thresholds_recalibrate())


@worker_ready.connect
@worker_process_init.connect
def _warm_up(**_: object) -> None:
    from webapp import ml_gateway

    ml_gateway.warm_up()
