"""Thin, idempotent tasks: pass ids, guard on status, retry only transient errors."""

from __future__ import annotations

import logging

from celery import Task, shared_task
from celery.signals import worker_process_init, worker_ready
from django.conf import settings
from django.db import InterfaceError, OperationalError

from webapp.matching.services import MatchBusy, match_request_fail, match_request_run

logger = logging.getLogger(__name__)

TRANSIENT_ERRORS = (OperationalError, InterfaceError)
MAX_RETRIES = 3


@shared_task(
    name="matching.run_match",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=MAX_RETRIES,
)
def run_match(self: Task, request_id: int) -> None:
    try:
        match_request_run(request_id=request_id)
    except MatchBusy as exc:
        # A duplicate message while a live worker runs it: look again once its heartbeat
        # could have gone stale, in case that worker dies meanwhile.
        raise self.retry(exc=exc, countdown=settings.MATCH_STALE_S,
                         max_retries=self.request.retries + 1) from exc
    except TRANSIENT_ERRORS as exc:
        if self.request.retries >= MAX_RETRIES:
            logger.error("match %s: database unavailable after %d retries: %s",
                         request_id, MAX_RETRIES, exc)
            failure_record.delay(request_id, f"Database unavailable after {MAX_RETRIES} "
                                             f"retries: {exc}".strip())
            return
        countdown = 2 ** (self.request.retries + 1)
        logger.warning("match %s: database unavailable, retry %d of %d in %d s: %s",
                       request_id, self.request.retries + 1, MAX_RETRIES, countdown, exc)
        raise self.retry(exc=exc, countdown=countdown) from exc
    except Exception as exc:  # noqa: BLE001 - any other failure is shown on the page
        logger.exception("match %s failed", request_id)
        match_request_fail(request_id=request_id, error=f"{type(exc).__name__}: {exc}")


@shared_task(name="matching.record_failure", bind=True, acks_late=True, max_retries=30,
             queue="gpu")
def failure_record(self: Task, request_id: int, error: str) -> None:
    """Write a failure once the database answers again (a finished match is never touched)."""
    try:
        match_request_fail(request_id=request_id, error=error)
    except TRANSIENT_ERRORS as exc:
        raise self.retry(exc=exc, countdown=min(60, 2 ** (self.request.retries + 1))) from exc


@shared_task(name="matching.sweep_stuck_work", ignore_result=True)
def sweep_stuck_work() -> int:
    """Celery beat: re-send the tasks of rows whose message was lost (webapp.sweeper)."""
    from webapp.sweeper import stuck_work_sweep

    return stuck_work_sweep().total


@shared_task(name="matching.recalibrate_thresholds", acks_late=True, ignore_result=True)
def recalibrate_thresholds() -> int:
    """Daily: refit the re-ranking's fusion on decisions, then the thresholds on its scores."""
    from webapp.matching.calibration import fusion_recalibrate, thresholds_recalibrate

    fusion_recalibrate()
    return len(thresholds_recalibrate())


@worker_ready.connect
@worker_process_init.connect
def _warm_up(**_: object) -> None:
    from webapp import ml_gateway

    ml_gateway.warm_up()
