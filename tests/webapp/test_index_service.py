"""Index publishing: incremental, versioned, and equal to the database."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from django.db import connection

from ml.index import VectorIndex
from tests.webapp.factories import SKUImageFactory
from webapp import ml_gateway
from webapp.catalog.models import SKU, SKUImage
from webapp.catalog.selectors import indexable_images
from webapp.learning.locks import index_publish_lock
from webapp.learning.models import IndexVersion
from webapp.learning.services import index_is_consistent, index_publish


def _index_ids(version: IndexVersion) -> set[int]:
    index, meta = VectorIndex.load(ml_gateway.index_path(version.name))
    assert meta["count"] == index.ntotal
    return {int(i) for i in index.ids()}


def test_index_holds_exactly_the_indexable_images(catalogue) -> None:
    assert _index_ids(catalogue) == set(indexable_images().values_list("id", flat=True))
    assert index_is_consistent(catalogue)


def test_deactivating_a_sku_removes_its_vectors_incrementally(catalogue) -> None:
    sku = SKU.objects.get(code="DEMO-KIR-SUM-01")
    gone = set(sku.images.values_list("id", flat=True))
    sku.is_active = False
    sku.save()
    version = index_publish()
    assert version.parent == catalogue
    assert (version.added, version.removed) == (0, len(gone))
    assert _index_ids(version) == _index_ids(catalogue) - gone
    assert IndexVersion.objects.filter(is_active=True).get() == version
    # The previous version's files are untouched: a rollback target.
    assert _index_ids(catalogue) >= gone


def test_new_reference_image_is_embedded_and_added(catalogue) -> None:
    source = SKUImage.objects.first()
    copy = SKUImageFactory(sku=source.sku, image=source.image.name, position=5)
    version = index_publish()
    assert (version.added, version.removed) == (1, 0)
    assert copy.id in _index_ids(version)
    copy.refresh_from_db()
    stored = np.frombuffer(bytes(copy.embedding), dtype=np.float32)
    assert np.linalg.norm(stored) == np.float32(1.0) or abs(np.linalg.norm(stored) - 1) < 1e-4


def test_full_rebuild_gives_the_same_contents(catalogue) -> None:
    rebuilt = index_publish(full_rebuild=True)
    assert rebuilt.added == rebuilt.vector_count
    assert _index_ids(rebuilt) == _index_ids(catalogue)


@pytest.mark.django_db(transaction=True)
def test_publishes_run_one_at_a_time(catalogue) -> None:
    """A publish waits for the one in progress (here: a held lock), then starts from its result."""
    events: list[str] = []
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        try:
            with index_publish_lock():
                events.append("other publish starts")
                held.set()
                release.wait(30)
                events.append("other publish ends")
        finally:
            connection.close()

    def publisher() -> None:
        try:
            held.wait(30)
            version = index_publish(full_rebuild=True)
            events.append(f"published {version.vector_count}")
        finally:
            connection.close()

    threads = [threading.Thread(target=holder), threading.Thread(target=publisher)]
    for thread in threads:
        thread.start()
    assert held.wait(30)
    time.sleep(1.0)  # the publisher has had ample time to run if it were not blocked
    assert events == ["other publish starts"]
    release.set()
    for thread in threads:
        thread.join(60)
    assert events == [
        "other publish starts", "other publish ends", f"published {catalogue.vector_count}"
    ]
