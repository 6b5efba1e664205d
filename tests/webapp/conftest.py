"""Fixtures for the Django suite: one user per role, a small real catalogue and index."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image

from tests.webapp.factories import PASSWORD, RoleUserFactory, UserFactory  # noqa: F401 - re-exported
from webapp import ml_gateway
from webapp.accounts.roles import Role
from webapp.catalog.bulk import catalogue_import
from webapp.catalog.demo import (
    demo_detection_classes_set,
    demo_skus,
    render_photo,
    write_demo_catalogue,
)
from webapp.catalog.importing import read_catalogue_csv
from webapp.config.celery import app as celery_app
from webapp.learning.models import IndexVersion
from webapp.learning.services import index_publish


@pytest.fixture(autouse=True)
def _isolated_storage(settings, tmp_path: Path) -> Iterator[None]:
    # Real hashing costs ~2 s a user on this CPU; tests create many users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.INDEX_DIR = tmp_path / "index"
    settings.ISOLATION_CACHE_DIR = tmp_path / "isolations"
    celery_app.conf.task_always_eager = True
    ml_gateway.active_index.forget()
    cache.clear()  # cached reads of rows an earlier test rolled back
    yield
    ml_gateway.active_index.forget()


@pytest.fixture
def appraiser(db) -> User:
    return RoleUserFactory(role=Role.APPRAISER)


@pytest.fixture
def qa_user(db) -> User:
    return RoleUserFactory(role=Role.QA)


@pytest.fixture
def catalogue_admin(db) -> User:
    return RoleUserFactory(role=Role.CATALOGUE_ADMIN)


@pytest.fixture
def no_role_user(db) -> User:
    return UserFactory(username="nobody")


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture(scope="session")
def demo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo")
    write_demo_catalogue(folder, photos_per_sku=1)
    return folder


# A handful of demo lines keeps each test's embedding cost to about a second.
SMALL_CATALOGUE_SERIES = ("Lune", "Mercato", "Summit")


@pytest.fixture
def catalogue(db, demo_folder: Path) -> IndexVersion:
    """Nine demo SKUs from three categories, imported and indexed with the real model."""
    rows = [
        row for row in read_catalogue_csv(demo_folder / "catalogue.csv")
        if row.series in SMALL_CATALOGUE_SERIES
    ]
    rows = rows[:2] + [r for r in rows if r.series == "Mercato"][:2] + [
        r for r in rows if r.series == "Summit"
    ][:2]
    report = catalogue_import(rows=rows, image_root=demo_folder)
    assert not report.errors
    demo_detection_classes_set()
    return index_publish()


def jpeg_bytes(image: Image.Image, **save_kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", **save_kwargs)
    return buffer.getvalue()


def upload(name: str, data: bytes, content_type: str = "image/jpeg") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


def demo_photo_upload(sku_code: str, seed: int = 7) -> SimpleUploadedFile:
    sku = next(s for s in demo_skus() if s.code == sku_code)
    return upload(f"{sku_code}.jpg", jpeg_bytes(render_photo(sku, seed), quality=90))


def api_token(user: User) -> str:
    """A fresh API token (knox) for `user`, as the mobile app gets from /api/v1/auth/token."""
    from knox.models import AuthToken

    return AuthToken.objects.create(user=user)[1]


def api_client(user: User) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
