"""Imported history is confirmed labelled data to every reader: training, the gate's hold-out,
the gallery (enrichment policy and cap), and kept out of live work and live statistics."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.urls import reverse

from tests.webapp.conftest import demo_photo_upload, logged_in
from tests.webapp.history_helpers import bundle, photo
from webapp.catalog.bulk import catalogue_import
from webapp.catalog.bundles import open_zip_csv
from webapp.catalog.importing import read_catalogue_csv
from webapp.catalog.models import SKU, SKUImage
from webapp.history.format import parse_history_csv
from webapp.history.isolation import history_isolation_run
from webapp.history.models import HistoryImport
from webapp.history.services import history_import_run
from webapp.learning.dataset import is_holdout, labelled_requests, training_data_export
from webapp.learning.gate import evaluation_sets, gallery_images
from webapp.matching.calibration import thresholds_recalibrate
from webapp.matching.decisions import decision_record
from webapp.matching.models import MatchRequest, QueryPhoto
from webapp.matching.requests import match_request_create
from webapp.matching.runner import match_request_run
from webapp.matching.selectors import recent_requests
from webapp.review import stats


@pytest.fixture
def skus(db, demo_folder) -> list[str]:
    rows = list(read_catalogue_csv(demo_folder / "catalogue.csv"))[:3]
    assert not catalogue_import(rows=rows, image_root=demo_folder).errors
    return [r.sku_code for r in rows]


def _import(lines: list[str], files: dict[str, bytes], actor=None) -> HistoryImport:  # type: ignore[no-untyped-def]
    text, name, source = open_zip_csv(io.BytesIO(bundle(lines, files)), preferred="history.csv")
    plan, record = history_import_run(rows=parse_history_csv(text, name=name), source=source,
                                      actor=actor)
    assert plan.applied, plan.rows
    return record


def _items(codes: list[str], per_sku: int, *, dated: bool = True
           ) -> tuple[list[str], dict[str, bytes]]:
    lines, files = [], {}
    n = 0
    for code in codes:
        for k in range(per_sku):
            n += 1
            when = f"2023-01-{1 + k % 28:02d}" if dated else ""  # undated: the import's time
            lines.append(f"{code},p/{n}.jpg,{code}-{k},{when}")
            files[f"p/{n}.jpg"] = photo(n)
    return lines, files


def test_labelled_requests_train_on_them_and_the_gate_holds_a_share_out(skus) -> None:
    record = _import(*_items(skus, 20))
    known = labelled_requests()
    assert len(known) == 60 and all(not r.from_bad_case for r in known)
    codes = dict(SKU.objects.values_list("pk", "code"))
    by_request = {r.request_id: codes[r.sku_id] for r in known}
    for request in MatchRequest.objects.filter(source="history").select_related("decision__sku"):
        assert by_request[request.pk] == request.decision.sku.code
        assert [p.pk for p in request.photos.order_by("position")] == list(
            next(r.photo_ids for r in known if r.request_id == request.pk))
    holdout, replay = evaluation_sets()
    assert {r.request_id for r in holdout} == {r.request_id for r in known
                                               if is_holdout(r.request_id)}
    assert holdout and len(holdout) + len(replay) == 60
    assert record.items_created == 60


def test_training_export_has_every_photo_but_the_holdout(skus, settings, tmp_path) -> None:
    settings.TRAINING_DIR = tmp_path / "training"
    _import(*_items(skus, 6))
    from django.utils import timezone

    snapshot = training_data_export(folder=tmp_path / "run", until=timezone.now())
    known = labelled_requests()
    trained = [r for r in known if not is_holdout(r.request_id)]
    assert snapshot.photos == sum(len(r.photo_ids) for r in trained)
    assert snapshot.holdout_requests == len(known) - len(trained)
    rows = (tmp_path / "run" / "train.csv").read_text().splitlines()
    assert sum(1 for row in rows if ",photo," in row) == snapshot.photos
    # Not isolated yet: the crop is the whole photo.
    photo_row = next(row for row in rows if ",photo," in row)
    crop = Path(photo_row.split(",")[0])
    from PIL import Image

    with Image.open(crop) as image:
        assert image.size == (96, 72)


def test_gallery_takes_them_by_the_policy_and_the_cap(skus, settings) -> None:
    a, b, c = skus
    settings.GALLERY_MAX_APPRAISAL_IMAGES = 3
    lines = [f"{a},p/1.jpg,L1,", f"{a},p/2.jpg,L1,", f"{a},p/3.jpg,,", f"{a},p/4.jpg,,",
             f"{b},p/5.jpg,,"]
    record = _import(lines, {f"p/{i}.jpg": photo(i) for i in range(1, 6)})
    added = SKUImage.objects.filter(source=SKUImage.Source.APPRAISAL)
    assert record.gallery_added == 4
    assert added.filter(sku__code=a).count() == 3 and added.filter(sku__code=b).count() == 1
    first = MatchRequest.objects.get(decision__note__endswith="listing L1")
    names = set(added.filter(sku__code=a).values_list("original_name", flat=True))
    assert {f"match-{first.pk}-photo-0", f"match-{first.pk}-photo-1"} <= names
    # The gate knows which request each reference came from (and leaves it out for that query).
    gallery = gallery_images()
    origin = dict(zip(gallery.image_ids, gallery.origin, strict=True))
    assert {origin[i.pk] for i in added.filter(original_name__startswith=f"match-{first.pk}-")} \
        == {first.pk}
    # Each reference is a copy: the photo survives removing it from the SKU.
    reference = added.first()
    request_photo = QueryPhoto.objects.get(request_id=int(reference.original_name.split("-")[1]),
                                           position=int(reference.original_name.rsplit("-")[-1]))
    assert reference.image.name != request_photo.image.name

    settings.GALLERY_ENRICHMENT = "none"
    record = _import([f"{c},q/1.jpg,,"], {"q/1.jpg": photo(40)})
    assert record.gallery_added == 0 and not added.filter(sku__code=c).exists()
    settings.GALLERY_ENRICHMENT = "all"
    record = _import([f"{c},q/2.jpg,,"], {"q/2.jpg": photo(41)})
    assert record.gallery_added == 1


def test_the_new_references_reach_the_index_through_the_sync_task(
    skus, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    from webapp.learning import tasks

    synced = []
    monkeypatch.setattr(tasks.sync_index, "delay", lambda: synced.append(True))
    isolated = []
    from webapp.history import tasks as history_tasks

    monkeypatch.setattr(history_tasks.isolate_photos, "apply_async",
                        lambda args, **_: isolated.append(*args))
    from django.db import connection

    connection.run_on_commit.clear()  # the fixture's catalogue import queued a sync of its own
    with django_capture_on_commit_callbacks(execute=True):
        record = _import(*_items(skus[:1], 3))
    assert synced == [True]  # one sync for the whole import, not one per item
    assert isolated == [record.pk]


def test_not_live_work_nor_live_statistics(skus, appraiser, catalogue, settings) -> None:
    """The importer is also an appraiser here: their pages show only their own live matches."""
    live = match_request_create(user=appraiser, uploads=[demo_photo_upload("DEMO-MAI-LUN-01")])
    assert match_request_run(request_id=live.pk)
    live.refresh_from_db()
    decision_record(request=live, user=appraiser, outcome="accept",
                    candidate_id=live.candidates.get(rank=1).pk)
    window = stats.Window.last(30)
    before = (stats.summary(window), stats.acceptance(window).totals(),
              stats.accuracy_by_model_version(window), stats.match_latency(window).count)
    _import(*_items(skus, 4, dated=False), actor=appraiser)  # inside the window
    assert MatchRequest.objects.filter(source="history", created_at__gte=window.start).count()
    assert list(recent_requests(user=appraiser)) == [live]
    after = (stats.summary(window), stats.acceptance(window).totals(),
             stats.accuracy_by_model_version(window), stats.match_latency(window).count)
    assert after == before
    from webapp.review.models import BadCase

    assert BadCase.objects.filter(request__source="history").count() == 0
    thresholds_recalibrate(min_support=1)  # history has no candidates: nothing to fit on
    home = logged_in(appraiser).get(reverse("matching:home")).content.decode()
    history_ids = MatchRequest.objects.filter(source="history").values_list("pk", flat=True)
    assert all(f"/match/{pk}/" not in home for pk in history_ids)


def test_isolation_finds_the_item_box_chunk_by_chunk(skus, settings) -> None:
    settings.DETECTOR_WEIGHTS = ""  # no detector: the full frame, recorded as such
    record = _import(*_items(skus[:1], 5))
    assert record.isolation == HistoryImport.Isolation.QUEUED
    assert history_isolation_run(import_id=record.pk, chunk=2, max_chunks=1)  # more to do
    record.refresh_from_db()
    assert record.isolation == HistoryImport.Isolation.QUEUED and record.photos_isolated == 2
    assert not history_isolation_run(import_id=record.pk, chunk=2)
    record.refresh_from_db()
    assert record.isolation == HistoryImport.Isolation.DONE and record.photos_isolated == 5
    boxes = set(QueryPhoto.objects.values_list("box_source", flat=True))
    assert boxes == {QueryPhoto.BoxSource.FULL_FRAME}
    assert all(p.box == [0, 0, 96, 72] for p in QueryPhoto.objects.all())
    assert not history_isolation_run(import_id=record.pk)  # done: a redelivery does nothing


def test_isolation_with_the_detector_and_grabcut(skus, settings, demo_folder) -> None:
    """The drawn demo photos through the configured detector and GrabCut, as queries are."""
    settings.SEGMENTATION = "grabcut"
    from webapp.catalog.demo import demo_skus, render_photo

    sku = next(s for s in demo_skus() if s.code == skus[0])
    buffer = io.BytesIO()
    render_photo(sku, 77).save(buffer, "JPEG")
    record = _import([f"{skus[0]},x.jpg,,"], {"x.jpg": buffer.getvalue()})
    assert not history_isolation_run(import_id=record.pk)
    stored = QueryPhoto.objects.get()
    assert stored.box_source in (QueryPhoto.BoxSource.DETECTOR, QueryPhoto.BoxSource.FULL_FRAME)
    if stored.box_source == QueryPhoto.BoxSource.DETECTOR:
        assert stored.mask and stored.mask.name.startswith(f"history/{record.pk}/masks/")
