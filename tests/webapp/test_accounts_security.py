"""Login lockout (django-axes) on the form, the token endpoint and bad API tokens; mobile-app
tokens (django-rest-knox): obtain, list, revoke, expiry; token use in the audit history; the
schema and docs behind a login."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from knox.models import AuthToken

from tests.webapp.conftest import PASSWORD, api_token
from tests.webapp.factories import RoleUserFactory
from webapp.accounts.roles import Role
from webapp.audit.models import AuditEntry

pytestmark = pytest.mark.django_db


def _login(client: Client, username: str, password: str):
    return client.post(reverse("login"), {"username": username, "password": password})


def test_form_locks_out_after_repeated_failures_even_for_the_right_password(
    appraiser, settings
) -> None:
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _login(client, appraiser.username, "wrong").status_code == 200  # form again
    locked = _login(client, appraiser.username, "wrong")
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.content.decode()
    assert int(locked["Retry-After"]) > 0
    right = _login(client, appraiser.username, PASSWORD)
    assert right.status_code == 429
    assert "_auth_user_id" not in client.session
    # Another user from the same address is not locked out with them.
    assert _login(Client(), "qa-user", "wrong").status_code == 200


def test_a_success_before_the_limit_resets_the_count(appraiser, settings) -> None:
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        _login(client, appraiser.username, "wrong")
    assert _login(client, appraiser.username, PASSWORD).status_code == 302
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _login(Client(), appraiser.username, "wrong").status_code == 200


def test_lockout_expires_after_the_cool_off(appraiser, settings) -> None:
    from axes.models import AccessAttempt

    for _ in range(settings.AXES_FAILURE_LIMIT):
        _login(Client(), appraiser.username, "wrong")
    assert _login(Client(), appraiser.username, PASSWORD).status_code == 429
    AccessAttempt.objects.update(attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME * 2)
    assert _login(Client(), appraiser.username, PASSWORD).status_code == 302


def _obtain(client: Client, username: str, password: str):
    return client.post(reverse("api:token-obtain"), {"username": username, "password": password},
                       content_type="application/json")


def test_token_obtain_list_use_and_revoke(appraiser) -> None:
    issued = _obtain(Client(), appraiser.username, PASSWORD)
    assert issued.status_code == 201, issued.content
    body = issued.json()
    assert body["token"].startswith(body["token_key"]) and body["expiry"]
    api = Client(HTTP_AUTHORIZATION=f"Token {body['token']}")
    other = _obtain(Client(), appraiser.username, PASSWORD).json()
    listed = api.get(reverse("api:token-list")).json()
    assert {t["token_key"] for t in listed} == {body["token_key"], other["token_key"]}
    assert [t["current"] for t in listed if t["token_key"] == body["token_key"]] == [True]
    # Only the hash is stored.
    assert not AuthToken.objects.filter(digest=body["token"]).exists()

    assert api.delete(reverse("api:token-revoke", args=[other["token_key"]])).status_code == 204
    assert api.delete(reverse("api:token-revoke", args=["current"])).status_code == 204
    gone = api.get(reverse("api:token-list"))
    assert gone.status_code == 401
    assert gone.json()["error"]["code"] == "authentication_failed"
    actions = list(AuditEntry.objects.filter(actor=appraiser).values_list("action", flat=True))
    assert actions.count("token.create") == 2 and actions.count("token.revoke") == 2
    assert "token.use" in actions
    entry = AuditEntry.objects.filter(action="token.use").first()
    assert entry.changes["token"] == body["token_key"] and entry.changes["path"]


def test_token_use_is_audited_once_per_interval(appraiser, settings) -> None:
    api = Client(HTTP_AUTHORIZATION=f"Token {api_token(appraiser)}")
    for _ in range(3):
        assert api.get(reverse("api:category-list")).status_code == 200
    assert AuditEntry.objects.filter(action="token.use").count() == 1


def test_someone_elses_token_cannot_be_listed_or_revoked(appraiser, qa_user) -> None:
    theirs, _ = AuthToken.objects.create(user=qa_user)
    mine = Client(HTTP_AUTHORIZATION=f"Token {api_token(appraiser)}")
    assert theirs.token_key not in str(mine.get(reverse("api:token-list")).json())
    assert mine.delete(reverse("api:token-revoke", args=[theirs.token_key])).status_code == 404
    assert AuthToken.objects.filter(digest=theirs.digest).exists()


def test_expired_token_is_refused(appraiser) -> None:
    token, secret = AuthToken.objects.create(user=appraiser, expiry=timedelta(seconds=-1))
    response = Client(HTTP_AUTHORIZATION=f"Token {secret}").get(reverse("api:category-list"))
    assert response.status_code == 401
    assert not AuthToken.objects.filter(digest=token.digest).exists()


def test_token_use_slides_the_expiry_but_not_past_the_maximum(appraiser, settings) -> None:
    token, secret = AuthToken.objects.create(user=appraiser, expiry=timedelta(hours=1))
    Client(HTTP_AUTHORIZATION=f"Token {secret}").get(reverse("api:category-list"))
    token.refresh_from_db()
    assert token.expiry > timezone.now() + timedelta(hours=2)
    assert token.expiry <= token.created + settings.REST_KNOX["AUTO_REFRESH_MAX_TTL"]


def test_token_endpoint_locks_out_like_the_form(appraiser, settings) -> None:
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        wrong = _obtain(Client(), appraiser.username, "wrong")
        assert wrong.status_code == 401
        assert wrong.json()["error"]["code"] == "authentication_failed"
    _obtain(Client(), appraiser.username, "wrong")
    locked = _obtain(Client(), appraiser.username, PASSWORD)
    assert locked.status_code == 429
    assert locked.json()["error"]["code"] == "locked_out"
    assert not AuthToken.objects.exists()


def test_guessing_tokens_locks_the_address_out_of_token_auth(appraiser, settings) -> None:
    good = api_token(appraiser)
    guesser = Client(HTTP_AUTHORIZATION="Token " + "0" * 64, REMOTE_ADDR="10.9.8.7")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert guesser.get(reverse("api:category-list")).status_code == 401
    assert guesser.get(reverse("api:category-list")).status_code == 429  # the last straw
    same_address = Client(HTTP_AUTHORIZATION=f"Token {good}", REMOTE_ADDR="10.9.8.7")
    locked = same_address.get(reverse("api:category-list"))
    assert locked.status_code == 429
    assert locked.json()["error"]["code"] == "locked_out"
    elsewhere = Client(HTTP_AUTHORIZATION=f"Token {good}", REMOTE_ADDR="10.1.1.1")
    assert elsewhere.get(reverse("api:category-list")).status_code == 200
    # The password login from that address is not locked by the token guessing.
    assert _login(Client(REMOTE_ADDR="10.9.8.7"), appraiser.username, PASSWORD).status_code == 302
    assert AuditEntry.objects.filter(action="token.refused").count() == settings.AXES_FAILURE_LIMIT


def test_forged_forwarded_for_does_not_dodge_the_lockout(appraiser, settings) -> None:
    for i in range(settings.AXES_FAILURE_LIMIT):
        _login(Client(HTTP_X_FORWARDED_FOR=f"203.0.113.{i}"), appraiser.username, "wrong")
    assert _login(Client(HTTP_X_FORWARDED_FOR="203.0.113.99"), appraiser.username,
                  PASSWORD).status_code == 429


def test_behind_a_proxy_the_forwarded_address_counts(appraiser, settings) -> None:
    settings.PROXY_COUNT = 1
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _login(Client(HTTP_X_FORWARDED_FOR="198.51.100.7"), appraiser.username, "wrong")
    assert _login(Client(HTTP_X_FORWARDED_FOR="198.51.100.7"), appraiser.username,
                  PASSWORD).status_code == 429
    assert _login(Client(HTTP_X_FORWARDED_FOR="198.51.100.8"), appraiser.username,
                  PASSWORD).status_code == 302


def test_schema_and_docs_need_a_login_unless_opened(appraiser, settings) -> None:
    schema = Client().get(reverse("api:schema"))
    assert schema.status_code == 401
    assert schema.json()["error"]["code"] == "not_authenticated"
    docs = Client().get(reverse("api:docs"))
    assert docs.status_code == 302 and "/accounts/login/" in docs["Location"]
    token = Client(HTTP_AUTHORIZATION=f"Token {api_token(appraiser)}")
    assert token.get(reverse("api:schema")).status_code == 200
    settings.API_DOCS_PUBLIC = True
    assert Client().get(reverse("api:schema")).status_code == 200
    assert Client().get(reverse("api:docs")).status_code == 200


def test_mobile_app_fetches_its_photos_with_its_token(appraiser, other_appraiser_token) -> None:
    from tests.webapp.hostile import build_world

    world = build_world(appraiser)
    url = "/media/" + world.photo.image.name
    own = Client(HTTP_AUTHORIZATION=f"Token {api_token(appraiser)}").get(url)
    assert own.status_code == 200
    assert Client(HTTP_AUTHORIZATION=f"Token {other_appraiser_token}").get(url).status_code == 404
    assert Client(HTTP_AUTHORIZATION="Token nonsense").get(url).status_code == 404


@pytest.fixture
def other_appraiser_token(db) -> str:
    return api_token(RoleUserFactory(username="other", role=Role.APPRAISER))
