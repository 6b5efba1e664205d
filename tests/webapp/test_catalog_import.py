"""Catalogue import from CSV + images, and the grocery dataset through the same path."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from webapp.catalog.bulk import catalogue_import
from webapp.catalog.importing import read_catalogue_csv
from webapp.catalog.models import SKU, Category, SKUImage

GROCERY = Path(__file__).resolve().parents[3] / "shared" / "data" / "grocery"


def test_demo_csv_imports_and_reimport_is_idempotent(db, demo_folder) -> None:
    call_command("import_catalogue", str(demo_folder / "catalogue.csv"))
    skus, images = SKU.objects.count(), SKUImage.objects.count()
    assert skus == 28 and images == 56
    sku = SKU.objects.get(code="DEMO-MAI-LUN-01")
    assert sku.category.name == "Handbags"
    assert sku.attributes["pattern"] == "quilted"
    assert sku.images.first().source == SKUImage.Source.CATALOGUE

    call_command("import_catalogue", str(demo_folder / "catalogue.csv"))
    assert (SKU.objects.count(), SKUImage.objects.count()) == (skus, images)


def test_a_broken_image_aborts_the_whole_import(db, demo_folder, tmp_path) -> None:
    rows = list(read_catalogue_csv(demo_folder / "catalogue.csv"))[:3]
    (tmp_path / "images").mkdir()
    for row in rows:
        for name in row.images:
            (tmp_path / name).write_bytes((demo_folder / name).read_bytes())
    (tmp_path / rows[1].images[0]).write_bytes(b"not a png")
    report = catalogue_import(rows=rows, image_root=tmp_path)
    assert report.errors and rows[1].sku_code in report.errors[0]
    assert SKU.objects.count() == 0 and Category.objects.count() == 0


def test_missing_required_column_is_a_command_error(db, tmp_path) -> None:
    csv_path = tmp_path / "bad.csv"
    csv_path.write_text("sku_code,name\nA,B\n")
    with pytest.raises(CommandError, match="missing required columns"):
        call_command("import_catalogue", str(csv_path))


@pytest.mark.skipif(not GROCERY.exists(), reason=f"grocery dataset not found at {GROCERY}")
def test_grocery_dataset_imports(db) -> None:
    call_command("import_catalogue", grocery=str(GROCERY))
    assert SKU.objects.count() == 81
    assert SKUImage.objects.count() == 81
    assert Category.objects.count() == 43
    milk = SKU.objects.get(name="Alpro Fresh Soy Milk")
    assert milk.series.brand.name == "Alpro"
    assert milk.category.name == "Soy-Milk"
    assert len(milk.attributes["description"]) > 20
