"""Building history bundles for the tests: a CSV and photos, as a zip or a folder."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from PIL import Image

from tests.webapp.conftest import jpeg_bytes
from webapp.catalog.models import SKUImage
from webapp.history.models import HistoryPhoto
from webapp.matching.models import Decision, MatchRequest, QueryPhoto

HEADER = "sku_code,photo,listing,matched_at"


def photo(index: int, size: tuple[int, int] = (96, 72)) -> bytes:
    """A small JPEG, different for every index (so each has its own checksum)."""
    colour = ((index * 37) % 256, (index * 91) % 256, (index * 53) % 256)
    image = Image.new("RGB", size, colour)
    image.putpixel((index % size[0], 0), (255 - colour[0], 0, 0))
    return jpeg_bytes(image, quality=90)


def bundle(lines: list[str], files: dict[str, bytes], csv_name: str = "history.csv",
           header: str = HEADER) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(csv_name, "\n".join([header, *lines]) + "\n")
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def folder(root: Path, lines: list[str], files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    csv_path = root / "history.csv"
    csv_path.write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
    return csv_path


def media_files(settings) -> list[Path]:  # type: ignore[no-untyped-def]
    """Every file under the media root that is not a catalogue image of the fixtures."""
    root = Path(settings.MEDIA_ROOT)
    catalogue = {Path(n).as_posix() for n in SKUImage.objects.filter(
        source=SKUImage.Source.CATALOGUE).values_list("image", flat=True)}
    return [p for p in root.rglob("*") if p.is_file()
            and p.relative_to(root).as_posix() not in catalogue
            and not p.relative_to(root).as_posix().startswith("imports/")]


def nothing_imported(settings) -> bool:  # type: ignore[no-untyped-def]
    return (
        MatchRequest.objects.count() == 0 and QueryPhoto.objects.count() == 0
        and Decision.objects.count() == 0 and HistoryPhoto.objects.count() == 0
        and not SKUImage.objects.filter(source=SKUImage.Source.APPRAISAL).exists()
        and media_files(settings) == []
    )
