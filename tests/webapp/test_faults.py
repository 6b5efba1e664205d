"""Fault tests with real processes. Each shows that nothing is lost, nothing is done twice, and
the error is clear: the broker down at enqueue, the database down under the worker, SIGKILL
under the filesystem broker, SIGTERM mid-batch, a full disk, broken index files, a crash in the
middle of an index publish, and a 40-megapixel photo under a memory bound."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.db import connection
from django.urls import reverse
from PIL import Image

from tests.webapp.conftest import demo_photo_upload, jpeg_bytes, logged_in, upload
from tests.webapp.faults import TcpCut, fill_disk, small_disk, vm_size_kib
from tests.webapp.workers import ROOT, TEST_MATCH_STALE_S, Worker, redis_url_or_skip
from tests.webapp.workers import test_database_url as worker_database_url
from webapp import ml_gateway
from webapp.config.celery import app as celery_app
from webapp.learning.models import IndexVersion
from webapp.learning.services import index_publish
from webapp.matching.models import MatchRequest, QueryPhoto
from webapp.matching.requests import match_request_create, match_request_retry
from webapp.sweeper import stuck_work_sweep

pytestmark = [pytest.mark.worker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SKU = "DEMO-KIR-SUM-01"


@pytest.fixture
def publish_to(settings) -> Iterator[Callable[[str], None]]:
    """Send tasks to a real broker from this process, exactly as the web process does, from
    the call on (fixtures such as `catalogue` still run their tasks in place)."""
    original = celery_app.conf.broker_url

    def use(url: str) -> None:
        celery_app.conf.task_always_eager = False
        celery_app.conf.broker_url = url
        # Reconnect with the new URL: drop the cached connection and producer pools.
        celery_app._after_fork()

    yield use
    use(original)
    celery_app.conf.task_always_eager = True


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.stop()


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, logs: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}\n{logs[-4000:]}")


def row(pk: int) -> MatchRequest:
    return MatchRequest.objects.get(pk=pk)


def _files_of(request: MatchRequest) -> list[Path]:
    from django.conf import settings

    names = []
    for photo in request.photos.all():
        names += [photo.original.name, photo.image.name] + ([photo.mask.name] if photo.mask
                                                             else [])
    return [Path(settings.MEDIA_ROOT) / name for name in names]


def _assert_done_once(pk: int, attempts: int = 1) -> MatchRequest:
    done = row(pk)
    assert done.status == MatchRequest.Status.DONE, (done.status, done.error)
    assert done.attempts == attempts
    ranks = list(done.candidates.values_list("rank", flat=True))
    assert ranks and ranks == list(range(1, len(ranks) + 1))
    return done


# ----- the broker down at enqueue, then back ---------------------------------------------


def test_upload_is_accepted_while_the_broker_is_down_and_runs_once_it_is_back(
    publish_to, workers, catalogue, appraiser, tmp_path, settings
) -> None:
    redis_url = redis_url_or_skip()
    publish_to("redis://127.0.0.1:1/0")  # nothing listens on port 1
    response = logged_in(appraiser).post(reverse("api:match-create"),
                                         {"photos": [demo_photo_upload(SKU)]})
    # The API answers 202 from session auth too; the row and the photos are committed.
    assert response.status_code == 202, response.content
    pk = response.json()["id"]
    queued = row(pk)
    assert queued.status == MatchRequest.Status.QUEUED
    assert all(path.is_file() for path in _files_of(queued))

    publish_to(redis_url)
    worker = Worker("after-outage", redis_url, tmp_path).start()
    workers.append(worker)
    time.sleep(1)
    assert row(pk).status == MatchRequest.Status.QUEUED  # the message really was lost
    settings.REQUEUE_AFTER_S = 0
    report = stuck_work_sweep()
    assert report.resent.get("match") == [pk]
    wait_for(lambda: row(pk).status == MatchRequest.Status.DONE, 90, "the match", worker.log())
    _assert_done_once(pk)
    # A second sweep finds nothing to do.
    assert "match" not in stuck_work_sweep().resent


# ----- the database down under the worker ---------------------------------------------------


def test_database_outage_retries_with_backoff_then_fails_clearly(
    publish_to, workers, catalogue, appraiser, tmp_path
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (the worker reaches it through a TCP forwarder)")
    redis_url = redis_url_or_skip()
    publish_to(redis_url)
    db = connection.settings_dict
    cut = TcpCut(db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432))
    try:
        url = worker_database_url().replace(f":{db['PORT'] or 5432}/", f":{cut.port}/")
        # A long visibility timeout: Redis must not hand the retries' ETA messages out again.
        worker = Worker("db-outage", redis_url, tmp_path, DATABASE_URL=url,
                        CELERY_VISIBILITY_TIMEOUT_S="3600").start()
        workers.append(worker)
        cut.cut()
        request = match_request_create(user=appraiser, uploads=[demo_photo_upload(SKU)])
        wait_for(lambda: "database unavailable after 3 retries" in worker.log(), 60,
                 "the retries to run out", worker.log())
        log = worker.log()
        for step in ("retry 1 of 3 in 2 s", "retry 2 of 3 in 4 s", "retry 3 of 3 in 8 s"):
            assert step in log, step
        assert row(request.pk).status == MatchRequest.Status.QUEUED  # nothing written blind
        cut.restore()
        wait_for(lambda: row(request.pk).status == MatchRequest.Status.FAILED, 60,
                 "the failure to be recorded", worker.log())
        failed = row(request.pk)
        assert failed.error.startswith("Database unavailable after 3 retries")
        assert failed.candidates.count() == 0 and failed.attempts == 0
        # With the database back, a retry runs it once.
        match_request_retry(request=failed)
        wait_for(lambda: row(request.pk).status == MatchRequest.Status.DONE, 60,
                 "the retried match", worker.log())
        _assert_done_once(request.pk)
    finally:
        cut.close()


# ----- SIGKILL under the filesystem broker --------------------------------------------------


def test_worker_killed_under_the_filesystem_broker_loses_nothing(
    publish_to, workers, catalogue, appraiser, tmp_path
) -> None:
    publish_to("filesystem://")
    doomed = Worker("fs-doomed", "filesystem://", tmp_path,
                    SKULENS_MATCH_TEST_DELAY_S="60").start()
    workers.append(doomed)
    request = match_request_create(user=appraiser, uploads=[demo_photo_upload(SKU)])
    wait_for(lambda: row(request.pk).status == MatchRequest.Status.RUNNING, 60, "the claim",
             doomed.log())
    doomed.kill()
    # kombu's filesystem transport deleted the message when the worker received it.
    rescuer = Worker(
        "fs-rescuer", "filesystem://", tmp_path, queues="gpu,default",
        extra_args=("-B", "-s", str(tmp_path / "beat-schedule")),
        SKULENS_SWEEP_INTERVAL_S="2", SKULENS_REQUEUE_AFTER_S="2",
    ).start()
    workers.append(rescuer)
    wait_for(lambda: row(request.pk).status == MatchRequest.Status.DONE, 120,
             "the sweeper to requeue it", rescuer.log())
    assert "lost their worker: re-queued" in rescuer.log()
    _assert_done_once(request.pk, attempts=2)
    time.sleep(TEST_MATCH_STALE_S + 4)  # more sweeps: it is not run again
    assert row(request.pk).attempts == 2


# ----- SIGTERM mid-batch --------------------------------------------------------------------


def test_sigterm_mid_batch_finishes_the_batch_and_exits(
    publish_to, workers, catalogue, appraiser, tmp_path
) -> None:
    redis_url = redis_url_or_skip()
    publish_to(redis_url)
    pks = [match_request_create(user=appraiser, uploads=[demo_photo_upload(SKU, seed=s)]).pk
           for s in (1, 2, 3)]
    worker = Worker("warm", redis_url, tmp_path, SKULENS_MATCH_TEST_DELAY_S="6").start()
    workers.append(worker)
    wait_for(lambda: all(row(pk).status == MatchRequest.Status.RUNNING for pk in pks), 60,
             "the batch to be claimed", worker.log())
    worker.terminate()
    assert worker.process is not None
    assert worker.process.wait(timeout=90) == 0, worker.log()
    assert "warm shutdown" in worker.log().lower()
    for pk in pks:
        done = _assert_done_once(pk)
        assert done.batch_size == 3
    # The mates' own messages are still queued; their tasks find them done.
    second = Worker("after-warm", redis_url, tmp_path).start()
    workers.append(second)
    wait_for(lambda: second.log().count("succeeded") >= 2, 60, "the leftover messages",
             second.log())
    assert [row(pk).attempts for pk in pks] == [1, 1, 1]


# ----- a full disk in the worker ------------------------------------------------------------


def test_full_disk_in_the_worker_fails_clearly_and_leaves_nothing_half_written(
    publish_to, workers, catalogue, appraiser, tmp_path, settings
) -> None:
    redis_url = redis_url_or_skip()
    publish_to(redis_url)
    with small_disk(tmp_path / "small-media") as media:
        # Reference images stay where the catalogue put them; new photos go to the small disk.
        original_media = settings.MEDIA_ROOT
        for item in Path(original_media).iterdir():
            os.symlink(item, media / item.name)
        settings.MEDIA_ROOT = media
        request = match_request_create(user=appraiser, uploads=[demo_photo_upload(SKU)])
        photo = request.photos.get()
        # The appraiser's box: the worker segments inside it and must write a mask.
        QueryPhoto.objects.filter(pk=photo.pk).update(
            box=[20, 20, photo.width - 20, photo.height - 20],
            box_source=QueryPhoto.BoxSource.CORRECTED)
        filler = fill_disk(media)
        before = {p for p in media.rglob("*") if p.is_file()}
        worker = Worker("full-disk", redis_url, tmp_path, MEDIA_ROOT=str(media),
                        SKULENS_SEGMENTATION="grabcut").start()
        workers.append(worker)
        wait_for(lambda: row(request.pk).is_finished, 90, "the match", worker.log())
        failed = row(request.pk)
        assert failed.status == MatchRequest.Status.FAILED
        assert "storage is full" in failed.error and "nothing was lost" in failed.error
        assert failed.candidates.count() == 0
        assert not failed.photos.get().mask
        assert {p for p in media.rglob("*") if p.is_file()} == before  # no half-written mask
        filler.unlink()
        match_request_retry(request=failed)
        wait_for(lambda: row(request.pk).is_finished, 90, "the retried match", worker.log())
        done = _assert_done_once(request.pk, attempts=2)
        assert done.photos.get().mask and all(p.is_file() for p in _files_of(done))
        settings.MEDIA_ROOT = original_media


# ----- broken index files at load -----------------------------------------------------------


def _second_version(catalogue: IndexVersion) -> IndexVersion:
    from webapp.catalog.models import SKU as SkuModel

    sku = SkuModel.objects.exclude(code=SKU).first()
    SkuModel.objects.filter(pk=sku.pk).update(is_active=False)
    version = index_publish()
    assert version.parent_id == catalogue.pk
    return version


def test_corrupt_index_falls_back_to_the_previous_version_then_a_clear_error(
    publish_to, workers, catalogue, appraiser, tmp_path
) -> None:
    redis_url = redis_url_or_skip()
    publish_to(redis_url)
    newer = _second_version(catalogue)
    index_file = ml_gateway.index_path(newer.name) / "index.faiss"
    index_file.write_bytes(index_file.read_bytes()[:100])  # torn write
    worker = Worker("bad-index", redis_url, tmp_path).start()
    workers.append(worker)
    request = match_request_create(user=appraiser, uploads=[demo_photo_upload(SKU)])
    wait_for(lambda: row(request.pk).is_finished, 90, "the match", worker.log())
    served = _assert_done_once(request.pk)
    assert served.index_version == catalogue.name
    assert f"Index files for {newer.name} are missing or corrupt" in worker.log()
    assert f"serving the previous version {catalogue.name}" in worker.log()

    # Nothing loads at all: the match fails with an error that says what to do. (The first
    # worker still holds the fallback in memory, so it stops: only a fresh worker loads.)
    worker.stop()
    for version in (catalogue, newer):
        (ml_gateway.index_path(version.name) / "index.faiss").unlink()
    missing = Worker("no-index", redis_url, tmp_path).start()
    workers.append(missing)
    request = match_request_create(user=appraiser, uploads=[demo_photo_upload(SKU)])
    wait_for(lambda: row(request.pk).is_finished, 90, "the match", missing.log())
    failed = row(request.pk)
    assert failed.status == MatchRequest.Status.FAILED
    assert "IndexUnavailable" in failed.error and "build_index --full" in failed.error
    # The next publish rebuilds from the database instead of failing on the broken files.
    ml_gateway.active_index.forget()
    rebuilt = index_publish()
    assert rebuilt.pk != newer.pk and rebuilt.vector_count == newer.vector_count
    assert ml_gateway.active_index.get()[0] == rebuilt.name


# ----- a crash in the middle of an index publish --------------------------------------------

CRASH_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import django
    django.setup()
    from ml.index import VectorIndex
    from webapp.learning.models import IndexVersion
    from webapp.learning.services import index_publish
    where = sys.argv[1]
    if where == "writing":
        real = VectorIndex._write_files
        def torn(self, directory, meta):
            (directory / "index.faiss").write_bytes(b"half an index")
            os.kill(os.getpid(), signal.SIGKILL)
        VectorIndex._write_files = torn
    else:
        def crash(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)
        IndexVersion.objects.create = crash
    index_publish(full_rebuild=True)
""")


@pytest.mark.parametrize("where", ["writing", "before-activation"])
def test_crash_mid_publish_leaves_the_live_index_serving(
    where, catalogue, appraiser, settings, tmp_path
) -> None:
    from django.conf import settings as django_settings

    env = {**os.environ, "DATABASE_URL": worker_database_url(),
           "MEDIA_ROOT": str(django_settings.MEDIA_ROOT),
           "SKULENS_INDEX_DIR": str(django_settings.INDEX_DIR)}
    before = sorted(p.name for p in Path(settings.INDEX_DIR).iterdir())
    crashed = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, where], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=300)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-3000:]
    # The active row is unchanged and its files load; matching goes on.
    assert IndexVersion.objects.get(is_active=True).pk == catalogue.pk
    assert IndexVersion.objects.count() == 1
    ml_gateway.active_index.forget()
    assert ml_gateway.active_index.get()[0] == catalogue.name
    request = match_request_create(user=appraiser, uploads=[demo_photo_upload(SKU)])
    _assert_done_once(request.pk)
    leftovers = sorted(p.name for p in Path(settings.INDEX_DIR).iterdir()) 
    assert set(before) <= set(leftovers)
    # The next publish succeeds; whatever the crash left is never loaded.
    version = index_publish(full_rebuild=True)
    assert version.is_active and version.vector_count == catalogue.vector_count
    ml_gateway.active_index.forget()
    assert ml_gateway.active_index.get()[0] == version.name


# ----- a 40-megapixel photo under a memory bound --------------------------------------------


def test_forty_megapixel_photo_with_the_worker_memory_bounded(
    publish_to, workers, catalogue, appraiser, tmp_path
) -> None:
    redis_url = redis_url_or_skip()
    publish_to(redis_url)
    worker = Worker("bounded", redis_url, tmp_path).start()
    workers.append(worker)
    headroom_kib = 1536 * 1024  # 1.5 GiB above what the warmed-up worker has mapped
    limit = (vm_size_kib(worker.pid) + headroom_kib) * 1024
    subprocess.run(["prlimit", f"--pid={worker.pid}", f"--as={limit}:{limit}"], check=True)
    demo = Image.open(demo_photo_upload(SKU)).convert("RGB")
    big = demo.resize((8000, 5000))  # 40,000,000 pixels: the upload limit
    request = match_request_create(user=appraiser, uploads=[
        upload("big.jpg", jpeg_bytes(big, quality=85))])
    photo = request.photos.get()
    assert (photo.width, photo.height) == (4096, 2560)  # the working copy, not 40 MP
    with Image.open(photo.original.path) as original:
        assert original.size == (8000, 5000)  # the original is kept as it came
    wait_for(lambda: row(request.pk).is_finished, 180, "the match", worker.log())
    _assert_done_once(request.pk)
    assert worker.process is not None and worker.process.poll() is None  # still alive
    assert "MemoryError" not in worker.log()
