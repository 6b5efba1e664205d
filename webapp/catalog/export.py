"""Catalogue export: catalogue.csv and every reference image in one zip, in the very format
that webapp.catalog.bulk imports, so an export can be edited and imported again."""

from __future__ import annotations

import io
import logging
import re
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO

from webapp.catalog.bundles import CSV_NAME
from webapp.catalog.importing import CatalogueRow, safe_relative_path, write_catalogue_csv
from webapp.catalog.models import SKU, SKUImage

logger = logging.getLogger(__name__)


def _export_path(sku: SKU, image: SKUImage, used: set[str]) -> str:
    name = image.original_name
    if name and safe_relative_path(name) and name != CSV_NAME and name not in used:
        return name
    code = re.sub(r"[^A-Za-z0-9._-]+", "_", sku.code)
    assert image.image.name is not None  # the file is required: a saved image has one
    base = PurePosixPath(image.image.name).name
    candidate = f"images/{code}/{image.position:03d}-{base}"
    suffix = 1
    while candidate in used:
        candidate = f"images/{code}/{image.position:03d}-{suffix}-{base}"
        suffix += 1
    return candidate


@dataclass(frozen=True)
class ExportSummary:
    skus: int
    images: int
    missing_files: list[str]


def catalogue_export(*, out: IO[bytes], include_inactive: bool = True) -> ExportSummary:
    """Write catalogue.csv and every reference image into a zip: the import format."""
    skus = SKU.objects.select_related("series__brand__category").prefetch_related("images")
    if not include_inactive:
        skus = skus.filter(is_active=True)
    rows: list[CatalogueRow] = []
    used: set[str] = set()
    missing: list[str] = []
    count = 0
    with zipfile.ZipFile(out, "w") as archive:
        for sku in skus.order_by("code"):
            paths: list[str] = []
            kept: list[SKUImage] = []
            for image in sorted(sku.images.all(), key=lambda i: (i.position, i.id)):
                assert image.image.name is not None  # the file is required: a saved image has one
                try:
                    with image.image.open("rb") as handle:
                        data = handle.read()
                except OSError:
                    missing.append(image.image.name)
                    continue
                path = _export_path(sku, image, used)
                used.add(path)
                # Photos are compressed already: storing them is as small and much faster.
                archive.writestr(path, data, compress_type=zipfile.ZIP_STORED)
                paths.append(path)
                kept.append(image)
                count += 1
            appraisal = frozenset(
                path for path, image in zip(paths, kept, strict=True)
                if image.source == SKUImage.Source.APPRAISAL
            )
            rows.append(CatalogueRow(
                sku_code=sku.code, name=sku.name, category=sku.series.brand.category.name,
                brand=sku.series.brand.name, series=sku.series.name, colour=sku.colour,
                material=sku.material, size=sku.size, images=tuple(paths),
                attributes={k: str(v) for k, v in sku.attributes.items()},
                active=sku.is_active, appraisal_images=appraisal,
            ))
        text = io.StringIO()
        write_catalogue_csv(text, rows)
        archive.writestr(CSV_NAME, text.getvalue().encode("utf-8"),
                         compress_type=zipfile.ZIP_DEFLATED)
    if missing:
        logger.warning("export: %d image files are missing: %s", len(missing), missing[:5])
    return ExportSummary(len(rows), count, missing)
