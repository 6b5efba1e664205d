"""Thin, idempotent tasks: pass ids, guard on status, retry only transient errors."""

from __future__ import annotations

import logging

from celery import Task, shared_task
from celery.signals import worker_process_init, worker_ready
from django.db import InterfaceError, OperationalError

from webapp.matching.services import match_request_fail, match_request_run

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
    except TRANSIENT_ERRORS as exc:
        if self.request.retries >= MAX_RETRIES:
            match_request_fail(request_id=request_id, error=f"Database unavailable: {exc}")
            return
        raise self.retry(exc=exc, countdown=2 ** (self.request.retries + 1)) from exc
    except Exception as exc:  # noqa: BLE001 - any other failure is shown on the page
        logger.exception("match %s failed", request_id)
        match_request_fail(request_id=request_id, error=f"{type(exc).__name__}: {exc}")


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
