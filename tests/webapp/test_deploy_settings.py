"""The documented production environment (deploy/production.env): `check --deploy` is clean,
and the security headers are what it promises."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from tests.webapp.conftest import logged_in

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_ENV = ROOT / "deploy" / "production.env"


def production_environment(tmp_path: Path) -> dict[str, str]:
    values = {}
    for line in PRODUCTION_ENV.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    secret = tmp_path / "django_secret_key"
    secret.write_text(secrets.token_urlsafe(50))
    values["DJANGO_SECRET_KEY_FILE"] = str(secret)
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("DJANGO_", "SKULENS_", "DATABASE_", "CELERY_"))}
    return {**base, **values, "SKULENS_VAR_DIR": str(tmp_path / "var")}


def _check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )


@pytest.mark.slow
def test_check_deploy_is_clean_under_the_documented_production_environment(tmp_path) -> None:
    result = _check(production_environment(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.slow
def test_check_deploy_warns_without_it(tmp_path) -> None:
    env = production_environment(tmp_path)
    for name in ("DJANGO_SECURE_SSL_REDIRECT", "DJANGO_SECURE_HSTS_SECONDS",
                 "DJANGO_SECURE_COOKIES"):
        env.pop(name)
    result = _check(env)
    assert result.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stdout + result.stderr, warning


@pytest.mark.django_db
def test_pages_carry_a_content_security_policy(appraiser) -> None:
    response = logged_in(appraiser).get(reverse("matching:home"))
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy.split("style-src-attr")[0]
    assert "onchange=" not in response.content.decode()


@pytest.mark.django_db
def test_https_settings_redirect_and_send_hsts(settings, appraiser) -> None:
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    client = logged_in(appraiser)
    plain = client.get("/match/")
    assert plain.status_code == 301 and plain["Location"].startswith("https://")
    assert Client().get("/healthz").status_code == 200  # load balancers probe over HTTP
    secure = client.get("/match/", HTTP_X_FORWARDED_PROTO="https")
    assert secure.status_code == 200
    assert secure["Strict-Transport-Security"].startswith("max-age=31536000")
