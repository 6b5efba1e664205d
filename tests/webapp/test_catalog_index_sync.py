"""Catalogue changes reach the search index incrementally, checked against the index files.

Also measures how long a new SKU takes to become findable: eagerly (the sync runs in the
committing process) and through a real Celery worker over Redis (marked `worker`).
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

import pytest
from django.db import transaction

from ml.index import VectorIndex
from tests.webapp.conftest import upload
from tests.webapp.workers import Worker, redis_url_or_skip
from webapp import ml_gateway
from webapp.catalog.demo import demo_skus, render_reference
from webapp.catalog.models import SKU
from webapp.catalog.selectors import indexable_images
from webapp.catalog.services import (
    sku_create,
    sku_image_remove,
    sku_images_add,
    sku_merge,
    sku_set_active,
)
from webapp.catalog.validation import ValidImage, image_check
from webapp.config.celery import app as celery_app
from webapp.learning.models import IndexVersion
from webapp.matching.requests import match_request_create
from webapp.matching.runner import match_request_run

NEW_DEMO_SKU = "DEMO-KIR-HAR-01"  # a demo tote the `catalogue` fixture leaves out


def index_ids() -> set[int]:
    version = IndexVersion.objects.get(is_active=True)
    index, _ = VectorIndex.load(ml_gateway.index_path(version.name))
    return {int(i) for i in index.ids()}


def reference_images(code: str = NEW_DEMO_SKU) -> list[ValidImage]:
    sku = next(s for s in demo_skus() if s.code == code)
    images = []
    for view in (0, 1):
        buffer = io.BytesIO()
        render_reference(sku, view).save(buffer, "PNG")
        images.append(image_check(buffer.getvalue(), name=f"{code}-{view}.png"))
    return images


def new_sku(actor: object) -> SKU:
    return sku_create(actor=actor, code="NEW-HAR-01", name="Kirin & Co Harbour Cream",
                      category="Totes", brand="Kirin & Co", series="Harbour",
                      images=reference_images())


def top_sku_for(appraiser: object, image: ValidImage) -> int:
    request = match_request_create(user=appraiser, uploads=[upload("q.png", image.data)])
    match_request_run(request_id=request.pk)  # a no-op when the eager task already ran it
    request.refresh_from_db()
    assert request.status == "done", request.error
    return request.candidates.get(rank=1).sku_id


# Real commits: every service call is its own transaction, and its on-commit sync runs
# eagerly (CELERY eager in these tests), as the worker would run it after the commit.
@pytest.mark.django_db(transaction=True)
def test_each_change_updates_the_index_incrementally(
    catalogue, catalogue_admin, appraiser, capsys
) -> None:
    before = index_ids()
    started = time.perf_counter()
    sku = new_sku(catalogue_admin)
    findable_s = time.perf_counter() - started
    new_ids = set(sku.images.values_list("id", flat=True))
    assert index_ids() == before | new_ids
    version = IndexVersion.objects.get(is_active=True)
    assert (version.parent, version.added, version.removed) == (catalogue, 2, 0)
    assert top_sku_for(appraiser, reference_images()[1]) == sku.pk
    with capsys.disabled():
        print(f"\n[findability] eager path: save -> index holds the new SKU in {findable_s:.2f} s")

    sku_set_active(sku=sku, actor=catalogue_admin, active=False)
    assert index_ids() == before
    assert top_sku_for(appraiser, reference_images()[1]) != sku.pk

    sku_set_active(sku=sku, actor=catalogue_admin, active=True)
    assert index_ids() == before | new_ids

    first = sku.images.order_by("position").first()
    removed = first.pk  # delete() clears it
    sku_image_remove(image=first, actor=catalogue_admin)
    assert index_ids() == before | (new_ids - {removed})

    # A merge keeps the vectors (ids are image ids) and points them at the target.
    target = SKU.objects.get(code="DEMO-KIR-SUM-01")
    sku_merge(source=sku, target=target, actor=catalogue_admin)
    assert index_ids() == before | (new_ids - {removed})
    assert index_ids() == set(indexable_images().values_list("id", flat=True))
    assert top_sku_for(appraiser, reference_images()[1]) == target.pk


@pytest.mark.django_db(transaction=True)
def test_added_image_is_embedded_and_indexed(catalogue, catalogue_admin) -> None:
    sku = SKU.objects.get(code="DEMO-VEL-MER-01")
    [added] = sku_images_add(sku=sku, actor=catalogue_admin,
                                 images=reference_images("DEMO-VEL-MER-04")[:1])
    added.refresh_from_db()
    assert added.embedding and added.embedding_model == IndexVersion.objects.get(
        is_active=True).model_version
    assert added.pk in index_ids()


# ----- the real worker path ------------------------------------------------------------------


@pytest.fixture
def index_broker(monkeypatch) -> Iterator[str]:
    """Publish learning.sync_index to Redis, exactly as the web process would."""
    url = redis_url_or_skip()
    celery_app.conf.task_always_eager = False
    connection = celery_app.connection_for_write(url)

    def enqueue() -> None:
        from webapp.learning.tasks import sync_index

        sync_index.apply_async(connection=connection, queue="gpu")

    monkeypatch.setattr("webapp.learning.receivers._enqueue_index_sync", enqueue)
    yield url
    connection.release()
    celery_app.conf.task_always_eager = True


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_new_sku_is_findable_within_a_minute_through_a_real_worker(
    index_broker, catalogue, catalogue_admin, tmp_path, capsys
) -> None:
    worker = Worker("index", index_broker, tmp_path).start()
    try:
        started = time.perf_counter()
        with transaction.atomic():
            sku = new_sku(catalogue_admin)
        wanted = set(sku.images.values_list("id", flat=True))
        deadline = started + 60
        while time.perf_counter() < deadline:
            active = IndexVersion.objects.filter(is_active=True).first()
            if active and active != catalogue and wanted <= index_ids():
                break
            time.sleep(0.2)
        elapsed = time.perf_counter() - started
        assert wanted <= index_ids(), worker.log()[-3000:]
        with capsys.disabled():
            print(f"\n[findability] worker path: save -> index holds the new SKU "
                  f"in {elapsed:.2f} s")
        assert elapsed < 60
    finally:
        worker.stop()
