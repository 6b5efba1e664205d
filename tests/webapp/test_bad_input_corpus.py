"""A corpus of bad inputs, sent to the upload form and to the API alike: files, fields, ids,
methods and sizes. Each gets its status and a clear message, and leaves no row and no file."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from PIL import Image

from tests.webapp.conftest import api_token, jpeg_bytes, logged_in
from tests.webapp.factories import CandidateFactory, RoleUserFactory
from tests.webapp.hostile import HUGE, World, build_world
from webapp.accounts.roles import Role
from webapp.matching.models import Decision, MatchRequest, QueryPhoto

pytestmark = pytest.mark.django_db

GOOD = jpeg_bytes(Image.new("RGB", (64, 48), "navy"))


def _png(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", size).save(buffer, "PNG")
    return buffer.getvalue()


def _as(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(buffer, fmt)
    return buffer.getvalue()


def f(name: str, data: bytes, content_type: str = "image/jpeg") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


@dataclass(frozen=True)
class Bad:
    """One bad request. `send(client, url)` makes it; both targets expect a status and text."""

    name: str
    send: Callable[[Client, str], object]
    form: tuple[int, str]
    api: tuple[int, str]


def post(data: dict) -> Callable[[Client, str], object]:
    def send(client: Client, url: str) -> object:
        for value in data.values():  # the same file objects go to both targets
            for item in value if isinstance(value, list) else [value]:
                if hasattr(item, "seek"):
                    item.seek(0)
        return client.post(url, data)

    return send


def raw(body: bytes, content_type: str) -> Callable[[Client, str], object]:
    return lambda client, url: client.generic("POST", url, body, content_type=content_type)


NOT_IMAGE = "not a supported image"
CORRUPT = "truncated or corrupt"
FIELD = "Select a valid choice"  # Django's form wording
API_FIELD = "Some fields are invalid"
UPLOADS = [
    Bad("no photos", post({}), (422, "Add at least one photo"), (400, API_FIELD)),
    Bad("empty file", post({"photos": f("e.jpg", b"")}), (422, "empty"), (400, "empty")),
    Bad("text named .jpg", post({"photos": f("t.jpg", b"hello")}), (422, NOT_IMAGE),
        (400, NOT_IMAGE)),
    Bad("pdf", post({"photos": f("d.jpg", b"%PDF-1.7\n" + b"x" * 100)}), (422, NOT_IMAGE),
        (400, NOT_IMAGE)),
    Bad("gif", post({"photos": f("g.gif", _as("GIF"), "image/gif")}), (422, NOT_IMAGE),
        (400, NOT_IMAGE)),
    Bad("bmp", post({"photos": f("b.bmp", _as("BMP"), "image/bmp")}), (422, NOT_IMAGE),
        (400, NOT_IMAGE)),
    Bad("tiff", post({"photos": f("t.tif", _as("TIFF"), "image/tiff")}), (422, NOT_IMAGE),
        (400, NOT_IMAGE)),
    Bad("svg", post({"photos": f("s.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>",
                                 "image/svg+xml")}), (422, NOT_IMAGE), (400, NOT_IMAGE)),
    Bad("truncated jpeg", post({"photos": f("t.jpg", GOOD[: len(GOOD) // 2])}),
        (422, CORRUPT), (400, CORRUPT)),
    Bad("jpeg header only", post({"photos": f("h.jpg", b"\xff\xd8\xff\xe0" + b"\0" * 20)}),
        (422, CORRUPT), (400, CORRUPT)),
    Bad("corrupt png", post({"photos": f("c.png", _png((8, 8))[:40] + b"junk" * 10,
                                         "image/png")}), (422, CORRUPT), (400, CORRUPT)),
    Bad("heic brand, no image", post({"photos": f("x.heic", b"\0\0\0\x18ftypheic" + b"\0" * 40,
                                                  "image/heic")}),
        (422, "Photo 1"), (400, "Photo 1")),
    Bad("webp brand, no image", post({"photos": f("x.webp", b"RIFF\0\0\0\0WEBPVP8 " + b"\0" * 9,
                                                  "image/webp")}),
        (422, "Photo 1"), (400, "Photo 1")),
    Bad("decompression bomb", post({"photos": f("bomb.png", _png((20000, 20000)), "image/png")}),
        (422, "too large"), (400, "too large")),
    Bad("just over 40 MP", post({"photos": f("big.png", _png((6400, 6400)), "image/png")}),
        (422, "too large"), (400, "too large")),
    Bad("nine photos", post({"photos": [f(f"{i}.jpg", GOOD) for i in range(9)]}),
        (422, "at most 8"), (400, "at most 8")),
    Bad("101 files", post({"photos": [f(f"{i}.jpg", b"x") for i in range(101)]}),
        (422, "Too many files"), (400, "Too many files")),
    Bad("one good, one bad", post({"photos": [f("good.jpg", GOOD), f("bad.jpg", b"nope")]}),
        (422, "Photo 2 (bad.jpg)"), (400, "Photo 2 (bad.jpg)")),
    Bad("traversal file name", post({"photos": f("../../etc/passwd.jpg", b"root:x:0:0")}),
        (422, NOT_IMAGE), (400, NOT_IMAGE)),
    Bad("photos as a text field", post({"photos": "not a file"}),
        (422, "Add at least one photo"), (400, API_FIELD)),
    Bad("category not a number", post({"photos": f("a.jpg", GOOD), "category": "abc"}),
        (422, FIELD), (400, API_FIELD)),
    Bad("category negative", post({"photos": f("a.jpg", GOOD), "category": "-1"}),
        (422, FIELD), (400, API_FIELD)),
    Bad("category huge", post({"photos": f("a.jpg", GOOD), "category": HUGE}),
        (422, FIELD), (400, API_FIELD)),
    Bad("category missing", post({"photos": f("a.jpg", GOOD), "category": "999999"}),
        (422, FIELD), (400, API_FIELD)),
    Bad("brand a list", post({"photos": f("a.jpg", GOOD), "brand": "[]"}),
        (422, FIELD), (400, API_FIELD)),
    Bad("series a NUL", post({"photos": f("a.jpg", GOOD), "series": "\x00"}),
        (422, "series"), (400, API_FIELD)),
    Bad("too many fields", post({**{f"f{i}": "x" for i in range(1001)},
                                 "photos": f("a.jpg", GOOD)}),
        (400, "Too many fields"), (400, "Too many fields")),
    Bad("oversized field", post({"note": "x" * (6 * 1024 * 1024), "photos": f("a.jpg", GOOD)}),
        (422, "too large"), (413, "too large")),
    Bad("json body", raw(b'{"photos": []}', "application/json"),
        (422, "Add at least one photo"), (415, "Unsupported media type")),
    Bad("malformed multipart", raw(b"--x\r\nnonsense", "multipart/form-data; boundary=y"),
        (422, "Add at least one photo"), (400, API_FIELD)),
    Bad("multipart without boundary", raw(b"data", "multipart/form-data"),
        (400, "could not be read"), (400, "boundary")),
    Bad("text/plain body", raw(b"photos=1", "text/plain"),
        (422, "Add at least one photo"), (415, "Unsupported media type")),
    Bad("GET", lambda c, u: c.get(u), (405, ""), (405, "not allowed")),
    Bad("PUT", lambda c, u: c.put(u), (405, ""), (405, "not allowed")),
    Bad("DELETE", lambda c, u: c.delete(u), (405, ""), (405, "not allowed")),
    Bad("PATCH", lambda c, u: c.patch(u), (405, ""), (405, "not allowed")),
]

# Decisions: ids, fields and methods on the decide form and the decision API.
DECISIONS = [
    ("outcome bogus", {"outcome": "bogus"}, (302, "incomplete"), (400, API_FIELD)),
    ("outcome missing", {}, (302, "incomplete"), (400, API_FIELD)),
    ("candidate huge", {"outcome": "accept", "candidate": HUGE, "candidate_rank": HUGE},
     (302, "incomplete"), (400, API_FIELD)),
    ("candidate of another match", {"outcome": "accept", "candidate": "OTHER",
                                    "candidate_rank": "999"},
     (302, "Pick one of this match"), (422, "Pick one of this match")),
    ("sku missing", {"outcome": "other_sku", "sku": "999999", "sku_id": "999999"},
     (302, "existing, active SKU"), (422, "existing, active SKU")),
    ("sku not a number", {"outcome": "other_sku", "sku": "abc", "sku_id": "abc"},
     (302, "incomplete"), (400, API_FIELD)),
    ("note too long", {"outcome": "reject", "note": "n" * 50_000},
     (302, "incomplete"), (400, API_FIELD)),
]


def _uploaded_files() -> set[Path]:
    root = Path(django_settings.MEDIA_ROOT) / "uploads"
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


@pytest.fixture
def world(appraiser) -> World:
    return build_world(appraiser)


@pytest.fixture
def small_limits(settings) -> None:
    settings.UPLOAD_MAX_BYTES = 200 * 1024


def _body(response) -> str:
    content = getattr(response, "content", b"")
    return content.decode(errors="replace")


def _check(target: str, bad: Bad, response, expected: tuple[int, str]) -> list[str]:
    status, text = expected
    problems = []
    if response.status_code != status:
        problems.append(f"{target} {bad.name}: {response.status_code} != {status}: "
                        f"{_body(response)[:300]}")
    body = _body(response)
    if target == "api":
        try:
            error = json.loads(body)["error"]
        except (ValueError, KeyError):
            return [*problems, f"api {bad.name}: not the JSON error shape: {body[:200]}"]
        body = json.dumps(error)
    if text and text.lower() not in body.lower():
        problems.append(f"{target} {bad.name}: {text!r} not in {body[:300]!r}")
    return problems


def test_the_corpus_has_forty_inputs_per_target() -> None:
    assert len(UPLOADS) + len(DECISIONS) >= 40


def test_bad_uploads_on_the_form_and_the_api(appraiser, world) -> None:
    form = logged_in(appraiser)
    api = Client(HTTP_AUTHORIZATION=f"Token {api_token(appraiser)}")
    rows, files = MatchRequest.objects.count(), _uploaded_files()
    problems = []
    for bad in UPLOADS:
        htmx = Client(HTTP_HX_REQUEST="true")
        htmx.force_login(appraiser)
        for target, client, url, expected in (
            ("form", htmx, reverse("matching:create"), bad.form),
            ("api", api, reverse("api:match-create"), bad.api),
        ):
            client.raise_request_exception = False
            response = bad.send(client, url)
            problems += _check(target, bad, response, expected)
            if MatchRequest.objects.count() != rows or _uploaded_files() != files:
                problems.append(f"{target} {bad.name}: left a row or a file behind")
                rows, files = MatchRequest.objects.count(), _uploaded_files()
    assert form.get(reverse("matching:home")).status_code == 200
    assert not problems, "\n".join(problems)


def test_a_photo_over_the_size_limit_is_refused_by_name(appraiser, small_limits) -> None:
    big = f("huge.jpg", GOOD + b"\0" * (300 * 1024))
    htmx = Client(HTTP_HX_REQUEST="true")
    htmx.force_login(appraiser)
    form = htmx.post(reverse("matching:create"), {"photos": big})
    assert form.status_code == 422 and "huge.jpg" in _body(form) and "limit" in _body(form)
    big.seek(0)
    api = Client(HTTP_AUTHORIZATION=f"Token {api_token(appraiser)}")
    response = api.post(reverse("api:match-create"), {"photos": big})
    assert response.status_code == 400 and "limit" in response.json()["error"]["message"]
    # A body over the whole request's limit is refused before it is read.
    body = f("huger.jpg", b"\0" * (3 * 1024 * 1024))
    refused = api.post(reverse("api:match-create"), {"photos": body})
    assert refused.status_code == 413
    assert refused.json()["error"]["code"] == "upload_too_large"
    assert not MatchRequest.objects.exists() and not _uploaded_files()


def test_bad_decisions_on_the_form_and_the_api(appraiser, world) -> None:
    other = MatchRequest.objects.exclude(pk=world.match.pk).first()
    other_photo = QueryPhoto.objects.filter(request=other).first()
    stray = CandidateFactory(request=other, rank=5, sku=world.sku, score=0.5, cosine=0,
                             query_photo=other_photo)
    form = logged_in(appraiser)
    api = Client(HTTP_AUTHORIZATION=f"Token {api_token(appraiser)}")
    problems = []
    for name, data, form_expected, api_expected in DECISIONS:
        data = {k: (str(stray.pk) if v == "OTHER" else v) for k, v in data.items()}
        response = form.post(reverse("matching:decide", args=[world.match.pk]), data,
                             follow=True)
        status, text = form_expected
        if response.redirect_chain[0][1] != status or text not in _body(response):
            problems.append(f"form {name}: {response.redirect_chain} {text!r} missing")
        response = api.post(reverse("api:match-decision", args=[world.match.pk]), data,
                            content_type="application/json")
        problems += _check("api", Bad(name, post({}), form_expected, api_expected), response,
                           api_expected)
    # Ids: nobody else's, nothing that does not exist, nothing malformed.
    stranger = RoleUserFactory(username="stranger", role=Role.APPRAISER)
    for client, url in (
        (logged_in(stranger), reverse("matching:decide", args=[world.match.pk])),
        (Client(HTTP_AUTHORIZATION=f"Token {api_token(stranger)}"),
         reverse("api:match-decision", args=[world.match.pk])),
        (api, reverse("api:match-decision", args=[999_999_999])),
        (api, f"/api/v1/matches/{HUGE}/decision"),
        (api, "/api/v1/matches/-1/decision"),
    ):
        response = client.post(url, {"outcome": "reject"}, content_type="application/json")
        if response.status_code != 404:
            problems.append(f"{url}: {response.status_code} != 404")
    malformed = api.post(reverse("api:match-decision", args=[world.match.pk]), "{oops",
                         content_type="application/json")
    problems += _check("api", Bad("malformed json", post({}), (0, ""), (400, "JSON parse")),
                       malformed, (400, "JSON parse"))
    assert not Decision.objects.filter(request=world.match).exists()
    assert not problems, "\n".join(problems)


def test_an_upload_onto_a_full_disk_keeps_nothing(appraiser, settings, tmp_path) -> None:
    from tests.webapp.faults import small_disk

    with small_disk(tmp_path / "full-media", size="2m") as media:
        settings.MEDIA_ROOT = media
        photo = jpeg_bytes(Image.effect_noise((300, 300), 64).convert("RGB"), quality=95)
        assert len(photo) > 40_000
        # Room for the original, not for the normalised copy: a second write cut short.
        free = os.statvfs(media).f_bavail * os.statvfs(media).f_frsize
        (media / "almost.bin").write_bytes(b"\0" * (free - len(photo) - 16_384))
        api = Client(HTTP_AUTHORIZATION=f"Token {api_token(appraiser)}")
        response = api.post(reverse("api:match-create"), {"photos": f("a.jpg", photo)})
        assert response.status_code == 507
        assert response.json()["error"]["code"] == "storage_full"
        htmx = Client(HTTP_HX_REQUEST="true")
        htmx.force_login(appraiser)
        form = htmx.post(reverse("matching:create"), {"photos": f("a.jpg", photo)})
        assert form.status_code == 422 and "storage is full" in _body(form)
        assert not MatchRequest.objects.exists()
        assert not [p for p in media.rglob("*") if p.is_file() and p.name != "almost.bin"]
