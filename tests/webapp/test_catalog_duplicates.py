"""Near-duplicate detection from the stored embeddings, and its two resolutions."""

from __future__ import annotations

import numpy as np
import pytest
from django.urls import reverse

from tests.webapp.conftest import logged_in
from tests.webapp.factories import SKUImageFactory
from webapp.catalog.duplicates import (
    duplicate_mark_distinct,
    duplicate_merge,
    duplicate_pairs_find,
    duplicate_scan_request,
)
from webapp.catalog.models import SKU, DuplicatePair, DuplicateScan, SKUImage
from webapp.catalog.services import CatalogueError, sku_create


def _copy_of(sku: SKU, *, code: str, noise: float = 0.0) -> SKU:
    """A second SKU whose images carry `sku`'s embeddings (optionally nudged)."""
    copy = sku_create(actor=None, code=code, name=f"Copy of {sku.name}", category="Handbags",
                      brand="Elsewhere", series="Copies")
    rng = np.random.default_rng(0)
    for image in sku.images.all():
        vector = np.frombuffer(bytes(image.embedding), dtype=np.float32).copy()
        vector += noise * rng.standard_normal(vector.shape).astype(np.float32)
        vector /= np.linalg.norm(vector)
        SKUImageFactory(sku=copy, image=image.image.name, position=image.position,
                        embedding=vector.tobytes(), embedding_model=image.embedding_model)
    return copy


@pytest.fixture
def synthetic(db) -> list[SKU]:
    """Five SKUs of two images each with random (so far apart) stored embeddings: the scan
    reads only SKUImage.embedding, so these tests need no model."""
    rng = np.random.default_rng(42)
    skus = []
    for n in range(5):
        sku = sku_create(actor=None, code=f"SYN-{n}", name=f"Synthetic {n}", category="Bags",
                         brand="Synthetic", series="S")
        for position in range(2):
            vector = rng.standard_normal(64).astype(np.float32)
            SKUImageFactory(sku=sku, image=f"catalog/syn-{n}-{position}.png", position=position,
                            embedding_model="test-model",
                            embedding=(vector / np.linalg.norm(vector)).tobytes())
        skus.append(sku)
    return skus


@pytest.fixture
def duplicated(synthetic):
    original = synthetic[1]
    return original, _copy_of(original, code="DUP-1")


def test_the_demo_catalogue_has_no_near_duplicates(catalogue) -> None:
    found, compared = duplicate_pairs_find(threshold=0.97)
    assert compared == SKUImage.objects.count() and found == []


def test_a_copied_sku_is_found_with_its_closest_images(duplicated) -> None:
    original, copy = duplicated
    found, _ = duplicate_pairs_find(threshold=0.97)
    assert len(found) == 1
    pair = found[0]
    assert (pair.sku_a, pair.sku_b) == (original.pk, copy.pk)
    assert pair.image_cosine == pytest.approx(1.0, abs=1e-5)
    assert pair.image_pairs == 2 and pair.sku_cosine == pytest.approx(1.0, abs=1e-5)
    assert SKUImage.objects.get(pk=pair.image_a).sku_id == original.pk
    assert SKUImage.objects.get(pk=pair.image_b).sku_id == copy.pk


def test_the_threshold_decides(synthetic) -> None:
    _copy_of(synthetic[0], code="NEAR-1", noise=0.03)
    pair = duplicate_pairs_find(threshold=0.5)[0][0]
    # Noise averages out over a SKU's images: the centroids can be closer than any image pair.
    cosine = max(pair.image_cosine, pair.sku_cosine)
    assert 0.8 < cosine < 0.9999
    assert duplicate_pairs_find(threshold=cosine + 1e-3)[0] == []
    assert len(duplicate_pairs_find(threshold=cosine - 1e-3)[0]) == 1


def test_scan_row_marked_distinct_does_not_come_back(
    duplicated, catalogue_admin, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        scan = duplicate_scan_request(actor=catalogue_admin, threshold=0.97)
    scan.refresh_from_db()
    assert (scan.status, scan.pairs_found) == (DuplicateScan.Status.DONE, 1)
    pair = DuplicatePair.objects.get()
    duplicate_mark_distinct(pair=pair, actor=catalogue_admin)
    with django_capture_on_commit_callbacks(execute=True):
        rescan = duplicate_scan_request(actor=catalogue_admin, threshold=0.97)
    rescan.refresh_from_db()
    assert rescan.pairs_found == 0
    assert DuplicatePair.objects.get().status == DuplicatePair.Status.DISTINCT
    with pytest.raises(CatalogueError, match="already been resolved"):
        duplicate_mark_distinct(pair=pair, actor=catalogue_admin)


def test_merging_a_pair_folds_one_sku_into_the_other(
    duplicated, catalogue_admin, django_capture_on_commit_callbacks
) -> None:
    original, copy = duplicated
    with django_capture_on_commit_callbacks(execute=True):
        duplicate_scan_request(actor=catalogue_admin, threshold=0.97)
    pair = DuplicatePair.objects.get()
    duplicate_merge(pair=pair, keep=original, actor=catalogue_admin)
    copy.refresh_from_db()
    assert copy.merged_into == original and not copy.is_active
    assert original.images.count() == 4
    assert DuplicatePair.objects.get().status == DuplicatePair.Status.MERGED
    # The copy's images now belong to the original: nothing left to pair.
    assert duplicate_pairs_find(threshold=0.97)[0] == []


def test_duplicates_page_lists_and_resolves(duplicated, catalogue_admin,
                                            django_capture_on_commit_callbacks) -> None:
    client = logged_in(catalogue_admin)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("catalog:duplicate_scan"), {"threshold": "0.97"})
    page = client.get(reverse("catalog:duplicates")).content.decode()
    pair = DuplicatePair.objects.get()
    assert f'id="pair-{pair.pk}"' in page and "DUP-1" in page and "1 open pair" in page
    client.post(reverse("catalog:duplicate_distinct", args=[pair.pk]))
    page = client.get(reverse("catalog:duplicates"), {"show": "distinct"}).content.decode()
    assert "Marked distinct by" in page
    refused = client.post(reverse("catalog:duplicate_scan"), {"threshold": "2"}, follow=True)
    assert "between 0.5 and 0.9999" in refused.content.decode()
