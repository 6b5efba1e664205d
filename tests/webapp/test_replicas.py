"""Index replicas without a shared disk: two real workers, each with its own index directory,
fill their caches from the artefact store, and both switch when a promotion changes the active
IndexVersion (and fetch the promoted model's checkpoint, which their machine never had)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings

from tests.webapp.conftest import demo_photo_upload
from tests.webapp.loop_models import (  # noqa: F401 - fixtures
    checkpoints,
    fast_isolation,
    loop_dirs,
    small_catalogue,
)
from tests.webapp.workers import Worker, redis_url_or_skip
from webapp.config.celery import app as celery_app
from webapp.learning import artifacts
from webapp.learning.models import IndexVersion, ModelVersion
from webapp.learning.promotion import promotion_execute, promotion_request
from webapp.learning.registry import checkpoint_store, model_version_register
from webapp.learning.selectors import live_model_ref
from webapp.matching.models import MatchRequest
from webapp.matching.requests import match_request_create
from webapp.matching.tasks import run_match

pytestmark = [pytest.mark.worker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str, logs: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}\n{logs[-4000:]}")


@pytest.fixture
def replica_workers(tmp_path: Path, monkeypatch) -> Iterator[tuple[str, list[Worker]]]:
    url = redis_url_or_skip()
    celery_app.conf.task_always_eager = False
    monkeypatch.setattr("webapp.matching.requests._enqueue", lambda request_id: None)
    monkeypatch.setattr("webapp.learning.promotion._enqueue", lambda promotion_id: None)
    started: list[Worker] = []
    yield url, started
    for worker in started:
        worker.stop()
    celery_app.conf.task_always_eager = True


def _start(name: str, url: str, tmp_path: Path) -> Worker:
    return Worker(
        name, url, tmp_path, queues=f"replica-{name}",
        SKULENS_INDEX_DIR=str(tmp_path / f"index-{name}"),  # its own cache, nothing shared
        SKULENS_MODELS_DIR=str(settings.MODELS_DIR),
        SKULENS_DETECTOR_WEIGHTS="", SKULENS_SEGMENTATION="none",  # as fast_isolation
        SKULENS_MATCH_BATCH="1",  # each worker runs exactly the request sent to it
    )


def _match_on(worker: Worker, url: str, user, sku_code: str) -> MatchRequest:
    request = match_request_create(user=user, uploads=[demo_photo_upload(sku_code)])
    with celery_app.connection_for_write(url) as connection:
        run_match.apply_async((request.pk,), connection=connection, queue=worker.queues)
    _wait_for(
        lambda: MatchRequest.objects.get(pk=request.pk).status in ("done", "failed"),
        120, f"match {request.pk} on {worker.name}", worker.log(),
    )
    done = MatchRequest.objects.get(pk=request.pk)
    assert done.status == "done", (done.error, worker.log()[-3000:])
    assert done.candidates.exists()
    return done


def test_two_workers_fill_their_own_index_caches_and_switch_on_promotion(
    replica_workers, small_catalogue, checkpoints, appraiser, tmp_path  # noqa: F811
) -> None:
    url, workers = replica_workers
    first: IndexVersion = small_catalogue
    manifest = artifacts.index_manifest(first.name)
    assert manifest is not None
    # The vectors, and the re-ranker's reference evidence beside them when it is on.
    stored_files = set(manifest["files"])
    assert {"index.faiss", "meta.json"} <= stored_files
    assert any(name.startswith("rerank/") for name in stored_files) == settings.RERANK
    assert stored_files - {"index.faiss", "meta.json"} == {
        name for name in stored_files if name.startswith("rerank/")}

    a, b = _start("a", url, tmp_path), _start("b", url, tmp_path)
    workers += [a.start(timeout=180), b.start(timeout=180)]
    for worker in (a, b):
        done = _match_on(worker, url, appraiser, "DEMO-KIR-SUM-01")
        assert done.index_version == first.name
        cached = tmp_path / f"index-{worker.name}" / first.name
        assert (cached / artifacts.VERIFIED).is_file(), worker.log()[-3000:]
        for file_name, entry in manifest["files"].items():
            assert _sha256(cached / file_name) == entry["sha256"]
            assert _sha256(cached / file_name) == _sha256(
                Path(settings.INDEX_DIR) / first.name / file_name
            )
        assert f"fetched index {first.name}" in worker.log()
        assert "run_match[" in worker.log()

    # A promotion in between: a new model (a registry checkpoint) and its index go live.
    stored = checkpoint_store(source=Path(checkpoints["useless"]), stem="replica-test")
    candidate = model_version_register(model_ref=str(stored), source=ModelVersion.Source.TRAINED)
    ModelVersion.objects.filter(pk=candidate.pk).update(
        gate=ModelVersion.Gate.PASSED, gate_report={"live_model_ref": live_model_ref()}
    )
    candidate.refresh_from_db()
    promotion = promotion_request(model=candidate)
    assert promotion_execute(promotion_id=promotion.pk)
    second = IndexVersion.objects.get(is_active=True)
    assert second.name != first.name and second.model_ref == str(stored)
    checkpoint_sha = _sha256(stored)
    # The workers' machines never had the checkpoint: it must come from the store too.
    stored.unlink()

    for worker in (a, b):
        done = _match_on(worker, url, appraiser, "DEMO-MAI-LUN-01")
        assert done.index_version == second.name, worker.log()[-3000:]
        assert ((tmp_path / f"index-{worker.name}" / second.name) / artifacts.VERIFIED).is_file()
        assert f"fetched index {second.name}" in worker.log()
    assert stored.is_file() and _sha256(stored) == checkpoint_sha
    assert "fetched checkpoint" in a.log() + b.log()
