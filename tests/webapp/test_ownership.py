"""The owner / non-owner dimension of the role matrix: an appraiser sees and acts on only their
own items (pages, API, re-box, retry, crops, media); QA and catalogue admins see them all."""

from __future__ import annotations

from io import BytesIO

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import reverse
from PIL import Image

from tests.webapp.conftest import logged_in
from tests.webapp.factories import (
    BadCaseFactory,
    CandidateFactory,
    DecisionFactory,
    MatchRequestFactory,
    QueryPhotoFactory,
    RoleUserFactory,
    SKUFactory,
    SKUImageFactory,
)
from webapp.accounts.roles import Role
from webapp.catalog.models import SKU
from webapp.matching.models import Decision, MatchRequest, QueryPhoto

pytestmark = pytest.mark.django_db


@pytest.fixture
def other_appraiser(db):
    return RoleUserFactory(username="other-appraiser", role=Role.APPRAISER)


@pytest.fixture
def sku(db) -> SKU:
    sku = SKUFactory(series__brand__category__name="Bags", series__brand__name="B",
                     series__name="S", code="OWN-1", name="Owned bag")
    SKUImageFactory(sku=sku, image__color="black")
    return sku


def _request(owner, sku: SKU, status: str = MatchRequest.Status.DONE) -> MatchRequest:
    request = MatchRequestFactory(created_by=owner, status=status)
    photo = QueryPhotoFactory(request=request, width=96, height=96, masked=True,
                              box=[0, 0, 96, 96], box_source=QueryPhoto.BoxSource.DETECTOR)
    CandidateFactory(request=request, sku=sku, query_photo=photo,
                     reference_image=sku.images.first())
    return request


@pytest.fixture
def owned(appraiser, sku) -> MatchRequest:
    return _request(appraiser, sku)


def _send(client: Client, method: str, url: str, data: dict):
    if method == "post" and url.startswith("/api/"):
        return client.post(url, data, content_type="application/json")
    return getattr(client, method)(url, data)


def _media(field) -> str:
    return "/media/" + field.name


# (what, method, url, data): everything an owner can reach about one of their requests.
def _owned_endpoints(m: MatchRequest) -> list[tuple[str, str, str, dict]]:
    photo = m.photos.get()
    return [
        ("page detail", "get", reverse("matching:detail", args=[m.pk]), {}),
        ("page decide", "post", reverse("matching:decide", args=[m.pk]), {"outcome": "reject"}),
        ("page retry", "post", reverse("matching:retry", args=[m.pk]), {}),
        ("page re-box", "post", reverse("matching:correct_box", args=[m.pk, 0]),
         {"x0": 1, "y0": 1, "x1": 50, "y1": 50}),
        ("api detail", "get", reverse("api:match-detail", args=[m.pk]), {}),
        ("api decision", "post", reverse("api:match-decision", args=[m.pk]),
         {"outcome": "reject"}),
        ("page crop", "get", reverse("matching:crop", args=[m.pk, 0]), {}),
        ("page undo", "post", reverse("matching:undo", args=[m.pk]), {}),
        ("api undo", "post", reverse("api:match-decision-undo", args=[m.pk]), {}),
        ("media original", "get", _media(photo.original), {}),
        ("media image", "get", _media(photo.image), {}),
        ("media mask", "get", _media(photo.mask), {}),
    ]


def test_non_owner_gets_404_everywhere_and_changes_nothing(owned, other_appraiser) -> None:
    client = logged_in(other_appraiser)
    before = MatchRequest.objects.values().get(pk=owned.pk)
    for what, method, url, data in _owned_endpoints(owned):
        response = _send(client, method, url, data)
        assert response.status_code == 404, (what, response.status_code)
        if url.startswith("/api/"):
            assert response.json()["error"]["code"] == "not_found", what
    assert MatchRequest.objects.values().get(pk=owned.pk) == before
    assert not Decision.objects.exists()
    assert owned.photos.get().box_source == QueryPhoto.BoxSource.DETECTOR


def test_a_missing_id_and_someone_elses_id_look_the_same(owned, other_appraiser) -> None:
    client = logged_in(other_appraiser)
    theirs = client.get(reverse("api:match-detail", args=[owned.pk])).json()
    missing = client.get(reverse("api:match-detail", args=[owned.pk + 1000])).json()
    assert theirs == missing


def test_owner_reaches_every_endpoint(owned, appraiser) -> None:
    client = logged_in(appraiser)
    for what, method, url, _ in _owned_endpoints(owned):
        if method == "get":
            assert getattr(client, method)(url).status_code == 200, what
    photo = owned.photos.get()
    served = client.get(_media(photo.image))
    assert b"".join(served.streaming_content)[:2] == b"\xff\xd8"
    assert served["Cache-Control"].startswith("private")
    # Acting: the decision is recorded for the owner.
    assert _send(client, "post", reverse("api:match-decision", args=[owned.pk]),
                 {"outcome": "reject"}).status_code == 201


def test_owner_can_retry_and_rebox_their_own(appraiser, sku) -> None:
    failed = _request(appraiser, sku, status=MatchRequest.Status.FAILED)
    client = logged_in(appraiser)
    assert client.post(reverse("matching:retry", args=[failed.pk])).status_code == 302
    failed.refresh_from_db()
    assert failed.status == MatchRequest.Status.QUEUED
    done = _request(appraiser, sku)
    response = client.post(reverse("matching:correct_box", args=[done.pk, 0]),
                           {"x0": 1, "y0": 1, "x1": 50, "y1": 50})
    assert response.status_code == 302
    assert done.photos.get().box_source == QueryPhoto.BoxSource.CORRECTED


def test_a_decision_is_undone_by_its_owner_only_and_listed_in_their_history_only(
    owned, appraiser, other_appraiser
) -> None:
    DecisionFactory(request=owned, decided_by=appraiser)
    stranger = logged_in(other_appraiser)
    assert stranger.post(reverse("matching:undo", args=[owned.pk])).status_code == 404
    refused = stranger.post(reverse("api:match-decision-undo", args=[owned.pk]))
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found"
    assert Decision.objects.filter(request=owned).exists()
    page = stranger.get(reverse("matching:history")).content.decode()
    assert f'data-item="{owned.pk}"' not in page
    assert stranger.get(reverse("api:match-history")).json()["count"] == 0
    owner = logged_in(appraiser)
    assert f'data-item="{owned.pk}"' in owner.get(reverse("matching:history")).content.decode()
    assert owner.post(reverse("api:match-decision-undo", args=[owned.pk])).status_code == 200
    assert not Decision.objects.filter(request=owned).exists()


def test_home_lists_only_own_requests(owned, other_appraiser, appraiser, sku) -> None:
    mine = _request(other_appraiser, sku)
    body = logged_in(other_appraiser).get(reverse("matching:home")).content.decode()
    assert reverse("matching:detail", args=[mine.pk]) in body
    assert reverse("matching:detail", args=[owned.pk]) not in body


@pytest.mark.parametrize("role", [Role.QA, Role.CATALOGUE_ADMIN])
def test_overseers_see_every_photo(owned, role, qa_user, catalogue_admin) -> None:
    user = qa_user if role == Role.QA else catalogue_admin
    client = logged_in(user)
    for field in ("original", "image", "mask"):
        assert client.get(_media(getattr(owned.photos.get(), field))).status_code == 200


def test_qa_crop_of_any_appraisers_case(owned, qa_user) -> None:
    case = BadCaseFactory(decision__request=owned)
    assert logged_in(qa_user).get(reverse("review:crop", args=[case.pk, 0])).status_code == 200


def test_reference_images_are_visible_to_every_role(
    sku, appraiser, qa_user, catalogue_admin, no_role_user
) -> None:
    url = _media(sku.images.get().image)
    for user in (appraiser, qa_user, catalogue_admin):
        assert logged_in(user).get(url).status_code == 200
    assert logged_in(no_role_user).get(url).status_code == 404
    anonymous = Client().get(url)
    assert anonymous.status_code in (302, 401)


def test_history_gallery_references_are_served_and_other_history_files_are_not(
    sku, appraiser
) -> None:
    gallery = default_storage.save("history/1/gallery/h1-0.jpg", _jpeg_file())
    original = default_storage.save("history/1/original/h1-0.jpg", _jpeg_file())
    SKUImageFactory(sku=sku, image=gallery, position=1)
    client = logged_in(appraiser)
    assert client.get("/media/" + gallery).status_code == 200  # a candidate's reference
    assert client.get("/media/" + original).status_code == 404  # the listing's own file


def _jpeg_file() -> ContentFile:
    buffer = BytesIO()
    Image.new("RGB", (16, 16), "navy").save(buffer, "JPEG")
    return ContentFile(buffer.getvalue())


@pytest.mark.parametrize("path", [
    "/media/../settings.py", "/media/%2e%2e/%2e%2e/etc/passwd", "/media//etc/passwd",
    "/media/uploads/original/", "/media/", "/media/catalog/../uploads/x.jpg",
    "/media/test-db.sqlite3", "/media/uploads/original/2020/01/m1-0.jpg",
])
def test_guessed_and_traversing_paths_are_404(path, owned, appraiser) -> None:
    assert logged_in(appraiser).get(path).status_code == 404


@pytest.mark.parametrize("mode,header", [("x-accel-redirect", "X-Accel-Redirect"),
                                         ("x-sendfile", "X-Sendfile")])
def test_web_server_mode_answers_with_a_header_not_the_bytes(
    owned, appraiser, settings, mode, header
) -> None:
    settings.MEDIA_SERVER = mode
    photo = owned.photos.get()
    response = logged_in(appraiser).get(_media(photo.image))
    assert response.status_code == 200
    assert response.content == b""
    assert photo.image.name in response[header]
    if mode == "x-accel-redirect":
        assert response[header].startswith(settings.MEDIA_ACCEL_PREFIX)
