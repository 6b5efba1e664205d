"""The job-row base (webapp.jobs.JobRow), the task decorator's retry policy, and the routes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import OperationalError
from django.db.models import Q
from django.utils import timezone

from webapp.catalog.models import DuplicateScan
from webapp.config.celery import app as celery_app
from webapp.jobs import JobBusy, JobRow, exponential_backoff, job_task, linear_backoff
from webapp.learning.models import TrainingRun
from webapp.matching.runner import MatchBusy

QUEUES = {
    "matching.run_match": "gpu",
    "matching.record_failure": "gpu",
    "matching.sweep_stuck_work": "default",
    "matching.recalibrate_thresholds": "default",
    "learning.sync_index": "gpu",
    "learning.train_model": "gpu",
    "learning.promote_model": "gpu",
    "learning.prune_artifacts": "gpu",
    "learning.check_retraining": "gpu",
    "catalog.scan_duplicates": "gpu",
    "catalog.prune_import_bundles": "default",
    "history.run_import": "default",
    "history.isolate_photos": "gpu",
}


def test_every_task_is_routed_by_the_settings_alone() -> None:
    celery_app.loader.import_default_modules()
    ours = {name for name in celery_app.tasks if not name.startswith(("celery.", "tests."))}
    assert ours == set(QUEUES)
    for name, queue in QUEUES.items():
        assert celery_app.amqp.router.route({}, name)["queue"].name == queue, name
        # No task names its own queue: CELERY_TASK_ROUTES is the one place.
        assert getattr(celery_app.tasks[name], "queue", None) is None, name


def test_the_six_jobs_share_one_row_base() -> None:
    from webapp.catalog.models import CatalogueImport
    from webapp.history.models import HistoryImport
    from webapp.learning.models import IndexVersion, Promotion
    from webapp.matching.models import MatchRequest

    for model in (MatchRequest, TrainingRun, Promotion, DuplicateScan, CatalogueImport,
                  IndexVersion, HistoryImport):
        assert issubclass(model, JobRow)
        names = {f.name for f in model._meta.get_fields()}
        assert {"status", "created_at", "started_at", "finished_at", "heartbeat_at",
                "error"} <= names, model
    assert issubclass(MatchBusy, JobBusy)


@pytest.mark.django_db
def test_claim_is_a_compare_and_swap_that_one_delivery_wins() -> None:
    scan = DuplicateScan.objects.create(threshold=0.9)
    assert DuplicateScan.claim(scan.pk, takeover=False)
    scan.refresh_from_db()
    assert scan.status == "running" and scan.started_at and scan.heartbeat_at
    # Running: a second delivery wins only where takeover allows it.
    assert not DuplicateScan.claim(scan.pk, takeover=False)
    assert not DuplicateScan.claim(scan.pk, takeover=timedelta(minutes=1))
    assert DuplicateScan.claim(scan.pk, takeover=True)
    DuplicateScan.objects.filter(pk=scan.pk).update(status="done")
    assert not DuplicateScan.claim(scan.pk, takeover=True)


@pytest.mark.django_db
def test_a_running_row_is_taken_over_only_once_its_heartbeat_is_stale() -> None:
    run = TrainingRun.objects.create()
    assert TrainingRun.claim(run.pk, takeover=timedelta(minutes=10), stage="exporting data")
    assert TrainingRun.objects.get(pk=run.pk).stage == "exporting data"
    assert not TrainingRun.claim(run.pk, takeover=timedelta(minutes=10))
    old = timezone.now() - timedelta(minutes=11)
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=old)
    # `also` narrows it: a run someone asked to cancel is not taken over.
    TrainingRun.objects.filter(pk=run.pk).update(cancel_requested=True)
    assert not TrainingRun.claim(run.pk, takeover=timedelta(minutes=10),
                                 also=Q(cancel_requested=False))
    TrainingRun.objects.filter(pk=run.pk).update(cancel_requested=False)
    assert TrainingRun.claim(run.pk, takeover=timedelta(minutes=10),
                             also=Q(cancel_requested=False))
    assert TrainingRun.objects.get(pk=run.pk).heartbeat_at > old
    # No heartbeat at all: the start counts.
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=None, started_at=old)
    assert TrainingRun.claim(run.pk, takeover=timedelta(minutes=10))


@pytest.mark.django_db
def test_fail_cuts_the_error_and_never_touches_a_finished_row() -> None:
    scan = DuplicateScan.objects.create(threshold=0.9)
    assert DuplicateScan.fail(scan.pk, error="x" * 5000)
    scan.refresh_from_db()
    assert scan.status == "failed" and len(scan.error) == 2000 and scan.finished_at
    run = TrainingRun.objects.create()
    assert TrainingRun.fail(run.pk, error="y" * 5000)
    assert len(TrainingRun.objects.get(pk=run.pk).error) == 4000
    # Training keeps every finished status, including an earlier failure's message.
    assert not TrainingRun.fail(run.pk, error="later")
    done = DuplicateScan.objects.create(threshold=0.9, status="done")
    assert not DuplicateScan.fail(done.pk, error="late")
    assert DuplicateScan.objects.get(pk=done.pk).status == "done"


def test_backoffs() -> None:
    assert [exponential_backoff(r) for r in range(3)] == [2, 4, 8]
    assert [linear_backoff(30)(r) for r in range(3)] == [30, 60, 90]


@pytest.fixture
def follow_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """apply() follows each retry at once, as a worker would later (errors must not propagate,
    or the first retry would end the test)."""
    monkeypatch.setitem(celery_app.conf, "task_eager_propagates", False)


def _probe(name: str, *, raises: list[BaseException], **options):
    """A task over a body that raises the given errors in turn, recording what it sees."""
    seen: dict[str, list] = {"retried": [], "failed": []}

    def body(job_id: int, *, retried: bool) -> None:
        seen["retried"].append(retried)
        if raises:
            raise raises.pop(0)

    task = job_task(name=name, fail=lambda job_id, error: seen["failed"].append((job_id, error)),
                    what="probe", backoff_s=lambda retries: 0, **options)(body)
    return task, seen


def test_a_transient_error_is_retried_then_the_row_is_failed(follow_retries: None) -> None:
    task, seen = _probe("tests.jobs.transient", raises=[OperationalError("gone")] * 4)
    task.apply(args=(7,))
    assert seen["retried"] == [False, True, True, True]
    assert seen["failed"] == [(7, "Database unavailable: gone")]


def test_a_transient_error_that_clears_is_retried_and_succeeds(follow_retries: None) -> None:
    task, seen = _probe("tests.jobs.clears", raises=[OperationalError("blip")])
    task.apply(args=(7,))
    assert seen["retried"] == [False, True] and seen["failed"] == []


def test_other_errors_fail_the_row_at_once_and_no_retries_means_none(follow_retries: None) -> None:
    task, seen = _probe("tests.jobs.bug", raises=[ValueError("bad photo")])
    task.apply(args=(3,))
    assert seen["retried"] == [False] and seen["failed"] == [(3, "ValueError: bad photo")]
    task, seen = _probe("tests.jobs.no_retry", raises=[OperationalError("gone")], max_retries=0)
    task.apply(args=(3,))
    assert seen["retried"] == [False] and seen["failed"] == [(3, "OperationalError: gone")]


def test_database_gone_replaces_the_default_failure(follow_retries: None) -> None:
    gone: list[tuple[int, str]] = []
    task, seen = _probe("tests.jobs.gone", raises=[OperationalError("down")] * 4,
                        database_gone=lambda job_id, exc: gone.append((job_id, str(exc))))
    task.apply(args=(5,))
    assert gone == [(5, "down")] and seen["failed"] == []


def test_a_busy_row_is_looked_at_again_once_its_heartbeat_may_be_stale(
    follow_retries: None,
) -> None:
    task, seen = _probe("tests.jobs.busy", raises=[JobBusy("held")], busy_countdown_s=lambda: 0)
    task.apply(args=(9,))
    assert seen["retried"] == [False, True] and seen["failed"] == []
