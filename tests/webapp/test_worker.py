"""A real match through a real Celery worker process over Redis, and a worker killed mid-task."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from django.db import transaction

from tests.webapp.conftest import demo_photo_upload
from tests.webapp.workers import Worker, redis_url_or_skip
from webapp.config.celery import app as celery_app
from webapp.matching.models import MatchRequest
from webapp.matching.requests import match_request_create
from webapp.matching.tasks import run_match

pytestmark = [pytest.mark.worker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def broker(monkeypatch) -> Iterator[str]:
    """Publish match tasks to Redis (not eagerly) exactly as the web process does."""
    url = redis_url_or_skip()
    celery_app.conf.task_always_eager = False
    connection = celery_app.connection_for_write(url)

    def enqueue(request_id: int) -> None:
        transaction.on_commit(
            lambda: run_match.apply_async((request_id,), connection=connection, queue="gpu")
        )

    monkeypatch.setattr("webapp.matching.requests._enqueue", enqueue)
    yield url
    connection.release()
    celery_app.conf.task_always_eager = True


@pytest.fixture
def workers(tmp_path) -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.stop()


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str, logs: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{logs[-3000:]}")


def _status(request_id: int) -> MatchRequest:
    return MatchRequest.objects.get(pk=request_id)


def test_match_runs_on_a_real_worker(broker, workers, catalogue, appraiser, tmp_path) -> None:
    worker = Worker("w1", broker, tmp_path).start()
    workers.append(worker)
    request = match_request_create(user=appraiser, uploads=[demo_photo_upload("DEMO-KIR-SUM-01")])
    _wait_for(lambda: _status(request.pk).status == "done", 60, "the match", worker.log())
    done = _status(request.pk)
    assert done.attempts == 1
    assert done.candidates.count() > 0
    assert done.index_version == catalogue.name
    assert "matching.run_match" in worker.log()


def test_worker_killed_mid_match_loses_nothing(
    broker, workers, catalogue, appraiser, tmp_path
) -> None:
    slow = Worker("doomed", broker, tmp_path, SKULENS_MATCH_TEST_DELAY_S="30").start()
    workers.append(slow)
    request = match_request_create(user=appraiser, uploads=[demo_photo_upload("DEMO-KIR-SUM-01")])
    _wait_for(lambda: _status(request.pk).status == "running", 60, "the claim", slow.log())
    slow.kill()
    assert _status(request.pk).candidates.count() == 0

    rescuer = Worker("rescuer", broker, tmp_path).start()
    workers.append(rescuer)
    # The broker hands the unacknowledged task to the new worker after the visibility timeout.
    _wait_for(lambda: _status(request.pk).status == "done", 90, "redelivery", rescuer.log())
    done = _status(request.pk)
    assert done.attempts == 2
    ranks = list(done.candidates.values_list("rank", flat=True))
    assert ranks == list(range(1, len(ranks) + 1)) and ranks
    time.sleep(3)  # a further redelivery, if any, must not run the match again
    assert _status(request.pk).attempts == 2
