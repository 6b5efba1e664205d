"""Catalogue writes."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from django.core.files import File
from django.db import transaction

from ml.images import ImageDecodeError, load_rgb
from webapp.catalog.importing import CatalogueRow
from webapp.catalog.models import SKU, Brand, Category, Series, SKUImage

logger = logging.getLogger(__name__)


@dataclass
class ImportReport:
    skus_created: int = 0
    skus_updated: int = 0
    images_added: int = 0
    errors: list[str] = field(default_factory=list)


@transaction.atomic
def catalogue_import(*, rows: Iterable[CatalogueRow], image_root: Path) -> ImportReport:
    """Create or update SKUs and attach their images, all or nothing.

    Every image is decoded before anything is written, so a broken file aborts the whole
    import with a message naming it.
    """
    rows = list(rows)
    errors: list[str] = []
    for row in rows:
        for relative in row.images:
            path = image_root / relative
            try:
                load_rgb(path)
            except (ImageDecodeError, OSError) as exc:
                errors.append(f"{row.sku_code}: {relative}: {exc}")
    if errors:
        return ImportReport(errors=errors)

    report = ImportReport()
    for row in rows:
        category, _ = Category.objects.get_or_create(name=row.category)
        brand, _ = Brand.objects.get_or_create(category=category, name=row.brand)
        series, _ = Series.objects.get_or_create(brand=brand, name=row.series)
        sku, created = SKU.objects.update_or_create(
            code=row.sku_code,
            defaults={
                "name": row.name,
                "series": series,
                "colour": row.colour,
                "material": row.material,
                "size": row.size,
                "attributes": row.attributes,
            },
        )
        report.skus_created += int(created)
        report.skus_updated += int(not created)
        existing = set(sku.images.values_list("original_name", flat=True))
        for position, relative in enumerate(row.images):
            if relative in existing:
                continue
            with (image_root / relative).open("rb") as handle:
                image = SKUImage(sku=sku, position=position, original_name=relative)
                image.image.save(Path(relative).name, File(handle), save=True)
            report.images_added += 1
    logger.info("catalogue import: %s", report)
    return report
