"""The labelled history page: catalogue admins only; upload, dry run row by row, then apply,
both run by the worker's task on the default queue, with progress on the row."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from tests.webapp.conftest import logged_in
from tests.webapp.factories import HistoryImportFactory
from tests.webapp.history_helpers import HEADER, bundle, nothing_imported, photo
from webapp.catalog.bulk import catalogue_import
from webapp.catalog.importing import read_catalogue_csv
from webapp.history import tasks
from webapp.history.models import HistoryImport
from webapp.matching.models import MatchRequest


@pytest.fixture
def skus(db, demo_folder) -> list[str]:
    rows = list(read_catalogue_csv(demo_folder / "catalogue.csv"))[:2]
    assert not catalogue_import(rows=rows, image_root=demo_folder).errors
    return [r.sku_code for r in rows]


def _zip_upload(data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile("history.zip", data, content_type="application/zip")


def test_only_catalogue_admins_reach_the_pages(skus, appraiser, qa_user, no_role_user,
                                               catalogue_admin, client) -> None:
    record = HistoryImportFactory(status=HistoryImport.Status.PLANNED, report={})
    urls = [reverse("history:import"), reverse("history:detail", args=[record.pk]),
            reverse("history:status", args=[record.pk])]
    for user in (appraiser, qa_user, no_role_user):
        browser = logged_in(user)
        for url in urls:
            assert browser.get(url).status_code == 403
        assert browser.post(reverse("history:import"), {}).status_code == 403
        assert browser.post(reverse("history:apply", args=[record.pk])).status_code == 403
    assert client.get(urls[0]).status_code == 302  # anonymous: to the login page
    assert HistoryImport.objects.get().status == HistoryImport.Status.PLANNED
    admin = logged_in(catalogue_admin)
    for url in urls:
        assert admin.get(url).status_code == 200
    nav = admin.get(reverse("catalog:home")).content.decode()
    assert reverse("history:import") in nav


def test_upload_dry_run_then_apply(skus, catalogue_admin, settings,
                                   django_capture_on_commit_callbacks, monkeypatch) -> None:
    a, b = skus
    isolations: list[int] = []
    # Sent after commit through the sweeper's enqueue (apply_async): capture the import's id.
    monkeypatch.setattr(tasks.isolate_photos, "apply_async",
                        lambda args, **_: isolations.append(*args))
    data = bundle([f"{a},p/1.jpg,L1,2024-02-03", f"{a},p/2.jpg,L1,2024-02-03", f"{b},p/3.jpg,,"],
                  {f"p/{i}.jpg": photo(i) for i in (1, 2, 3)})
    admin = logged_in(catalogue_admin)
    with django_capture_on_commit_callbacks(execute=True):  # the task runs (eagerly)
        response = admin.post(reverse("history:import"), {"bundle": _zip_upload(data)})
    record = HistoryImport.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("history:detail", args=[record.pk])
    assert record.status == HistoryImport.Status.PLANNED
    assert (record.rows_done, record.rows_total) == (3, 3)
    assert nothing_imported(settings)

    page = admin.get(response["Location"]).content.decode()
    assert "This was a dry run: nothing has been written yet." in page
    assert "Import 2 items now" in page
    assert 'id="history-rows"' in page and "p/3.jpg" in page and "JPEG 96×72" in page

    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(reverse("history:apply", args=[record.pk]))
    record.refresh_from_db()
    assert record.status == HistoryImport.Status.APPLIED
    assert record.applied_by == catalogue_admin and record.items_created == 2
    assert MatchRequest.objects.filter(source="history", created_by=catalogue_admin).count() == 2
    assert isolations == [record.pk]
    page = admin.get(reverse("history:detail", args=[record.pk])).content.decode()
    assert "confirmed items" in page and 'id="history-items">2<' in page
    # A second click (or a redelivered task) imports nothing twice.
    with django_capture_on_commit_callbacks(execute=True):
        admin.post(reverse("history:apply", args=[record.pk]))
    assert MatchRequest.objects.count() == 2
    recent = admin.get(reverse("history:import")).content.decode()
    assert "history.zip" in recent and "Imported" in recent


def test_csv_and_loose_photos(skus, catalogue_admin, django_capture_on_commit_callbacks) -> None:
    a, _ = skus
    csv_file = SimpleUploadedFile("mine.csv", f"{HEADER}\n{a},shots/x.jpg,,\n".encode(),
                                  content_type="text/csv")
    photos = [SimpleUploadedFile("x.jpg", photo(5), content_type="image/jpeg")]
    with django_capture_on_commit_callbacks(execute=True):
        logged_in(catalogue_admin).post(reverse("history:import"),
                                        {"csv": csv_file, "photos": photos})
    record = HistoryImport.objects.get()
    assert record.status == HistoryImport.Status.PLANNED, record.report
    assert record.report["counts"]["import"] == 1


def test_a_refused_dry_run_lists_the_reasons_and_cannot_be_applied(
    skus, catalogue_admin, settings, django_capture_on_commit_callbacks
) -> None:
    a, _ = skus
    data = bundle([f"{a},p/1.jpg,,", "GHOST,p/2.jpg,,", f"{a},p/missing.jpg,,"],
                  {"p/1.jpg": photo(1), "p/2.jpg": photo(2)})
    admin = logged_in(catalogue_admin)
    with django_capture_on_commit_callbacks(execute=True):
        admin.post(reverse("history:import"), {"bundle": _zip_upload(data)})
    record = HistoryImport.objects.get()
    assert record.status == HistoryImport.Status.REFUSED
    page = admin.get(reverse("history:detail", args=[record.pk])).content.decode()
    assert "SKU GHOST is not in the catalogue" in page
    assert "photo p/missing.jpg is not in the bundle" in page
    assert 'id="history-apply"' not in page
    rejected = admin.get(reverse("history:detail", args=[record.pk]) + "?show=reject")
    assert rejected.content.decode().count('class="row-reject"') == 2
    response = admin.post(reverse("history:apply", args=[record.pk]), follow=True)
    assert "cannot be applied" in response.content.decode()
    assert nothing_imported(settings)


def test_a_file_that_is_no_history_bundle_is_refused_at_once(skus, catalogue_admin) -> None:
    admin = logged_in(catalogue_admin)
    response = admin.post(reverse("history:import"),
                          {"bundle": _zip_upload(b"certainly not a zip")})
    assert response.status_code == 422
    assert "not a readable zip archive" in response.content.decode()
    no_columns = bundle(["A,b.jpg"], {}, header="code,img")
    response = admin.post(reverse("history:import"), {"bundle": _zip_upload(no_columns)})
    assert response.status_code == 422 and "missing required columns" in response.content.decode()
    good = bundle([f"{skus[0]},p.jpg,,"], {"p.jpg": photo(1)})
    damaged = good.replace(b"sku_code,photo", b"sku_code,phot\xff")  # the CSV's CRC now fails
    response = admin.post(reverse("history:import"), {"bundle": _zip_upload(damaged)})
    assert response.status_code == 422 and "damaged in the zip" in response.content.decode()
    assert admin.post(reverse("history:import"), {}).status_code == 422
    assert HistoryImport.objects.count() == 0


def test_progress_is_polled_from_the_row(skus, catalogue_admin) -> None:
    record = HistoryImportFactory(status=HistoryImport.Status.APPLYING, rows_total=200,
                                  rows_done=50, stage="storing photos")
    admin = logged_in(catalogue_admin)
    url = reverse("history:status", args=[record.pk])
    partial = admin.get(url, {"was": "applying/"}, HTTP_HX_REQUEST="true")
    text = partial.content.decode()
    assert partial.status_code == 200
    assert 'aria-valuenow="25"' in text and "storing photos" in text and "every 1s" in text
    HistoryImport.objects.filter(pk=record.pk).update(status=HistoryImport.Status.APPLIED)
    done = admin.get(url, {"was": "applying/"}, HTTP_HX_REQUEST="true")
    assert done["HX-Redirect"] == reverse("history:detail", args=[record.pk])
