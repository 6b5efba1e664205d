"""Never half-saved, never stuck: tasks are sent after commit, and what a lost message left
behind is found again.

`enqueue_on_commit` (webapp.enqueue) sends a task once the transaction commits and, if the
broker is down, logs it and carries on: the row is committed (the upload answers 202) and stays
QUEUED.
`stuck_work_sweep` runs from Celery beat (`sweep-stuck-work`, every SKULENS_SWEEP_INTERVAL_S)
and re-sends the task of every row that waits for one:
- match requests QUEUED whose last message is older than SKULENS_REQUEUE_AFTER_S, and RUNNING
  ones whose worker stopped beating (SIGKILL, a lost machine, or the filesystem broker, which
  deletes a message when a worker receives it, so a killed worker's task is never redelivered);
- training runs, promotions, duplicate scans and history imports (their dry run, import and
  isolation) left QUEUED, or RUNNING past their staleness;
- the search index, when the catalogue has changed and no sync is under way.
Every task guards on its row's status, so a message sent twice still does the work once.
Tasks are named, not imported: the apps' tasks import the services that import this module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Q
from django.utils import timezone

from webapp.enqueue import enqueue_now, enqueue_on_commit, registered_task

__all__ = ["SweepReport", "enqueue_now", "enqueue_on_commit", "stuck_work_sweep"]

logger = logging.getLogger(__name__)


@dataclass
class SweepReport:
    resent: dict[str, list[int]] = field(default_factory=dict)

    def add(self, kind: str, pk: int) -> None:
        self.resent.setdefault(kind, []).append(pk)

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.resent.values())


def _ago(seconds: float) -> Any:
    return timezone.now() - timedelta(seconds=seconds)


def _resend(report: SweepReport, kind: str, pks: list[int], send: Callable[[int], bool]) -> None:
    for pk in pks:
        if send(pk):
            report.add(kind, pk)


def _sweep_matches(report: SweepReport) -> None:
    from webapp.matching.models import MatchRequest

    waiting = Q(status=MatchRequest.Status.QUEUED) & (
        Q(enqueued_at__lt=_ago(settings.REQUEUE_AFTER_S))
        | Q(enqueued_at__isnull=True, created_at__lt=_ago(settings.REQUEUE_AFTER_S))
    )
    orphaned = Q(status=MatchRequest.Status.RUNNING) & (
        Q(heartbeat_at__lt=_ago(settings.MATCH_STALE_S))
        | Q(heartbeat_at__isnull=True, started_at__lt=_ago(settings.MATCH_STALE_S))
    )
    limit = settings.SWEEP_BATCH
    run_match = registered_task("matching.run_match")
    for kind, condition in (("match", waiting), ("match_orphaned", orphaned)):
        pks = list(MatchRequest.objects.filter(condition).order_by("created_at")
                   .values_list("pk", flat=True)[:limit])
        if not pks:
            continue
        if kind == "match_orphaned":
            logger.warning("match requests %s lost their worker: re-queued", pks)
            # Back to QUEUED (still stale: a worker that came back meanwhile keeps its row).
            MatchRequest.objects.filter(condition, pk__in=pks).update(
                status=MatchRequest.Status.QUEUED, stage="requeued", progress=0)
        MatchRequest.objects.filter(pk__in=pks).update(enqueued_at=timezone.now())
        _resend(report, kind, pks, lambda pk: enqueue_now(run_match, pk))


def _sweep_training_runs(report: SweepReport) -> None:
    from webapp.learning.models import TrainingRun
    from webapp.learning.training import STALE_AFTER

    stuck = TrainingRun.objects.filter(
        Q(status=TrainingRun.Status.QUEUED, created_at__lt=_ago(settings.REQUEUE_AFTER_S))
        | Q(status=TrainingRun.Status.RUNNING, heartbeat_at__lt=timezone.now() - STALE_AFTER)
    ).filter(cancel_requested=False)
    _resend(report, "training_run", list(stuck.values_list("pk", flat=True)),
            lambda pk: enqueue_now(registered_task("learning.train_model"), pk))


def _sweep_promotions(report: SweepReport) -> None:
    from webapp.learning.models import Promotion

    stuck = Promotion.objects.filter(
        Q(status=Promotion.Status.QUEUED, created_at__lt=_ago(settings.REQUEUE_AFTER_S))
        | Q(status=Promotion.Status.RUNNING, started_at__lt=_ago(settings.LONG_TASK_STALE_S))
    )
    _resend(report, "promotion", list(stuck.values_list("pk", flat=True)),
            lambda pk: enqueue_now(registered_task("learning.promote_model"), pk))


def _sweep_duplicate_scans(report: SweepReport) -> None:
    from webapp.catalog.models import DuplicateScan

    stuck = DuplicateScan.objects.filter(
        Q(status=DuplicateScan.Status.QUEUED, created_at__lt=_ago(settings.REQUEUE_AFTER_S))
        | Q(status=DuplicateScan.Status.RUNNING, created_at__lt=_ago(settings.LONG_TASK_STALE_S))
    )
    _resend(report, "duplicate_scan", list(stuck.values_list("pk", flat=True)),
            lambda pk: enqueue_now(registered_task("catalog.scan_duplicates"), pk))


def _sweep_history_imports(report: SweepReport) -> None:
    from webapp.history.models import HistoryImport
    from webapp.history.services import STALE_AFTER

    status, isolation = HistoryImport.Status, HistoryImport.Isolation
    queued = _ago(settings.REQUEUE_AFTER_S)
    stale = timezone.now() - STALE_AFTER
    waiting = HistoryImport.objects.filter(
        Q(status__in=(status.QUEUED, status.APPLY_QUEUED), created_at__lt=queued)
        | Q(status__in=(status.PLANNING, status.APPLYING), heartbeat_at__lt=stale)
    )
    _resend(report, "history_import", list(waiting.values_list("pk", flat=True)),
            lambda pk: enqueue_now(registered_task("history.run_import"), pk))
    isolating = HistoryImport.objects.filter(
        Q(isolation=isolation.QUEUED, created_at__lt=queued)
        | Q(isolation=isolation.RUNNING, isolation_heartbeat_at__lt=stale)
    )
    _resend(report, "history_isolation", list(isolating.values_list("pk", flat=True)),
            lambda pk: enqueue_now(registered_task("history.isolate_photos"), pk))


INDEX_SYNC_SENT = "skulens:index-sync-sent"


def _sweep_index(report: SweepReport) -> None:
    """A catalogue change whose sync message was lost: send one sync (at most one per
    REQUEUE_AFTER_S, so a sync that is still running is not sent again and again)."""
    from webapp.learning.index_status import index_status

    status = index_status()
    if status.expected == 0 or status.in_sync:
        return
    if cache.add(INDEX_SYNC_SENT, 1, timeout=settings.REQUEUE_AFTER_S) and enqueue_now(
        registered_task("learning.sync_index")
    ):
        report.add("index_sync", 0)


def stuck_work_sweep() -> SweepReport:
    report = SweepReport()
    for sweep in (_sweep_matches, _sweep_training_runs, _sweep_promotions,
                  _sweep_duplicate_scans, _sweep_history_imports, _sweep_index):
        try:
            sweep(report)
        except Exception:  # noqa: BLE001 - one kind failing must not stop the others
            logger.exception("sweep %s failed", sweep.__name__)
    if report.total:
        logger.info("sweeper re-sent %s", report.resent)
    return report
