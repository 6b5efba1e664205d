"""Bulk import and export: the dry run row by row, all or nothing, and the round trip."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from webapp.catalog.bulk import Action, catalogue_import, import_apply
from webapp.catalog.bundles import open_folder_bundle, open_zip_bundle
from webapp.catalog.export import catalogue_export
from webapp.catalog.importing import read_catalogue_csv
from webapp.catalog.models import SKU, Brand, Category, Series, SKUImage
from webapp.catalog.services import sku_images_add, sku_set_active
from webapp.catalog.validation import image_check

HEADER = ("sku_code,name,category,brand,series,colour,material,size,images,active,"
          "attr:hardware,attr:pattern")


@pytest.fixture
def imported(db, demo_folder):
    """Four demo SKUs (eight images), imported from the demo folder."""
    rows = list(read_catalogue_csv(demo_folder / "catalogue.csv"))[:4]
    assert not catalogue_import(rows=rows, image_root=demo_folder).errors
    return rows


def _zip(csv_text: str, files: dict[str, bytes]) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("catalogue.csv", csv_text)
        for name, data in files.items():
            archive.writestr(name, data)
    buffer.seek(0)
    return buffer


def snapshot() -> list[tuple]:
    """Everything a round trip must keep: fields, hierarchy, state, images in order."""
    return [
        (s.code, s.name, s.series.brand.category.name, s.series.brand.name, s.series.name,
         s.colour, s.material, s.size, s.attributes, s.is_active,
         [(i.checksum, i.source) for i in s.images.order_by("position", "id")])
        for s in SKU.objects.select_related("series__brand__category").order_by("code")
    ]


def test_dry_run_reports_each_row_and_writes_nothing(imported, demo_folder) -> None:
    first, second = imported[0], imported[1]
    png = (demo_folder / first.images[0]).read_bytes()
    csv_text = "\n".join([
        HEADER,
        # unchanged: same values, same image path
        f"{first.sku_code},{first.name},{first.category},{first.brand},{first.series},"
        f"{first.colour},{first.material},{first.size},{first.images[0]},,"
        f"{first.attributes['hardware']},{first.attributes['pattern']}",
        # changed: new colour, deactivated, one new image
        f"{second.sku_code},{second.name},{second.category},{second.brand},{second.series},"
        f"teal,{second.material},{second.size},new/extra.png,false,silver,",
        # created, with a new series
        "NEW-1,New bag,Handbags,Maison Aubert,Étoile,red,,,new/extra.png,,,",
        # rejected: missing name, and an image not in the bundle
        "NEW-2,,Handbags,Maison Aubert,Lune,,,,,,,",
        "NEW-3,Other,Handbags,Maison Aubert,Lune,,,,missing.png,,,",
        # rejected: the same code twice, and a path escaping the bundle
        "NEW-1,Again,Handbags,Maison Aubert,Lune,,,,,,,",
        "NEW-4,Evil,Handbags,Maison Aubert,Lune,,,,../../etc/passwd,,,",
    ]) + "\n"
    before = snapshot()
    bundle = open_zip_bundle(_zip(csv_text, {"new/extra.png": png[:-1] + b"\x00",
                                             first.images[0]: png}))
    plan = import_apply(bundle=bundle, actor=None, dry_run=True)

    assert [r.action for r in plan.rows] == [
        Action.UNCHANGED, Action.UPDATE, Action.CREATE, Action.REJECT, Action.REJECT,
        Action.REJECT, Action.REJECT]
    unchanged, update, create, no_name, missing, twice, evil = plan.rows
    assert unchanged.changes == {} and unchanged.images_kept == 1
    assert update.changes["colour"] == [second.colour, "teal"]
    # Attribute columns replace the SKU's attributes: an empty cell removes that key.
    assert update.changes["attributes"] == [second.attributes, {"hardware": "silver"}]
    assert update.changes["active"] == [True, False]
    assert update.images_added == ["new/extra.png"] and update.images_kept == 0
    assert create.new_hierarchy == ["series Étoile"]
    assert no_name.reasons == ["name is empty"]
    assert missing.reasons == ["image missing.png is not in the bundle"]
    assert twice.reasons == ["sku_code NEW-1 is already on line 4"]
    assert "must be relative" in evil.reasons[0]
    assert not plan.ok and plan.counts == {"create": 1, "update": 1, "unchanged": 1, "reject": 4}
    assert snapshot() == before

    # The real import refuses as a whole while any row is rejected.
    refused = import_apply(bundle=bundle, actor=None)
    assert not refused.applied and snapshot() == before
    assert not Series.objects.filter(name="Étoile").exists()


def test_a_corrupt_image_is_a_rejected_row(imported, demo_folder) -> None:
    first = imported[0]
    csv_text = (f"{HEADER}\n{first.sku_code},{first.name},{first.category},{first.brand},"
                f"{first.series},,,,broken.png,,,\n")
    plan = import_apply(bundle=open_zip_bundle(_zip(csv_text, {"broken.png": b"\x89PNG\r\n"})),
                        actor=None, dry_run=True)
    assert plan.rows[0].action == Action.REJECT
    assert "broken.png" in plan.rows[0].reasons[0]


def test_applied_import_creates_and_changes_everything_at_once(imported, demo_folder) -> None:
    second = imported[1]
    png = (demo_folder / second.images[0]).read_bytes()
    csv_text = (f"{HEADER}\n"
                f"{second.sku_code},{second.name},{second.category},{second.brand},"
                f"{second.series},teal,,,a/extra.png,false,silver,\n"
                "NEW-1,New bag,Shoes,Brand X,Line Y,red,,,b/x.png|b/x.png,,,\n")
    # The same bytes under another name are recognised: one image, not two.
    plan = import_apply(bundle=open_zip_bundle(_zip(csv_text, {
        "a/extra.png": (demo_folder / imported[2].images[0]).read_bytes(), "b/x.png": png})),
        actor=None)
    assert plan.applied
    sku = SKU.objects.get(code=second.sku_code)
    assert (sku.colour, sku.is_active, sku.attributes) == ("teal", False, {"hardware": "silver"})
    assert sku.material == ""  # the column is in the file and empty
    assert sku.images.count() == 3
    new = SKU.objects.get(code="NEW-1")
    assert new.category.name == "Shoes" and new.images.count() == 1
    assert Brand.objects.filter(name="Brand X").exists()


def test_columns_left_out_are_left_alone(imported) -> None:
    first = imported[0]
    csv_text = (f"sku_code,name,category,brand,series\n{first.sku_code},Renamed,"
                f"{first.category},{first.brand},{first.series}\n")
    plan = import_apply(bundle=open_zip_bundle(_zip(csv_text, {})), actor=None)
    assert plan.rows[0].changes == {"name": [first.name, "Renamed"]}
    sku = SKU.objects.get(code=first.sku_code)
    assert sku.colour == first.colour and sku.attributes == first.attributes
    assert sku.images.count() == 2 and sku.is_active


def test_round_trip_leaves_the_catalogue_unchanged(imported, catalogue_admin, tmp_path) -> None:
    # Make the catalogue awkward: an uploaded image whose name clashes, and an inactive SKU.
    first = SKU.objects.order_by("code").first()
    other = SKU.objects.order_by("code").last()
    data = first.images.first().image.read()
    sku_images_add(sku=other, actor=catalogue_admin, source=SKUImage.Source.APPRAISAL,
                   images=[image_check(data, name=first.images.first().original_name)])
    sku_set_active(sku=first, actor=catalogue_admin, active=False)
    before = snapshot()

    out = tmp_path / "catalogue.zip"
    with out.open("wb") as handle:
        summary = catalogue_export(out=handle)
    assert (summary.skus, summary.images, summary.missing_files) == (4, 9, [])

    # Into the same catalogue: every row unchanged, nothing written.
    with out.open("rb") as handle:
        plan = import_apply(bundle=open_zip_bundle(handle), actor=None)
    assert plan.counts["unchanged"] == 4 and plan.images_added == 0
    assert snapshot() == before

    # Into an empty one: the same catalogue again, and the same export.
    SKUImage.objects.all().delete()
    SKU.objects.all().delete()
    Series.objects.all().delete()
    Brand.objects.all().delete()
    Category.objects.all().delete()
    with out.open("rb") as handle:
        assert import_apply(bundle=open_zip_bundle(handle), actor=None).applied
    assert snapshot() == before
    again = io.BytesIO()
    catalogue_export(out=again)
    first_csv = zipfile.ZipFile(out).read("catalogue.csv")
    assert zipfile.ZipFile(again).read("catalogue.csv") == first_csv


def test_commands_dry_run_zip_and_export(imported, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out.zip"
    call_command("export_catalogue", str(out))
    assert "exported 4 SKUs and 8 images" in capsys.readouterr().out
    call_command("import_catalogue", str(out), "--dry-run")
    printed = capsys.readouterr().out
    assert "dry run, nothing written: 0 to create, 0 to change, 4 unchanged" in printed

    bad = tmp_path / "bad.csv"
    bad.write_text("sku_code,name,category,brand,series,images\nX,Y,C,B,S,nope.png\n")
    with pytest.raises(CommandError, match="nothing imported"):
        call_command("import_catalogue", str(bad), "--dry-run")
    assert "line 2 X: image nope.png is not in the bundle" in capsys.readouterr().err


def test_folder_bundle_reads_only_inside_its_root(imported, demo_folder, tmp_path) -> None:
    csv_path = tmp_path / "c.csv"
    csv_path.write_text("sku_code,name,category,brand,series,images\n"
                        f"Z,Z,C,B,S,{demo_folder.name}/catalogue.csv\n")
    plan = import_apply(bundle=open_folder_bundle(csv_path), actor=None, dry_run=True)
    assert plan.rows[0].action == Action.REJECT  # ../ is refused by the parser, and
    assert "is not in the bundle" in plan.rows[0].reasons[0]  # nothing outside is read
