"""Where an import's CSV and images come from: a folder, a zip, or uploaded files.

Nothing is ever extracted to disk: members are read one at a time with a size cap, so a
hostile zip can neither write outside its folder nor exhaust memory.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Protocol

from django.conf import settings

from webapp.catalog.importing import (
    CatalogueFormatError,
    ParsedCatalogue,
    decode_csv,
    parse_catalogue_csv,
)
from webapp.catalog.validation import ReferenceImageError

CSV_NAME = "catalogue.csv"
MAX_CSV_BYTES = 50 * 1024 * 1024
# What reading a member of a corrupt zip raises (bad headers, CRC, truncated deflate streams).
DAMAGED_ZIP = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError)


class ImageSource(Protocol):
    def read(self, relative: str) -> bytes | None:
        """The file's bytes, None when it is not there; ReferenceImageError when too large."""
        ...


def _too_large(relative: str) -> ReferenceImageError:
    limit_mb = settings.UPLOAD_MAX_BYTES // (1024 * 1024)
    return ReferenceImageError([f"{relative}: larger than the {limit_mb} MB limit."])


class FolderSource:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def read(self, relative: str) -> bytes | None:
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            return None
        if path.stat().st_size > settings.UPLOAD_MAX_BYTES:
            raise _too_large(relative)
        return path.read_bytes()


class ZipSource:
    """Members by exact path under `prefix`, else by file name when that is unambiguous."""

    def __init__(self, archive: zipfile.ZipFile, prefix: str = "") -> None:
        self.archive = archive
        self.prefix = prefix
        files = [info for info in archive.infolist() if not info.is_dir()]
        self._by_path = {info.filename: info for info in files}
        by_name: dict[str, list[zipfile.ZipInfo]] = defaultdict(list)
        for info in files:
            by_name[PurePosixPath(info.filename).name].append(info)
        self._by_name = {name: infos[0] for name, infos in by_name.items() if len(infos) == 1}

    def read(self, relative: str) -> bytes | None:
        info = self._by_path.get(self.prefix + relative) or self._by_name.get(
            PurePosixPath(relative).name
        )
        if info is None:
            return None
        limit = settings.UPLOAD_MAX_BYTES
        if info.file_size > limit:
            raise _too_large(relative)
        try:
            with self.archive.open(info) as handle:
                data = handle.read(limit + 1)  # the header's size may lie
        except DAMAGED_ZIP as exc:
            raise ReferenceImageError([f"{relative}: damaged in the zip ({exc})"]) from exc
        if len(data) > limit:
            raise _too_large(relative)
        return data


@dataclass
class Bundle:
    """A parsed CSV and where its images are."""

    catalogue: ParsedCatalogue
    source: ImageSource


def _find_csv(archive: zipfile.ZipFile, preferred: str = CSV_NAME) -> str:
    names = [n for n in archive.namelist() if not n.endswith("/")]
    if preferred in names:
        return preferred
    at_root = [n for n in names if "/" not in n and n.lower().endswith(".csv")]
    if len(at_root) == 1:
        return at_root[0]
    # A zip made by compressing a folder holds everything under that folder's name.
    nested = [n for n in names if n.count("/") == 1 and n.lower().endswith(".csv")]
    named = [n for n in nested if n.endswith("/" + preferred)]
    if len(named) == 1 or len(nested) == 1:
        return (named or nested)[0]
    raise CatalogueFormatError(f"the zip has no {preferred} at its root")


def open_zip_csv(handle: IO[bytes], *, preferred: str = CSV_NAME) -> tuple[str, str, ZipSource]:
    """(CSV text, its name in the zip, the zip's files) of a zip holding a CSV at its root
    (or in its one folder) and the files the CSV names. Raises CatalogueFormatError."""
    try:
        archive = zipfile.ZipFile(handle)
    except (zipfile.BadZipFile, OSError) as exc:
        raise CatalogueFormatError("the file is not a readable zip archive") from exc
    csv_name = _find_csv(archive, preferred)
    info = archive.getinfo(csv_name)
    if info.file_size > MAX_CSV_BYTES:
        raise CatalogueFormatError(f"{csv_name} is larger than {MAX_CSV_BYTES // 2**20} MB")
    try:
        with archive.open(info) as member:
            data = member.read(MAX_CSV_BYTES + 1)
    except DAMAGED_ZIP as exc:
        raise CatalogueFormatError(f"{csv_name} is damaged in the zip ({exc})") from exc
    text = decode_csv(data, name=csv_name)
    prefix = csv_name.rsplit("/", 1)[0] + "/" if "/" in csv_name else ""
    return text, csv_name, ZipSource(archive, prefix)


def open_zip_bundle(handle: IO[bytes]) -> Bundle:
    """Open a zip holding a CSV at its root (or in its one folder) and the images."""
    text, csv_name, source = open_zip_csv(handle)
    return Bundle(parse_catalogue_csv(text, name=csv_name), source)


def open_folder_bundle(csv_path: Path, image_root: Path | None = None) -> Bundle:
    text = decode_csv(csv_path.read_bytes(), name=csv_path.name)
    return Bundle(
        parse_catalogue_csv(text, name=csv_path.name),
        FolderSource(image_root or csv_path.parent),
    )


def zip_from_uploads(
    *, csv_data: bytes, images: Sequence[tuple[str, bytes]], csv_name: str = CSV_NAME
) -> bytes:
    """Pack a CSV and loose image files into the one bundle format (images by file name)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(csv_name, csv_data, compress_type=zipfile.ZIP_DEFLATED)
        for name, data in images:
            archive.writestr(f"images/{PurePosixPath(name).name}", data)
    return buffer.getvalue()
