from __future__ import annotations

from celery import shared_task

from webapp.jobs import exponential_backoff, job_task, linear_backoff
from webapp.learning.services import index_publish


@shared_task(name="learning.sync_index", acks_late=True, ignore_result=True)
def sync_index() -> int:
    """Incremental: re-running it with nothing changed publishes an identical index."""
    return index_publish().vector_count


# ----- the learning loop: thin tasks over webapp.learning.training / promotion ----------------
# Both run on the gpu queue (CELERY_TASK_ROUTES "learning.*"); the rows' status guards make a
# redelivered message return early.

def _training_run_fail(run_id: int, error: str) -> None:
    from webapp.learning.training import training_run_fail

    training_run_fail(run_id=run_id, error=error)


def _promotion_fail(promotion_id: int, error: str) -> None:
    from webapp.learning.promotion import promotion_fail

    promotion_fail(promotion_id=promotion_id, error=error)  # the old pair stays live


# The claim only takes over a RUNNING run once its heartbeat is stale: retry slowly.
@job_task(name="learning.train_model", fail=_training_run_fail, what="training run",
          backoff_s=linear_backoff(60))
def train_model(run_id: int, *, retried: bool) -> None:
    from webapp.learning.training import training_run_execute

    training_run_execute(run_id=run_id)


@job_task(name="learning.promote_model", fail=_promotion_fail, what="promotion",
          backoff_s=exponential_backoff)
def promote_model(promotion_id: int, *, retried: bool) -> None:
    from webapp.learning.promotion import promotion_execute

    promotion_execute(promotion_id=promotion_id)
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
