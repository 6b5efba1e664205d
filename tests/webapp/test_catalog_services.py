"""Catalogue services: SKUs, images, merges, hierarchy; each change audited and synced."""

from __future__ import annotations

import pytest

from tests.webapp.factories import (
    BadCaseFactory,
    BrandFactory,
    CandidateFactory,
    CategoryFactory,
    DecisionFactory,
    MatchRequestFactory,
)
from tests.webapp.test_catalog_pages import png
from webapp.audit.models import AuditEntry
from webapp.catalog.models import SKU, Category, Series, SKUImage
from webapp.catalog.services import (
    CatalogueError,
    hierarchy_delete,
    hierarchy_rename,
    sku_create,
    sku_image_move,
    sku_image_remove,
    sku_images_add,
    sku_merge,
    sku_set_active,
    sku_update,
)
from webapp.catalog.validation import ReferenceImageError, image_check, images_check
from webapp.matching.models import Decision


@pytest.fixture
def two_skus(catalogue_admin):
    a = sku_create(actor=catalogue_admin, code="A-1", name="A", category="Bags", brand="B",
                   series="S", images=[image_check(png("DEMO-MAI-LUN-01"), name="a.png")])
    b = sku_create(actor=catalogue_admin, code="B-1", name="B", category="Bags", brand="B",
                   series="S", attributes={"hardware": "gold"},
                   images=[image_check(png("DEMO-MAI-LUN-02"), name="b.png")])
    return a, b


@pytest.mark.django_db(transaction=True)
def test_every_change_enqueues_one_index_sync_on_commit(catalogue_admin, monkeypatch) -> None:
    # Real commits (transaction=True): each service call is its own transaction.
    calls: list[int] = []
    monkeypatch.setattr("webapp.learning.tasks.sync_index.delay", lambda: calls.append(1))
    sku = sku_create(actor=catalogue_admin, code="X", name="X", category="C", brand="B",
                     series="S", images=images_check([("x.png", png("DEMO-MAI-LUN-01"))]))
    # The SKU and its images are one transaction: one sync, not one per image.
    assert len(calls) == 1
    for change in (
        lambda: sku_update(sku=sku, actor=catalogue_admin, name="Y"),
        lambda: sku_set_active(sku=sku, actor=catalogue_admin, active=False),
        lambda: sku_set_active(sku=sku, actor=catalogue_admin, active=True),
        lambda: sku_images_add(sku=sku, actor=catalogue_admin,
                               images=[image_check(png("DEMO-MAI-LUN-02"), name="y.png")]),
        lambda: sku_image_remove(image=sku.images.first(), actor=catalogue_admin),
    ):
        before = len(calls)
        change()
        assert len(calls) == before + 1
    # Nothing changed, nothing to sync.
    sku_update(sku=sku, actor=catalogue_admin, name="Y")
    assert len(calls) == 6


def test_update_moves_in_the_hierarchy_and_audits_the_difference(two_skus, catalogue_admin):
    a, _ = two_skus
    sku_update(sku=a, actor=catalogue_admin, series="Other", colour="red")
    a.refresh_from_db()
    assert a.series.name == "Other" and a.series.brand.name == "B"
    entry = AuditEntry.objects.filter(action="sku.update").get()
    assert entry.changes == {"colour": ["", "red"], "series": ["S", "Other"]}
    assert entry.actor == catalogue_admin and entry.sku == a
    assert AuditEntry.objects.filter(action="series.create").count() == 2


def test_code_must_stay_unique(two_skus, catalogue_admin) -> None:
    a, b = two_skus
    with pytest.raises(CatalogueError, match="already exists"):
        sku_update(sku=a, actor=catalogue_admin, code=b.code)
    with pytest.raises(CatalogueError, match="already exists"):
        sku_create(actor=catalogue_admin, code="A-1", name="x", category="c", brand="b",
                   series="s")


def test_image_checks_are_by_content() -> None:
    with pytest.raises(ReferenceImageError) as error:
        images_check([("ok.png", png("DEMO-MAI-LUN-01")), ("fake.png", b"<html>"),
                      ("empty.jpg", b"")])
    assert len(error.value.messages) == 2
    assert "fake.png: not an image" in error.value.messages[0]


def test_reorder_and_remove_keep_positions_dense(two_skus, catalogue_admin) -> None:
    a, _ = two_skus
    extra = sku_images_add(sku=a, actor=catalogue_admin, images=images_check(
        [("2.png", png("DEMO-MAI-LUN-01", 1)), ("3.png", png("DEMO-MAI-LUN-03"))]))
    first = a.images.get(position=0)
    sku_image_move(image=extra[1], actor=catalogue_admin, offset=-5)
    assert list(a.images.order_by("position").values_list("original_name", flat=True)) == [
        "3.png", "a.png", "2.png"]
    sku_image_remove(image=first, actor=catalogue_admin)
    assert list(a.images.order_by("position").values_list("position", flat=True)) == [0, 1]


def test_merge_moves_images_and_history(two_skus, catalogue_admin, appraiser) -> None:
    a, b = two_skus
    match = MatchRequestFactory(created_by=appraiser)
    candidate = CandidateFactory(request=match, sku=a, score=0.5, cosine=0.0,
                                 query_photo__width=1, query_photo__height=1)
    decision = DecisionFactory(request=match, outcome=Decision.Outcome.OTHER_SKU, sku=a)
    bad_case = BadCaseFactory(request=match, decision=decision, correct_sku=a)
    image_ids = set(a.images.values_list("id", flat=True))

    moved = sku_merge(source=a, target=b, actor=catalogue_admin)

    assert (moved.images, moved.candidates, moved.decisions, moved.bad_cases) == (1, 1, 1, 1)
    a.refresh_from_db()
    b.refresh_from_db()
    assert not a.is_active and a.merged_into == b
    assert image_ids <= set(b.images.values_list("id", flat=True))
    assert list(b.images.order_by("position").values_list("position", flat=True)) == [0, 1]
    for row, field in ((candidate, "sku"), (decision, "sku"), (bad_case, "correct_sku")):
        row.refresh_from_db()
        assert getattr(row, field) == b
    assert b.attributes == {"hardware": "gold"}
    assert {e.action for e in AuditEntry.objects.filter(action__startswith="sku.merge")} == {
        "sku.merge", "sku.merge_into"}
    with pytest.raises(CatalogueError, match="already been merged"):
        sku_merge(source=a, target=b, actor=catalogue_admin)
    with pytest.raises(CatalogueError, match="merged into another"):
        sku_set_active(sku=a, actor=catalogue_admin, active=True)


def test_merge_refuses_itself_and_an_inactive_target(two_skus, catalogue_admin) -> None:
    a, b = two_skus
    with pytest.raises(CatalogueError):
        sku_merge(source=a, target=a, actor=catalogue_admin)
    sku_set_active(sku=b, actor=catalogue_admin, active=False)
    with pytest.raises(CatalogueError, match="inactive"):
        sku_merge(source=a, target=b, actor=catalogue_admin)


def test_hierarchy_rename_and_delete(two_skus, catalogue_admin) -> None:
    category = Category.objects.get(name="Bags")
    other = CategoryFactory(name="Shoes")
    with pytest.raises(CatalogueError, match="already exists"):
        hierarchy_rename(node=other, name="Bags", actor=catalogue_admin)
    hierarchy_rename(node=category, name="Handbags", actor=catalogue_admin)
    assert SKU.objects.filter(series__brand__category__name="Handbags").count() == 2
    with pytest.raises(CatalogueError, match="not empty"):
        hierarchy_delete(node=Series.objects.get(name="S"), actor=catalogue_admin)
    hierarchy_delete(node=other, actor=catalogue_admin)
    assert not Category.objects.filter(name="Shoes").exists()
    # Same brand name in another category is another brand: allowed.
    brand = BrandFactory(category__name="X", name="B")
    hierarchy_rename(node=brand, name="B", actor=catalogue_admin)


def test_removing_an_image_deletes_its_file_after_commit(
    two_skus, catalogue_admin, django_capture_on_commit_callbacks
) -> None:
    a, _ = two_skus
    image = a.images.get()
    storage, name = image.image.storage, image.image.name
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        sku_image_remove(image=image, actor=catalogue_admin)
    assert storage.exists(name)  # not yet: the transaction could still roll back
    for callback in callbacks:
        if getattr(callback, "__name__", "") == "<lambda>":
            callback()
    assert not storage.exists(name)
    assert not SKUImage.objects.filter(pk=image.pk).exists()
