"""Every page and endpoint against every role, anonymous included."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from tests.webapp.conftest import logged_in
from tests.webapp.factories import MatchRequestFactory, RoleUserFactory
from tests.webapp.test_catalog_pages import any_image, any_import, any_pair, any_scan, any_sku
from webapp.accounts.roles import Role
from webapp.matching.models import MatchRequest

ROLES = ["anonymous", "no_role", Role.APPRAISER, Role.QA, Role.CATALOGUE_ADMIN]

# (name, method, url builder, roles allowed)
ADMIN = {Role.CATALOGUE_ADMIN}
ANY_ROLE = {Role.APPRAISER, Role.QA, Role.CATALOGUE_ADMIN}
PAGES = [
    ("matching:home", "get", lambda m: reverse("matching:home"), {Role.APPRAISER}),
    ("matching:create", "post", lambda m: reverse("matching:create"), {Role.APPRAISER}),
    ("matching:detail", "get", lambda m: reverse("matching:detail", args=[m.pk]), {Role.APPRAISER}),
    ("matching:decide", "post", lambda m: reverse("matching:decide", args=[m.pk]),
     {Role.APPRAISER}),
    ("matching:retry", "post", lambda m: reverse("matching:retry", args=[m.pk]), {Role.APPRAISER}),
    ("matching:correct_box", "post",
     lambda m: reverse("matching:correct_box", args=[m.pk, 0]), {Role.APPRAISER}),
    ("matching:sku_lookup", "get", lambda m: reverse("matching:sku_lookup") + "?q=a",
     {Role.APPRAISER, Role.QA, Role.CATALOGUE_ADMIN}),
    # The appraiser's tools (issue 12).
    ("matching:undo", "post", lambda m: reverse("matching:undo", args=[m.pk]), {Role.APPRAISER}),
    ("matching:crop", "get", lambda m: reverse("matching:crop", args=[m.pk, 0]),
     {Role.APPRAISER}),
    ("matching:history", "get", lambda m: reverse("matching:history"), {Role.APPRAISER}),
    ("review:queue", "get", lambda m: reverse("review:queue"), {Role.QA}),
    # QA review, statistics and the learning loop (issue 5). Ids that do not exist give the
    # allowed roles a 404, never a 403.
    ("review:bulk", "post", lambda m: reverse("review:bulk"), {Role.QA}),
    ("review:sku_lookup", "get", lambda m: reverse("review:sku_lookup") + "?q=a", {Role.QA}),
    ("review:detail", "get", lambda m: reverse("review:detail", args=[999999]), {Role.QA}),
    ("review:resolve", "post", lambda m: reverse("review:resolve", args=[999999]), {Role.QA}),
    ("review:reopen", "post", lambda m: reverse("review:reopen", args=[999999]), {Role.QA}),
    ("review:crop", "get", lambda m: reverse("review:crop", args=[999999, 0]), {Role.QA}),
    ("review:gaps", "get", lambda m: reverse("review:gaps"), {Role.QA, Role.CATALOGUE_ADMIN}),
    ("review:gap_close", "post", lambda m: reverse("review:gap_close", args=[999999]),
     {Role.CATALOGUE_ADMIN}),
    ("review:stats", "get", lambda m: reverse("review:stats"), {Role.QA, Role.CATALOGUE_ADMIN}),
    ("review:plot", "get", lambda m: reverse("review:plot", args=["causes"]),
     {Role.QA, Role.CATALOGUE_ADMIN}),
    ("learning:home", "get", lambda m: reverse("learning:home"), {Role.CATALOGUE_ADMIN}),
    ("learning:run_create", "post", lambda m: reverse("learning:run_create"),
     {Role.CATALOGUE_ADMIN}),
    ("learning:run", "get", lambda m: reverse("learning:run", args=[999999]),
     {Role.CATALOGUE_ADMIN}),
    ("learning:run_cancel", "post", lambda m: reverse("learning:run_cancel", args=[999999]),
     {Role.CATALOGUE_ADMIN}),
    ("learning:model", "get", lambda m: reverse("learning:model", args=[999999]),
     {Role.CATALOGUE_ADMIN}),
    ("learning:model_activate", "post",
     lambda m: reverse("learning:model_activate", args=[999999]), {Role.CATALOGUE_ADMIN}),
    ("catalog:home", "get", lambda m: reverse("catalog:home"), {Role.CATALOGUE_ADMIN}),
    # The catalogue admin's pages (issue 6).
    ("catalog:index_status", "get", lambda m: reverse("catalog:index_status"), ADMIN),
    ("catalog:hierarchy", "get", lambda m: reverse("catalog:hierarchy"), ADMIN),
    ("catalog:hierarchy_rename", "post", lambda m: reverse(
        "catalog:hierarchy_rename", args=["series", any_sku().series_id]), ADMIN),
    ("catalog:hierarchy_delete", "post", lambda m: reverse(
        "catalog:hierarchy_delete", args=["series", any_sku().series_id]), ADMIN),
    ("catalog:sku_create", "get", lambda m: reverse("catalog:sku_create"), ADMIN),
    ("catalog:sku_create:post", "post", lambda m: reverse("catalog:sku_create"), ADMIN),
    ("catalog:sku_detail", "get", lambda m: reverse("catalog:sku_detail", args=[any_sku().pk]),
     ADMIN),
    ("catalog:sku_edit", "get", lambda m: reverse("catalog:sku_edit", args=[any_sku().pk]),
     ADMIN),
    ("catalog:sku_edit:post", "post", lambda m: reverse("catalog:sku_edit", args=[any_sku().pk]),
     ADMIN),
    ("catalog:sku_active", "post", lambda m: reverse("catalog:sku_active", args=[any_sku().pk]),
     ADMIN),
    ("catalog:sku_merge", "post", lambda m: reverse("catalog:sku_merge", args=[any_sku().pk]),
     ADMIN),
    ("catalog:sku_history", "get",
     lambda m: reverse("catalog:sku_history", args=[any_sku().pk]), ADMIN),
    ("catalog:image_upload", "post",
     lambda m: reverse("catalog:image_upload", args=[any_sku().pk]), ADMIN),
    ("catalog:image_move", "post", lambda m: reverse(
        "catalog:image_move", args=[any_image().sku_id, any_image().pk]), ADMIN),
    ("catalog:image_remove", "post", lambda m: reverse(
        "catalog:image_remove", args=[any_image().sku_id, any_image().pk]), ADMIN),
    ("catalog:import", "get", lambda m: reverse("catalog:import"), ADMIN),
    ("catalog:import:post", "post", lambda m: reverse("catalog:import"), ADMIN),
    ("catalog:import_detail", "get",
     lambda m: reverse("catalog:import_detail", args=[any_import().pk]), ADMIN),
    ("catalog:import_commit", "post",
     lambda m: reverse("catalog:import_commit", args=[any_import().pk]), ADMIN),
    ("catalog:export", "get", lambda m: reverse("catalog:export"), ADMIN),
    ("catalog:duplicates", "get", lambda m: reverse("catalog:duplicates"), ADMIN),
    ("catalog:duplicate_scan", "post", lambda m: reverse("catalog:duplicate_scan"), ADMIN),
    ("catalog:duplicate_scan_status", "get",
     lambda m: reverse("catalog:duplicate_scan_status", args=[any_scan().pk]), ADMIN),
    ("catalog:duplicate_distinct", "post",
     lambda m: reverse("catalog:duplicate_distinct", args=[any_pair().pk]), ADMIN),
    ("catalog:duplicate_merge", "post",
     lambda m: reverse("catalog:duplicate_merge", args=[any_pair().pk]), ADMIN),
    ("catalog:audit", "get", lambda m: reverse("catalog:audit"), ADMIN),
    ("catalog:audit_user", "get", lambda m: reverse("catalog:audit_user", args=[m.created_by_id]),
     ADMIN),
    ("admin:index", "get", lambda m: reverse("admin:index"), {Role.CATALOGUE_ADMIN}),
]
API = [
    ("api:match-create", "post", lambda m: reverse("api:match-create"), {Role.APPRAISER}),
    ("api:match-detail", "get", lambda m: reverse("api:match-detail", args=[m.pk]),
     {Role.APPRAISER}),
    ("api:match-decision", "post", lambda m: reverse("api:match-decision", args=[m.pk]),
     {Role.APPRAISER}),
    ("api:match-decision-undo", "post",
     lambda m: reverse("api:match-decision-undo", args=[m.pk]), {Role.APPRAISER}),
    ("api:match-history", "get", lambda m: reverse("api:match-history"), {Role.APPRAISER}),
    ("api:sku-list", "get", lambda m: reverse("api:sku-list"),
     {Role.APPRAISER, Role.QA, Role.CATALOGUE_ADMIN}),
    # The catalogue API (issue 6): reads for every role, writes for catalogue admins.
    ("api:category-list", "get", lambda m: reverse("api:category-list"), ANY_ROLE),
    ("api:brand-list", "get", lambda m: reverse("api:brand-list"), ANY_ROLE),
    ("api:series-list", "get", lambda m: reverse("api:series-list"), ANY_ROLE),
    ("api:sku-detail", "get", lambda m: reverse("api:sku-detail", args=[any_sku().pk]), ANY_ROLE),
    ("api:sku-create", "post", lambda m: reverse("api:sku-create"), ADMIN),
    ("api:sku-update", "post", lambda m: reverse("api:sku-update", args=[any_sku().pk]), ADMIN),
    ("api:sku-merge", "post", lambda m: reverse("api:sku-merge", args=[any_sku().pk]), ADMIN),
    ("api:sku-history", "get", lambda m: reverse("api:sku-history", args=[any_sku().pk]), ADMIN),
    ("api:sku-image-add", "post", lambda m: reverse("api:sku-image-add", args=[any_sku().pk]),
     ADMIN),
    ("api:sku-image-delete", "delete", lambda m: reverse(
        "api:sku-image-delete", args=[any_image().sku_id, any_image().pk]), ADMIN),
    ("api:index-status", "get", lambda m: reverse("api:index-status"), ADMIN),
]


@pytest.fixture
def clients(appraiser, qa_user, catalogue_admin, no_role_user) -> dict[object, Client]:
    return {
        "anonymous": Client(),
        "no_role": logged_in(no_role_user),
        Role.APPRAISER: logged_in(appraiser),
        Role.QA: logged_in(qa_user),
        Role.CATALOGUE_ADMIN: logged_in(catalogue_admin),
    }


@pytest.fixture
def match(appraiser) -> MatchRequest:
    return MatchRequestFactory(created_by=appraiser, status=MatchRequest.Status.FAILED)


@pytest.mark.parametrize("name,method,url,allowed", PAGES, ids=[p[0] for p in PAGES])
def test_page_permissions(clients, match, name, method, url, allowed) -> None:
    for role, client in clients.items():
        response = getattr(client, method)(url(match))
        if role == "anonymous":
            assert response.status_code == 302, (name, role)
            assert "/accounts/login/" in response["Location"], (name, role)
        elif role in allowed:
            assert response.status_code not in (401, 403), (name, role, response.status_code)
        else:
            assert response.status_code in (403, 302), (name, role, response.status_code)
            if response.status_code == 302:  # the Django admin sends outsiders to its login
                assert name.startswith("admin:"), (name, role)


@pytest.mark.parametrize("name,method,url,allowed", API, ids=[p[0] for p in API])
def test_api_permissions(clients, match, name, method, url, allowed) -> None:
    for role, client in clients.items():
        response = getattr(client, method)(url(match))
        if role == "anonymous":
            assert response.status_code in (401, 403), (name, role)
            assert response.json()["error"]["code"] in ("not_authenticated", "permission_denied")
        elif role in allowed:
            assert response.status_code not in (401, 403), (name, role, response.status_code)
        else:
            assert response.status_code == 403, (name, role, response.status_code)
            assert response.json()["error"]["code"] == "permission_denied"


@pytest.mark.parametrize(
    "role,home",
    [(Role.APPRAISER, "/match/"), (Role.QA, "/review/"), (Role.CATALOGUE_ADMIN, "/catalog/")],
)
def test_each_role_lands_on_its_home(clients, role, home) -> None:
    response = clients[role].get("/")
    assert response.status_code == 302
    assert response["Location"] == home


def test_user_without_role_gets_403_home(clients) -> None:
    assert clients["no_role"].get("/").status_code == 403


def test_login_page_is_public() -> None:
    response = Client().get(reverse("login"))
    assert response.status_code == 200
    assert b"Log in" in response.content


# The owner / non-owner dimension: entries above that concern one match request. Another
# appraiser (allowed by role) gets a 404 for them, exactly as for an id that does not exist;
# tests/webapp/test_ownership.py covers re-box (it needs a photo), media, crops and the
# overseers' view.
OWNED = {"matching:detail", "matching:decide", "matching:retry", "api:match-detail",
         "api:match-decision"}


@pytest.mark.parametrize("name,method,url,allowed",
                         [e for e in PAGES + API if e[0] in OWNED],
                         ids=[e[0] for e in PAGES + API if e[0] in OWNED])
def test_owned_entries_are_404_for_a_non_owner(match, name, method, url, allowed) -> None:
    stranger = RoleUserFactory(username="stranger", role=Role.APPRAISER)
    owner_client = logged_in(match.created_by)
    stranger_client = logged_in(stranger)
    assert getattr(stranger_client, method)(url(match)).status_code == 404, name
    assert getattr(owner_client, method)(url(match)).status_code not in (403, 404), name
