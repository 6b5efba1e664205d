"""Bad input gets a clear message and leaves nothing behind."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pytest
from django.urls import reverse
from PIL import Image

from tests.webapp.conftest import demo_photo_upload, jpeg_bytes, logged_in, upload
from webapp.matching.models import MatchRequest, QueryPhoto
from webapp.matching.requests import match_request_create
from webapp.matching.validation import PhotoValidationError


def _media_files(settings) -> list[Path]:
    root = Path(settings.MEDIA_ROOT) / "uploads"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims the given size (a decompression bomb's calling card)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    ihdr = struct.pack(">I", len(header)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    idat_data = zlib.compress(b"\x00" * 64)
    idat = struct.pack(">I", len(idat_data)) + b"IDAT" + idat_data
    idat += struct.pack(">I", zlib.crc32(b"IDAT" + idat_data))
    return b"\x89PNG\r\n\x1a\n" + ihdr + idat


GOOD = jpeg_bytes(Image.new("RGB", (64, 48), (200, 10, 10)))

BAD_FILES = {
    "not an image": (b"%PDF-1.7 hello", "not a supported image"),
    "zero bytes": (b"", "empty"),
    "truncated": (GOOD[: len(GOOD) // 2], "truncated"),
    "bomb": (_png_claiming(50_000, 50_000), "too large"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_is_refused_with_a_clear_message_and_nothing_saved(
    case: str, appraiser, settings
) -> None:
    data, expected = BAD_FILES[case]
    with pytest.raises(PhotoValidationError) as info:
        match_request_create(
            user=appraiser, uploads=[upload("ok.jpg", GOOD), upload("photo.jpg", data)]
        )
    message = " ".join(info.value.messages)
    assert expected in message.lower()
    assert "Photo 2" in message
    assert MatchRequest.objects.count() == 0
    assert QueryPhoto.objects.count() == 0
    assert _media_files(settings) == []


def test_wrong_extension_is_judged_by_content(appraiser) -> None:
    png = io.BytesIO()
    Image.new("RGB", (40, 40), "blue").save(png, "PNG")
    request = match_request_create(user=appraiser, uploads=[upload("photo.jpg", png.getvalue())])
    photo = request.photos.get()
    assert photo.original_format == "PNG"
    assert photo.original.name.endswith(".png")

    with pytest.raises(PhotoValidationError, match="not a supported image"):
        match_request_create(user=appraiser, uploads=[upload("photo.png", b"GIF89a" + b"\0" * 50)])


def test_exif_orientation_is_applied(appraiser) -> None:
    image = Image.new("RGB", (80, 40), "green")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    request = match_request_create(
        user=appraiser, uploads=[upload("phone.jpg", jpeg_bytes(image, exif=exif))]
    )
    photo = request.photos.get()
    assert (photo.width, photo.height) == (40, 80)
    with Image.open(photo.image.path) as stored:
        assert stored.size == (40, 80)


def test_heic_from_a_phone_is_accepted(appraiser) -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    buffer = io.BytesIO()
    try:
        pillow_heif.from_pillow(Image.new("RGB", (64, 64), "purple")).save(buffer, format="HEIF")
    except (ValueError, RuntimeError, OSError) as exc:  # encoder not built into this wheel
        pytest.skip(f"this pillow-heif build cannot encode HEIC: {exc}")
    heic = upload("IMG_0001.HEIC", buffer.getvalue())
    request = match_request_create(user=appraiser, uploads=[heic])
    photo = request.photos.get()
    assert photo.original_format == "HEIF"
    assert photo.image.name.endswith(".jpg")


def test_too_many_files(appraiser, settings) -> None:
    settings.MATCH_MAX_PHOTOS = 2
    with pytest.raises(PhotoValidationError, match="at most 2"):
        match_request_create(user=appraiser, uploads=[upload(f"{i}.jpg", GOOD) for i in range(3)])


def test_missing_photos(appraiser) -> None:
    with pytest.raises(PhotoValidationError, match="at least one photo"):
        match_request_create(user=appraiser, uploads=[])


def test_oversized_file(appraiser, settings) -> None:
    settings.UPLOAD_MAX_BYTES = 1000
    with pytest.raises(PhotoValidationError, match="limit"):
        match_request_create(user=appraiser, uploads=[upload("big.jpg", GOOD + b"\0" * 2000)])


def test_page_shows_errors_for_htmx_and_plain_posts(appraiser) -> None:
    client = logged_in(appraiser)
    url = reverse("matching:create")
    response = client.post(url, {"photos": upload("x.jpg", b"hello")}, HTTP_HX_REQUEST="true")
    assert response.status_code == 422
    assert "not a supported image" in response.content.decode()

    response = client.post(url, {}, follow=True)
    assert "Add at least one photo" in response.content.decode()
    assert MatchRequest.objects.count() == 0


def test_huge_body_is_refused_before_parsing(appraiser, settings) -> None:
    settings.UPLOAD_MAX_BYTES = 1000
    settings.MATCH_MAX_PHOTOS = 1
    client = logged_in(appraiser)
    big = GOOD + b"\0" * 2_000_000
    response = client.post(
        reverse("matching:create"), {"photos": upload("big.jpg", big)}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 413
    assert "limit" in response.content.decode()
    response = client.post(reverse("api:match-create"), {"photos": upload("big.jpg", big)})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "upload_too_large"
    assert MatchRequest.objects.count() == 0


def test_too_many_files_over_the_page(appraiser, settings) -> None:
    settings.MATCH_MAX_PHOTOS = 2
    client = logged_in(appraiser)
    files = [upload(f"{i}.jpg", GOOD) for i in range(3)]
    response = client.post(reverse("matching:create"), {"photos": files}, HTTP_HX_REQUEST="true")
    assert response.status_code == 422
    assert "at most 2" in response.content.decode()


def test_full_disk_keeps_nothing(appraiser, monkeypatch, settings) -> None:
    import errno

    from django.core.files.storage import FileSystemStorage

    from webapp.matching.runner import StorageFullError

    real_save = FileSystemStorage._save
    calls = {"n": 0}

    def save_then_fill_up(self, name, content):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, name, content)

    monkeypatch.setattr(FileSystemStorage, "_save", save_then_fill_up)
    uploads = [demo_photo_upload("DEMO-MAI-LUN-01"), demo_photo_upload("DEMO-MAI-LUN-01", 8)]
    with pytest.raises(StorageFullError, match="storage is full"):
        match_request_create(user=appraiser, uploads=uploads)
    assert MatchRequest.objects.count() == 0
    assert _media_files(settings) == []
