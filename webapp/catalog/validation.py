"""Reference image checks: by content, as for appraisal photos (webapp.matching.validation)."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from django.conf import settings

from ml.images import ImageDecodeError, load_rgb, sniff_format

# Browsers cannot show HEIC, so those are stored as JPEG; the others are kept byte for byte.
STORED_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}


class ReferenceImageError(ValueError):
    """One human-readable message per refused file."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


@dataclass(frozen=True)
class ValidImage:
    name: str  # the name as supplied (a relative path in imports), for idempotent re-imports
    data: bytes  # what is stored
    extension: str
    checksum: str  # sha256 of `data`: the same file imported again is recognised
    width: int
    height: int

    @property
    def stored_name(self) -> str:
        stem = PurePosixPath(self.name).stem[:80] or "image"
        return f"{stem}.{self.extension}"


def image_check(data: bytes, *, name: str) -> ValidImage:
    """Decode `data` fully; raise ReferenceImageError with a message naming the file."""
    if len(data) > settings.UPLOAD_MAX_BYTES:
        limit_mb = settings.UPLOAD_MAX_BYTES // (1024 * 1024)
        raise ReferenceImageError([f"{name}: larger than the {limit_mb} MB limit."])
    kind = sniff_format(data)
    try:
        image = load_rgb(data, max_pixels=settings.UPLOAD_MAX_PIXELS)
    except ImageDecodeError as exc:
        raise ReferenceImageError([f"{name}: {exc}"]) from exc
    if kind in STORED_EXTENSIONS:
        stored, extension = data, STORED_EXTENSIONS[kind]
    else:  # HEIC; JPEG encoding is deterministic, so the checksum is stable across re-imports
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=92)
        stored, extension = buffer.getvalue(), "jpg"
    checksum = hashlib.sha256(stored).hexdigest()
    return ValidImage(name, stored, extension, checksum, image.width, image.height)


def images_check(files: Sequence[tuple[str, bytes]]) -> list[ValidImage]:
    """Check every file; report all the bad ones at once."""
    valid, errors = [], []
    for name, data in files:
        try:
            valid.append(image_check(data, name=name))
        except ReferenceImageError as exc:
            errors.extend(exc.messages)
    if errors:
        raise ReferenceImageError(errors)
    return valid
