"""The catalogue admin's pages: browse, create, edit, images, hierarchy, import, duplicates."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from django.urls import reverse

from tests.webapp.conftest import logged_in, upload
from tests.webapp.factories import (
    BrandFactory,
    CatalogueImportFactory,
    DuplicatePairFactory,
    DuplicateScanFactory,
    SKUFactory,
    SKUImageFactory,
)
from webapp.audit.models import AuditEntry
from webapp.catalog.demo import demo_skus, render_reference
from webapp.catalog.models import SKU, Brand, CatalogueImport, Category, SKUImage


def png(code: str, view: int = 0) -> bytes:
    sku = next(s for s in demo_skus() if s.code == code)
    buffer = io.BytesIO()
    render_reference(sku, view).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def admin(catalogue_admin):
    return logged_in(catalogue_admin)


@pytest.fixture
def small(db, demo_folder):
    """Three SKUs, imported but not indexed: enough for pages that need no search."""
    from webapp.catalog.bulk import catalogue_import
    from webapp.catalog.importing import read_catalogue_csv

    rows = list(read_catalogue_csv(demo_folder / "catalogue.csv"))[:3]
    catalogue_import(rows=rows, image_root=demo_folder)
    return SKU.objects.order_by("code")


def test_browse_lists_filters_and_searches(admin, small) -> None:
    page = admin.get(reverse("catalog:home"))
    assert page.status_code == 200
    body = page.content.decode()
    assert "DEMO-MAI-LUN-01" in body and "Hierarchy" in body
    assert 'id="index-status"' in body and "No index built yet" in body
    series = small[0].series
    filtered = admin.get(reverse("catalog:home"), {"series": series.pk}).content.decode()
    assert filtered.count('class="mono" href="/catalog/skus/') == series.skus.count()
    # htmx asks for the table only.
    partial = admin.get(reverse("catalog:home"), {"q": "LUN-02"}, HTTP_HX_REQUEST="true")
    text = partial.content.decode()
    assert "<html" not in text and "DEMO-MAI-LUN-02" in text and "DEMO-MAI-LUN-01" not in text


def test_create_a_sku_with_images_and_a_new_series(admin) -> None:
    response = admin.post(
        reverse("catalog:sku_create"),
        {
            "code": "NEW-001", "name": "Velluto Arco Red", "category": "Handbags",
            "brand": "Velluto", "series": "Arco", "colour": "red", "material": "calfskin",
            "size": "M", "attributes": "hardware: gold\npattern: solid",
            "images": [upload("front.png", png("DEMO-VEL-ARC-01"), "image/png"),
                       upload("side.png", png("DEMO-VEL-ARC-01", 1), "image/png")],
        },
    )
    sku = SKU.objects.get(code="NEW-001")
    assert response.status_code == 302 and response["Location"].endswith(f"/skus/{sku.pk}/")
    assert sku.attributes == {"hardware": "gold", "pattern": "solid"}
    assert [i.original_name for i in sku.images.order_by("position")] == ["front.png", "side.png"]
    assert all(len(i.checksum) == 64 for i in sku.images.all())
    assert Category.objects.filter(name="Handbags").exists()
    actions = set(AuditEntry.objects.filter(sku=sku).values_list("action", flat=True))
    assert actions == {"sku.create", "image.add"}
    detail = admin.get(response["Location"]).content.decode()
    assert "Velluto Arco Red" in detail
    assert detail.count('alt="reference image') == 2


def test_create_refuses_a_bad_image_and_writes_nothing(admin) -> None:
    response = admin.post(
        reverse("catalog:sku_create"),
        {"code": "BAD-1", "name": "x", "category": "c", "brand": "b", "series": "s",
         "images": [upload("notes.jpg", b"plain text")]},
    )
    assert response.status_code == 422
    assert "notes.jpg: not an image" in response.content.decode()
    assert not SKU.objects.exists() and not Category.objects.exists()


def test_duplicate_code_is_refused(admin, small) -> None:
    response = admin.post(reverse("catalog:sku_create"), {
        "code": small[0].code, "name": "x", "category": "c", "brand": "b", "series": "s"})
    assert response.status_code == 422
    assert "already exists" in response.content.decode()


def test_edit_through_htmx_swaps_the_panel_and_records_history(admin, small) -> None:
    sku = small[0]
    form = admin.get(reverse("catalog:sku_edit", args=[sku.pk]), HTTP_HX_REQUEST="true")
    assert 'id="sku-info"' in form.content.decode() and "<form" in form.content.decode()
    response = admin.post(
        reverse("catalog:sku_edit", args=[sku.pk]),
        {"code": sku.code, "name": "Renamed bag", "category": "Handbags", "brand": "New Brand",
         "series": "New Series", "colour": "green", "material": "", "size": "",
         "attributes": "hardware: silver"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    assert response["HX-Trigger"] == "catalogue-changed"
    assert "Renamed bag" in response.content.decode()
    sku.refresh_from_db()
    assert (sku.name, sku.series.name, sku.series.brand.name) == (
        "Renamed bag", "New Series", "New Brand")
    entry = AuditEntry.objects.get(sku=sku, action="sku.update")
    assert entry.changes["name"][1] == "Renamed bag"
    assert entry.changes["attributes"] == [{"hardware": "gold", "pattern": "quilted"},
                                           {"hardware": "silver"}]
    history = admin.get(reverse("catalog:sku_history", args=[sku.pk])).content.decode()
    assert "sku.update" in history and "Renamed bag" in history


def test_images_upload_reorder_remove(admin, small) -> None:
    sku = small[0]
    url = reverse("catalog:image_upload", args=[sku.pk])
    response = admin.post(url, {"images": [upload("extra.png", png(sku.code, 1), "image/png")]},
                          HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and 'id="images"' in response.content.decode()
    images = list(sku.images.order_by("position"))
    assert len(images) == 3 and images[-1].original_name == "extra.png"

    admin.post(reverse("catalog:image_move", args=[sku.pk, images[-1].pk]), {"direction": "up"},
               HTTP_HX_REQUEST="true")
    order = list(sku.images.order_by("position").values_list("pk", flat=True))
    assert order == [images[0].pk, images[2].pk, images[1].pk]

    removed = images[0]
    admin.post(reverse("catalog:image_remove", args=[sku.pk, removed.pk]), HTTP_HX_REQUEST="true")
    assert list(sku.images.order_by("position").values_list("position", flat=True)) == [0, 1]
    assert not SKUImage.objects.filter(pk=removed.pk).exists()

    bad = admin.post(url, {"images": [upload("x.gif", b"GIF89a....")]}, HTTP_HX_REQUEST="true")
    assert bad.status_code == 422 and "GIF" in bad.content.decode()


def test_deactivate_reactivate_and_merge_pages(admin, small) -> None:
    a, b, c = small
    admin.post(reverse("catalog:sku_active", args=[a.pk]), {"active": "false"})
    a.refresh_from_db()
    assert not a.is_active
    admin.post(reverse("catalog:sku_active", args=[a.pk]), {"active": "true"})
    a.refresh_from_db()
    assert a.is_active
    response = admin.post(reverse("catalog:sku_merge", args=[b.pk]), {"target": c.code})
    assert response["Location"].endswith(f"/skus/{c.pk}/")
    b.refresh_from_db()
    assert not b.is_active and b.merged_into == c and c.images.count() == 4
    page = admin.get(reverse("catalog:sku_detail", args=[b.pk])).content.decode()
    assert "merged into" in page and "Reactivate" not in page
    unknown = admin.post(reverse("catalog:sku_merge", args=[a.pk]), {"target": "NOPE"}, follow=True)
    assert "No SKU has the code NOPE" in unknown.content.decode()


def test_hierarchy_page_renames_and_deletes_only_empty_levels(admin, small) -> None:
    assert admin.get(reverse("catalog:hierarchy")).status_code == 200
    brand = small[0].series.brand
    admin.post(reverse("catalog:hierarchy_rename", args=["brand", brand.pk]), {"name": "Aubert"})
    brand.refresh_from_db()
    assert brand.name == "Aubert"
    page = admin.post(reverse("catalog:hierarchy_delete", args=["brand", brand.pk]), follow=True)
    assert "is not empty" in page.content.decode()
    empty = BrandFactory(category=brand.category, name="Empty")
    admin.post(reverse("catalog:hierarchy_delete", args=["brand", empty.pk]))
    assert not Brand.objects.filter(pk=empty.pk).exists()
    assert AuditEntry.objects.filter(action="brand.delete").exists()


def test_import_page_dry_run_then_apply(admin, demo_folder) -> None:
    csv = (demo_folder / "catalogue.csv").read_text().splitlines()
    text = "\n".join(csv[:3]) + "\n"  # the header and two SKUs
    names = [n for line in csv[1:3] for n in line.split(",")[8].split("|")]
    images = [upload(n.split("/")[-1], (demo_folder / n).read_bytes(), "image/png") for n in names]
    response = admin.post(reverse("catalog:import"), {
        "csv": upload("catalogue.csv", text.encode(), "text/csv"), "images": images})
    record = CatalogueImport.objects.get()
    assert response["Location"].endswith(f"/import/{record.pk}/")
    assert record.status == CatalogueImport.Status.PLANNED and not SKU.objects.exists()
    page = admin.get(response["Location"]).content.decode()
    assert "2 to create" in page and "dry run" in page
    admin.post(reverse("catalog:import_commit", args=[record.pk]))
    record.refresh_from_db()
    assert record.status == CatalogueImport.Status.APPLIED
    assert SKU.objects.count() == 2 and SKUImage.objects.count() == 4
    # A second click is harmless.
    admin.post(reverse("catalog:import_commit", args=[record.pk]))
    assert SKUImage.objects.count() == 4


def test_import_page_reports_a_bad_zip(admin) -> None:
    response = admin.post(reverse("catalog:import"), {"bundle": upload("x.zip", b"nope")})
    assert response.status_code == 422
    assert "not a readable zip" in response.content.decode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "no csv")
    response = admin.post(reverse("catalog:import"),
                          {"bundle": upload("x.zip", buffer.getvalue(), "application/zip")})
    assert "no catalogue.csv" in response.content.decode()


def test_export_downloads_a_zip(admin, small) -> None:
    response = admin.get(reverse("catalog:export"))
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert "catalogue.csv" in archive.namelist() and len(archive.namelist()) == 7


def test_duplicates_and_audit_pages_render(admin, small, catalogue_admin) -> None:
    assert "No open pairs" in admin.get(reverse("catalog:duplicates")).content.decode()
    assert admin.get(reverse("catalog:index_status")).status_code == 200
    page = admin.get(reverse("catalog:audit")).content.decode()
    assert "sku.import_create" in page
    mine = admin.get(reverse("catalog:audit_user", args=[catalogue_admin.pk])).content.decode()
    assert "History of" in mine and "No changes recorded yet" in mine


# ----- objects for the permission matrix (tests/webapp/test_roles.py) ------------------------


def any_sku(code: str = "ROLE-1") -> SKU:
    return SKUFactory(code=code, name=code, series__name="Roles", series__brand__name="Roles",
                      series__brand__category__name="Roles")


def any_image() -> SKUImage:
    sku = any_sku()
    return sku.images.first() or SKUImageFactory(sku=sku, image="catalog/none.png")


def any_pair() -> object:
    a, b = sorted([any_sku("ROLE-1"), any_sku("ROLE-2")], key=lambda s: s.pk)
    return DuplicatePairFactory(sku_a=a, sku_b=b)


def any_import() -> CatalogueImport:
    return CatalogueImport.objects.first() or CatalogueImportFactory(
        bundle="imports/none.zip", report={"rows": []})


def any_scan() -> object:
    from webapp.catalog.models import DuplicateScan

    return DuplicateScan.objects.first() or DuplicateScanFactory()


def test_old_import_uploads_are_pruned_and_applying_one_says_so(admin, demo_folder) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from webapp.catalog.tasks import prune_import_bundles

    csv = (demo_folder / "catalogue.csv").read_text().splitlines()
    names = [n for n in csv[1].split(",")[8].split("|")]
    for _ in range(2):
        admin.post(reverse("catalog:import"), {
            "csv": upload("catalogue.csv", ("\n".join(csv[:2]) + "\n").encode(), "text/csv"),
            "images": [upload(n.split("/")[-1], (demo_folder / n).read_bytes(), "image/png")
                       for n in names]})
    old, recent = CatalogueImport.objects.order_by("pk")
    CatalogueImport.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(days=8))
    old_file = old.bundle.path
    prune_import_bundles()  # the daily beat task, default 7 days
    old.refresh_from_db()
    recent.refresh_from_db()
    assert not old.bundle and not Path(old_file).exists()
    assert old.report and old.status == CatalogueImport.Status.PLANNED  # the record stays
    assert recent.bundle and Path(recent.bundle.path).exists()
    page = admin.post(reverse("catalog:import_commit", args=[old.pk]), follow=True)
    assert "no longer stored" in page.content.decode()
    assert not SKU.objects.exists()


def test_a_heic_reference_image_is_stored_as_jpeg(admin, small) -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    from PIL import Image

    buffer = io.BytesIO()
    try:
        pillow_heif.from_pillow(Image.new("RGB", (96, 64), "teal")).save(buffer, format="HEIF")
    except (ValueError, RuntimeError) as exc:  # pragma: no cover - build without an encoder
        pytest.skip(f"this pillow-heif build cannot encode HEIC: {exc}")
    sku = small[0]
    response = admin.post(
        reverse("catalog:image_upload", args=[sku.pk]),
        {"images": [upload("IMG_0042.HEIC", buffer.getvalue(), "image/heic")]},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    added = sku.images.order_by("position").last()
    assert added.original_name == "IMG_0042.HEIC" and added.image.name.endswith(".jpg")
    with added.image.open("rb") as handle, Image.open(handle) as stored:
        assert stored.format == "JPEG" and stored.size == (96, 64)
