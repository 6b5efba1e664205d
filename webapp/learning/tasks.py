from __future__ import annotations

import logging

from celery import Task, shared_task
from django.db import InterfaceError, OperationalError

from webapp.learning.services import index_publish

logger = logging.getLogger(__name__)


@shared_task(name="learning.sync_index", acks_late=True, ignore_result=True)
def sync_index() -> int:
    """Incremental: re-running it with nothing changed publishes an identical index."""
    return index_publish().vector_count


# ----- the learning loop: thin tasks over webapp.learning.training / promotion ----------------
# Both run on the gpu queue (CELERY_TASK_ROUTES "learning.*"); the rows' status guards make a
# redelivered message return early.

TRANSIENT_ERRORS = (OperationalError, InterfaceError)


@shared_task(
    name="learning.train_model", bind=True, acks_late=True, reject_on_worker_lost=True,
    max_retries=3, ignore_result=True,
)
def train_model(self: Task, run_id: int) -> None:
    from webapp.learning.training import training_run_execute, training_run_fail

    try:
        training_run_execute(run_id=run_id)
    except TRANSIENT_ERRORS as exc:
        if self.request.retries >= 3:
            training_run_fail(run_id=run_id, error=f"Database unavailable: {exc}")
            return
        # The claim only takes over a RUNNING row once its heartbeat is stale.
        raise self.retry(exc=exc, countdown=60 * (self.request.retries + 1)) from exc
    except Exception as exc:  # noqa: BLE001 - shown on the run's page
        logger.exception("training run %s failed", run_id)
        training_run_fail(run_id=run_id, error=f"{type(exc).__name__}: {exc}")


@shared_task(
    name="learning.promote_model", bind=True, acks_late=True, reject_on_worker_lost=True,
    max_retries=3, ignore_result=True,
)
def promote_model(self: Task, promotion_id: int) -> None:
    from webapp.learning.promotion import promotion_execute, promotion_fail

    try:
        promotion_execute(promotion_id=promotion_id)
    except TRANSIENT_ERRORS as exc:
        if self.request.retries >= 3:
            promotion_fail(promotion_id=promotion_id, error=f"Database unavailable: {exc}")
            return
        raise self.retry(exc=exc, countdown=2 ** (self.request.retries + 1)) from exc
    except Exception as exc:  # noqa: BLE001 - shown on the models page; the old pair stays live
        logger.exception("promotion %s failed", promotion_id)
        promotion_fail(promotion_id=promotion_id, error=f"{type(exc).__name__}: {exc}")
        return
    prune_artifacts.delay()


@shared_task(name="learning.prune_artifacts", acks_late=True, ignore_result=True)
def prune_artifacts() -> int:
    """Daily and after each promotion: the retention policy (webapp.learning.retention)."""
    from webapp.learning.retention import artifacts_prune

    report = artifacts_prune()
    return len(report.index_versions) + len(report.checkpoints)


@shared_task(name="learning.check_retraining", acks_late=True, ignore_result=True)
def check_retraining() -> int | None:
    """Celery beat: start a run once enough new resolved bad cases have gathered."""
    from webapp.learning.training import training_run_maybe_trigger

    run = training_run_maybe_trigger()
    return run.pk if run else None
