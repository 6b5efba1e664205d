"""The catalogue over /api/v1: reads with filters and pagination, admin writes, JSON errors."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from tests.webapp.conftest import api_token, upload
from tests.webapp.test_catalog_pages import png
from webapp.audit.models import AuditEntry
from webapp.catalog.models import SKU, Category


def token_client(user) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Token {api_token(user)}")


@pytest.fixture
def qa_api(qa_user) -> Client:
    return token_client(qa_user)


@pytest.fixture
def admin_api(catalogue_admin) -> Client:
    return token_client(catalogue_admin)


@pytest.fixture
def small(db, demo_folder):
    from webapp.catalog.bulk import catalogue_import
    from webapp.catalog.importing import read_catalogue_csv

    rows = [r for r in read_catalogue_csv(demo_folder / "catalogue.csv")
            if r.series in ("Lune", "Mercato", "Summit")]
    catalogue_import(rows=rows, image_root=demo_folder)


def test_hierarchy_endpoints_filter_and_count(qa_api, small) -> None:
    categories = qa_api.get(reverse("api:category-list")).json()
    assert [c["name"] for c in categories["results"]] == ["Backpacks", "Handbags", "Totes"]
    assert all(c["sku_count"] == 4 for c in categories["results"])
    handbags = Category.objects.get(name="Handbags").pk
    brands = qa_api.get(reverse("api:brand-list"), {"category": handbags}).json()
    assert [b["name"] for b in brands["results"]] == ["Maison Aubert"]
    series = qa_api.get(reverse("api:series-list"), {"brand": brands["results"][0]["id"]}).json()
    assert [s["name"] for s in series["results"]] == ["Lune"]


def test_sku_list_filters_paginates_and_validates(qa_api, small) -> None:
    body = qa_api.get(reverse("api:sku-list")).json()
    assert body["count"] == 12 and body["next"] is None
    handbags = Category.objects.get(name="Handbags").pk
    assert qa_api.get(reverse("api:sku-list"), {"category": handbags}).json()["count"] == 4
    assert qa_api.get(reverse("api:sku-list"), {"q": "summit black"}).json()["count"] == 1
    SKU.objects.filter(code="DEMO-MAI-LUN-01").update(is_active=False)
    assert qa_api.get(reverse("api:sku-list"), {"active": "false"}).json()["count"] == 1
    bad = qa_api.get(reverse("api:sku-list"), {"category": "handbags"})
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid" and "category" in bad.json()["error"]["fields"]
    past = qa_api.get(reverse("api:sku-list"), {"page": 9})
    assert past.status_code == 404 and past.json()["error"]["code"] == "not_found"


def test_sku_detail_has_images_in_order(qa_api, small) -> None:
    sku = SKU.objects.get(code="DEMO-VEL-MER-01")
    body = qa_api.get(reverse("api:sku-detail", args=[sku.pk])).json()
    assert body["code"] == sku.code and body["series"] == "Mercato"
    assert [i["position"] for i in body["images"]] == [0, 1]
    assert body["images"][0]["url"].startswith("http") and body["merged_into"] is None
    missing = qa_api.get(reverse("api:sku-detail", args=[99999]))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_admin_writes_a_sku_through_the_api(admin_api, small) -> None:
    created = admin_api.post(
        reverse("api:sku-create"),
        {"code": "API-1", "name": "From the API", "category": "Totes", "brand": "Velluto",
         "series": "Mercato", "colour": "red", "attributes": {"hardware": "gold"}},
        content_type="application/json",
    )
    assert created.status_code == 201, created.content
    sku_id = created.json()["id"]
    again = admin_api.post(reverse("api:sku-create"),
                           {"code": "API-1", "name": "x", "category": "c", "brand": "b",
                            "series": "s"}, content_type="application/json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "catalogue_refused"

    images = admin_api.post(reverse("api:sku-image-add", args=[sku_id]),
                            {"images": [upload("a.png", png("DEMO-VEL-MER-02"), "image/png")]})
    assert images.status_code == 201 and images.json()[0]["position"] == 0
    bad = admin_api.post(reverse("api:sku-image-add", args=[sku_id]),
                         {"images": [upload("a.png", b"nope")]})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_image"

    updated = admin_api.post(reverse("api:sku-update", args=[sku_id]),
                             {"colour": "blue", "is_active": False},
                             content_type="application/json")
    assert updated.status_code == 200
    assert (updated.json()["colour"], updated.json()["is_active"]) == ("blue", False)

    history = admin_api.get(reverse("api:sku-history", args=[sku_id])).json()
    assert [e["action"] for e in history][:2] == ["sku.deactivate", "sku.update"]

    image_id = images.json()[0]["id"]
    deleted = admin_api.delete(reverse("api:sku-image-delete", args=[sku_id, image_id]))
    assert deleted.status_code == 204

    target = SKU.objects.get(code="DEMO-VEL-MER-01")
    admin_api.post(reverse("api:sku-update", args=[sku_id]), {"is_active": True},
                   content_type="application/json")
    merged = admin_api.post(reverse("api:sku-merge", args=[sku_id]), {"into": target.code},
                            content_type="application/json")
    assert merged.status_code == 200 and merged.json()["into"]["code"] == target.code
    assert AuditEntry.objects.filter(actor__isnull=False, sku_id=sku_id).count() >= 5

    status = admin_api.get(reverse("api:index-status")).json()
    assert status["name"] is None and status["expected"] == 24 and not status["in_sync"]


def test_the_other_roles_cannot_write(qa_api, small) -> None:
    response = qa_api.post(reverse("api:sku-create"), {"code": "X"},
                           content_type="application/json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
