"""Long work is a row people can watch: the fields and the claim that every job row shares,
and the one decorator (`job_task`) that turns a job's body into a Celery task with the retry
policy.

A job row (a match request, a training run, a promotion, a duplicate scan, an index version, a
catalogue or history import) carries its status, progress, timestamps, error and heartbeat.
A worker takes the row with `claim`, one compare-and-swap UPDATE, so that of several deliveries
of the same message exactly one does the work; it gives the row up with `fail`.

What may be taken over differs by job, and each caller says it with `takeover`:
- `False`: only a waiting row (a request taken along in another's batch);
- a `timedelta`: also a working row whose worker stopped beating for that long (work that must
  not run twice while its worker lives: matches, training runs, history imports);
- `True`: also any working row (work that is safe to repeat and writes no heartbeat:
  promotions, duplicate scans).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any, ClassVar, Protocol

from celery import Task, shared_task
from django.db import InterfaceError, OperationalError, models
from django.db.models import Q
from django.utils import timezone

logger = logging.getLogger(__name__)

QUEUED = "queued"
RUNNING = "running"
FAILED = "failed"


class JobRow(models.Model):
    """Abstract: each job declares `status` with its own `Status` choices (whose waiting,
    working and failed values are "queued", "running" and "failed" unless it says otherwise)."""

    status = models.CharField(max_length=10, default=QUEUED)
    # Percent done, for the page's progress bar.
    progress = models.FloatField(default=0.0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Written while a worker holds the row: a working row with an old heartbeat lost its worker.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    # `fail` leaves rows in these statuses alone (a finished job is never marked failed).
    FAIL_KEEPS: ClassVar[tuple[str, ...]] = ("done",)
    ERROR_MAX_CHARS: ClassVar[int] = 2000

    class Meta:
        abstract = True

    @classmethod
    def orphaned(cls, *, stale_after: timedelta, working: str = RUNNING) -> Q:
        """Working rows whose worker stopped writing its heartbeat `stale_after` ago."""
        stale = timezone.now() - stale_after
        return Q(status=working) & (
            Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True, started_at__lt=stale)
        )

    @classmethod
    def claim(
        cls,
        pk: int,
        *,
        takeover: bool | timedelta,
        waiting: str = QUEUED,
        working: str = RUNNING,
        also: Q | None = None,
        **changes: Any,
    ) -> bool:
        """Compare-and-swap the row from `waiting` (or a working row `takeover` allows) to
        `working`, stamping started_at and heartbeat_at and writing `changes` with it.

        `also` narrows what may be claimed (e.g. not a run someone asked to cancel). True
        when this caller won the row."""
        claimable = Q(status=waiting)
        if takeover is True:
            claimable |= Q(status=working)
        elif isinstance(takeover, timedelta):
            claimable |= cls.orphaned(stale_after=takeover, working=working)
        rows = cls._default_manager.filter(claimable, pk=pk)
        if also is not None:
            rows = rows.filter(also)
        now = timezone.now()
        return bool(rows.update(status=working, started_at=now, heartbeat_at=now, **changes))

    @classmethod
    def fail(cls, pk: int, *, error: str, failed: str = FAILED, **changes: Any) -> bool:
        """Mark the row failed with `error` (cut to ERROR_MAX_CHARS), unless it is in a status
        of FAIL_KEEPS. True when a row was written."""
        return bool(
            cls._default_manager.filter(pk=pk).exclude(status__in=cls.FAIL_KEEPS).update(
                status=failed, error=error[: cls.ERROR_MAX_CHARS], finished_at=timezone.now(),
                **changes,
            )
        )


# ----- the task: one retry policy for every job --------------------------------------------

# A database that went away for a moment (a restart, a failover, a cut connection): the only
# errors worth retrying. Anything else fails the row at once, with the error on its page.
TRANSIENT_ERRORS = (OperationalError, InterfaceError)
MAX_RETRIES = 3


class JobBusy(RuntimeError):
    """Another worker holds the row and is alive (its heartbeat is fresh)."""


class JobBody(Protocol):
    # Positional-only: each body names its id after its row (run_id, scan_id, ...).
    def __call__(self, job_id: int, /, *, retried: bool) -> object: ...


def exponential_backoff(retries: int) -> float:
    """2, 4, 8 s: work whose row the claim takes back at once."""
    return float(2 ** (retries + 1))


def linear_backoff(step_s: float) -> Callable[[int], float]:
    """step, 2 step, 3 step: work whose row waits for a stale heartbeat before a takeover."""
    return lambda retries: step_s * (retries + 1)


def job_task(
    *,
    name: str,
    fail: Callable[[int, str], object],
    what: str,
    backoff_s: Callable[[int], float] = exponential_backoff,
    max_retries: int = MAX_RETRIES,
    busy_countdown_s: Callable[[], float] | None = None,
    database_gone: Callable[[int, Exception], object] | None = None,
) -> Callable[[JobBody], Task]:
    """A thin, idempotent Celery task over `body(job_id, retried=...)`, which claims its row.

    - Sent with acks_late and rejected if its worker is lost, so a message is redelivered
      until some worker finishes it; the row's claim makes a second delivery do nothing.
    - A transient database error is retried `max_retries` times after `backoff_s(retries)`
      seconds; then `database_gone(job_id, exc)` runs (by default the row fails with
      "Database unavailable: ..."). `max_retries=0`: such errors fail the row like any other.
    - `JobBusy` (a live worker holds the row) is looked at again after `busy_countdown_s()`,
      when that worker's heartbeat could have gone stale.
    - Any other error fails the row with `fail(job_id, "Type: message")` and is logged.
    `retried` tells the body that this delivery is a retry of one that held the row.
    Queues come from CELERY_TASK_ROUTES, never from here.
    """
    transient: tuple[type[Exception], ...] = TRANSIENT_ERRORS if max_retries else ()

    def gone(job_id: int, exc: Exception) -> None:
        if database_gone is not None:
            database_gone(job_id, exc)
        else:
            fail(job_id, f"Database unavailable: {exc}")

    def decorate(body: JobBody) -> Task:
        def task(self: Task, job_id: int) -> None:
            retries = self.request.retries
            try:
                body(job_id, retried=retries > 0)
            except JobBusy as exc:
                if busy_countdown_s is None:
                    raise
                # A duplicate message while a live worker runs it: look again once its
                # heartbeat could have gone stale, in case that worker dies meanwhile.
                raise self.retry(exc=exc, countdown=busy_countdown_s(),
                                 max_retries=retries + 1) from exc
            except transient as exc:
                if retries >= max_retries:
                    logger.error("%s %s: database unavailable after %d retries: %s",
                                 what, job_id, max_retries, exc)
                    gone(job_id, exc)
                    return
                countdown = backoff_s(retries)
                logger.warning("%s %s: database unavailable, retry %d of %d in %g s: %s",
                               what, job_id, retries + 1, max_retries, countdown, exc)
                raise self.retry(exc=exc, countdown=countdown) from exc
            except Exception as exc:  # noqa: BLE001 - shown on the row's page
                logger.exception("%s %s failed", what, job_id)
                fail(job_id, f"{type(exc).__name__}: {exc}")

        # The task reads as the body (not functools.wraps: Celery checks calls against the
        # signature, which is the task's (job_id), not the body's).
        for attribute in ("__module__", "__name__", "__qualname__", "__doc__"):
            setattr(task, attribute, getattr(body, attribute))
        return shared_task(name=name, bind=True, acks_late=True, reject_on_worker_lost=True,
                           max_retries=max_retries, ignore_result=True)(task)

    return decorate
