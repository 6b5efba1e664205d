"""Upload validation: by content, never by file name. Nothing is stored until all files pass."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFilesSent
from django.http import HttpRequest
from PIL import Image

from ml.images import ImageDecodeError, load_rgb, sniff_format

ACCEPTED_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "HEIF": "heic"}


class UploadedPhoto(Protocol):
    @property
    def name(self) -> str | None: ...

    @property
    def size(self) -> int | None: ...

    def read(self, size: int = -1) -> bytes: ...

    def seek(self, offset: int, whence: int = 0) -> int: ...


class PhotoValidationError(ValueError):
    """Carries one human-readable message per problem."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


@dataclass(frozen=True)
class ValidPhoto:
    name: str
    original: bytes
    original_format: str
    normalised_jpeg: bytes
    width: int
    height: int

    @property
    def extension(self) -> str:
        return ACCEPTED_FORMATS[self.original_format]


def _validate_one(upload: UploadedPhoto, label: str) -> ValidPhoto:
    size = upload.size or 0
    if size > settings.UPLOAD_MAX_BYTES:
        limit_mb = settings.UPLOAD_MAX_BYTES / 1024 / 1024
        raise PhotoValidationError(
            [f"{label}: file is {size / 1024 / 1024:.1f} MB; the limit is {limit_mb:.0f} MB."]
        )
    upload.seek(0)
    data = upload.read(settings.UPLOAD_MAX_BYTES + 1)
    if len(data) > settings.UPLOAD_MAX_BYTES:
        raise PhotoValidationError([f"{label}: file is larger than the upload limit."])
    if not data:
        raise PhotoValidationError([f"{label}: the file is empty."])
    kind = sniff_format(data)
    if kind not in ACCEPTED_FORMATS:
        raise PhotoValidationError(
            [f"{label}: not a supported image. Upload JPEG, PNG, WebP or HEIC photos."]
        )
    try:
        image = load_rgb(data, max_pixels=settings.UPLOAD_MAX_PIXELS)
    except ImageDecodeError as exc:
        raise PhotoValidationError([f"{label}: {exc}"]) from exc
    if max(image.size) > settings.PHOTO_MAX_SIDE:
        # The worker never decodes more than this (a 40 MP photo is ~120 MB as RGB, and
        # isolation works on the whole frame); the original is kept as it came.
        image.thumbnail((settings.PHOTO_MAX_SIDE, settings.PHOTO_MAX_SIDE),
                        Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92)
    return ValidPhoto(
        name=upload.name or label,
        original=data,
        original_format=kind,
        normalised_jpeg=buffer.getvalue(),
        width=image.width,
        height=image.height,
    )


def validate_photos(uploads: Sequence[UploadedPhoto]) -> list[ValidPhoto]:
    if not uploads:
        raise PhotoValidationError(["Add at least one photo."])
    if len(uploads) > settings.MATCH_MAX_PHOTOS:
        raise PhotoValidationError(
            [f"{len(uploads)} photos sent; at most {settings.MATCH_MAX_PHOTOS} per item."]
        )
    valid, errors = [], []
    for position, upload in enumerate(uploads, start=1):
        label = f"Photo {position} ({upload.name})" if upload.name else f"Photo {position}"
        try:
            valid.append(_validate_one(upload, label))
        except PhotoValidationError as exc:
            errors.extend(exc.messages)
    if errors:
        raise PhotoValidationError(errors)
    return valid


class UploadRejected(ValueError):
    """The request as a whole is unacceptable (too big, too many files)."""


def upload_list(request: HttpRequest, field: str = "photos") -> list[UploadedPhoto]:
    """The uploaded photos; bodies over the size limit never get here (UploadLimitMiddleware)."""
    try:
        uploads: list[UploadedPhoto] = list(request.FILES.getlist(field))
    except TooManyFilesSent as exc:
        raise UploadRejected(
            f"Too many files: at most {settings.MATCH_MAX_PHOTOS} photos per item."
        ) from exc
    except RequestDataTooBig as exc:
        raise UploadRejected("The form data is too large.") from exc
    if len(uploads) > settings.MATCH_MAX_PHOTOS:
        raise UploadRejected(
            f"{len(uploads)} photos sent; at most {settings.MATCH_MAX_PHOTOS} per item."
        )
    return uploads
