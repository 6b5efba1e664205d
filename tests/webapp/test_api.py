"""The v1 API: token auth, the match flow, JSON errors, the schema."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from tests.webapp.conftest import api_token, demo_photo_upload, upload
from webapp.review.models import BadCase


@pytest.fixture
def api(appraiser) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Token {api_token(appraiser)}")


@pytest.mark.django_db(transaction=True)
def test_match_flow_over_the_api(api, catalogue) -> None:
    response = api.post(reverse("api:match-create"),
                        {"photos": [demo_photo_upload("DEMO-KIR-SUM-01")]})
    assert response.status_code == 202, response.content
    match_id = response.json()["id"]
    assert response["Location"].endswith(f"/api/v1/matches/{match_id}")

    body = api.get(reverse("api:match-detail", args=[match_id])).json()
    assert body["status"] == "done"
    assert body["candidates"][0]["rank"] == 1
    assert 0 <= body["candidates"][0]["score"] <= 1
    assert body["candidates"][0]["reference_image_url"].startswith("http")
    assert body["candidates"][0]["sku"]["code"].startswith("DEMO-")

    response = api.post(reverse("api:match-decision", args=[match_id]),
                        {"outcome": "reject"}, content_type="application/json")
    assert response.status_code == 201
    assert BadCase.objects.filter(request_id=match_id).exists()

    again = api.post(reverse("api:match-decision", args=[match_id]),
                     {"outcome": "reject"}, content_type="application/json")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "decision_refused"


def test_bad_photo_is_a_json_error(api) -> None:
    response = api.post(reverse("api:match-create"), {"photos": [upload("a.jpg", b"nope")]})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_photo"
    assert "not a supported image" in error["message"]


def test_missing_photos_field_is_a_json_error(api) -> None:
    response = api.post(reverse("api:match-create"), {})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert "photos" in response.json()["error"]["fields"]


def test_unknown_match_is_404_json(api) -> None:
    response = api.get(reverse("api:match-detail", args=[424242]))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_catalogue_is_paginated_and_filterable(api, catalogue) -> None:
    body = api.get(reverse("api:sku-list")).json()
    assert body["count"] == 6
    first = body["results"][0]
    assert {"code", "category", "brand", "series", "image_urls"} <= set(first)
    totes = api.get(reverse("api:sku-list"), {"q": "Mercato"}).json()
    assert totes["count"] == 2


def test_schema_is_generated_and_documents_v1(catalogue_admin) -> None:
    from tests.webapp.conftest import logged_in

    client = logged_in(catalogue_admin)
    response = client.get(reverse("api:schema"), HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {"/api/v1/matches", "/api/v1/matches/{match_id}",
            "/api/v1/matches/{match_id}/decision", "/api/v1/skus"} <= set(paths)
    assert client.get(reverse("api:docs")).status_code == 200
