"""Every page and endpoint against every role, anonymous included."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from tests.webapp.conftest import logged_in
from webapp.accounts.roles import Role
from webapp.matching.models import MatchRequest

ROLES = ["anonymous", "no_role", Role.APPRAISER, Role.QA, Role.CATALOGUE_ADMIN]

# (name, method, url builder, roles allowed)
PAGES = [
    ("matching:home", "get", lambda m: reverse("matching:home"), {Role.APPRAISER}),
    ("matching:create", "post", lambda m: reverse("matching:create"), {Role.APPRAISER}),
    ("matching:detail", "get", lambda m: reverse("matching:detail", args=[m.pk]), {Role.APPRAISER}),
    ("matching:decide", "post", lambda m: reverse("matching:decide", args=[m.pk]), {Role.APPRAISER}),
    ("matching:retry", "post", lambda m: reverse("matching:retry", args=[m.pk]), {Role.APPRAISER}),
    ("matching:sku_lookup", "get", lambda m: reverse("matching:sku_lookup") + "?q=a",
     {Role.APPRAISER, Role.QA, Role.CATALOGUE_ADMIN}),
    ("review:queue", "get", lambda m: reverse("review:queue"), {Role.QA}),
    ("catalog:home", "get", lambda m: reverse("catalog:home"), {Role.CATALOGUE_ADMIN}),
    ("admin:index", "get", lambda m: reverse("admin:index"), {Role.CATALOGUE_ADMIN}),
]
API = [
    ("api:match-create", "post", lambda m: reverse("api:match-create"), {Role.APPRAISER}),
    ("api:match-detail", "get", lambda m: reverse("api:match-detail", args=[m.pk]),
     {Role.APPRAISER}),
    ("api:match-decision", "post", lambda m: reverse("api:match-decision", args=[m.pk]),
     {Role.APPRAISER}),
    ("api:sku-list", "get", lambda m: reverse("api:sku-list"),
     {Role.APPRAISER, Role.QA, Role.CATALOGUE_ADMIN}),
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
    return MatchRequest.objects.create(created_by=appraiser, status=MatchRequest.Status.FAILED)


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
