"""Labelled history import: validation row by row, the dry run, all or nothing, re-imports,
the audit record, the command line and the Grocery Store Dataset's train split."""

from __future__ import annotations

import errno
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.files.storage import FileSystemStorage
from django.core.management import CommandError, call_command
from PIL import Image

from tests.webapp.conftest import jpeg_bytes
from tests.webapp.factories import HistoryImportFactory
from tests.webapp.history_helpers import bundle, folder, media_files, nothing_imported, photo
from webapp.audit.models import AuditEntry
from webapp.catalog.bulk import catalogue_import
from webapp.catalog.bundles import FolderSource, open_zip_csv
from webapp.catalog.importing import CatalogueFormatError, read_catalogue_csv
from webapp.catalog.models import SKU
from webapp.history import services
from webapp.history.format import parse_history_csv
from webapp.history.models import HistoryImport, HistoryPhoto
from webapp.history.planning import Action
from webapp.history.services import history_import_execute, history_import_run
from webapp.matching.models import Decision, MatchRequest, QueryPhoto
from webapp.review.models import BadCase

GROCERY = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "grocery"


@pytest.fixture
def skus(db, demo_folder) -> list[str]:
    """Three demo SKUs (no index: importing history needs none); returns their codes."""
    rows = list(read_catalogue_csv(demo_folder / "catalogue.csv"))[:3]
    assert not catalogue_import(rows=rows, image_root=demo_folder).errors
    return [r.sku_code for r in rows]


def _run(data: bytes, *, actor=None, dry_run: bool = False):  # type: ignore[no-untyped-def]
    text, name, source = open_zip_csv(io.BytesIO(data), preferred="history.csv")
    return history_import_run(rows=parse_history_csv(text, name=name), source=source,
                              actor=actor, dry_run=dry_run)


def test_dry_run_reports_every_row_and_writes_nothing(skus, settings) -> None:
    a, b, _ = skus
    data = bundle(
        [f"{a},p/1.jpg,L1,2023-04-01", f"{a},p/2.jpg,L1,2023-04-01", f"{b},p/3.jpg,,",
         f"{b},p/4.jpg,,"],
        {"p/1.jpg": photo(1), "p/2.jpg": photo(2), "p/3.jpg": photo(3), "p/4.jpg": photo(3)},
    )
    plan, record = _run(data, dry_run=True)
    assert record is None
    assert plan.ok
    assert [(r.line, r.action, r.item) for r in plan.rows] == [
        (2, Action.IMPORT, 1), (3, Action.IMPORT, 1), (4, Action.IMPORT, 2), (5, Action.SKIP, 0)]
    assert plan.rows[3].detail == "the same photo as line 4"
    assert plan.rows[0].detail == "JPEG 96×72"
    assert plan.items == 2 and plan.gallery == 3
    assert HistoryImport.objects.count() == 0
    assert nothing_imported(settings)


def _reasons(plan) -> dict[int, str]:  # type: ignore[no-untyped-def]
    return {r.line: " | ".join(r.reasons) for r in plan.rows if r.action == Action.REJECT}


def test_every_kind_of_bad_row_is_rejected_with_its_reason(skus, settings) -> None:
    a, b, c = skus
    SKU.objects.filter(code=c).update(is_active=False, merged_into=SKU.objects.get(code=a))
    settings.UPLOAD_MAX_BYTES = 20_000
    settings.UPLOAD_MAX_PIXELS = 200 * 200
    settings.MATCH_MAX_PHOTOS = 2
    big_pixels = jpeg_bytes(Image.new("RGB", (300, 300), "white"))
    huge_file = photo(9) + b"\0" * 30_000
    good = photo(10)
    lines = [
        ",p/1.jpg,,",                       # 2 empty sku_code
        f"{a},,",                           # 3 empty photo
        f"{a},../../etc/passwd,,",           # 4 outside the bundle
        "NOPE-1,p/1.jpg,,",                 # 5 unknown SKU
        f"{c},p/2.jpg,,",                    # 6 inactive (merged) SKU
        f"{a},p/missing.jpg,,",              # 7 not in the bundle
        f"{a},p/text.jpg,,",                 # 8 not an image
        f"{a},p/truncated.jpg,,",            # 9 truncated JPEG
        f"{a},p/huge.jpg,,",                 # 10 over the byte limit
        f"{a},p/pixels.jpg,,",               # 11 over the pixel limit
        f"{a},p/3.jpg,L1,",                  # 12 listing L1 ...
        f"{b},p/4.jpg,L1,",                  # 13 ... names another SKU
        f"{a},p/5.jpg,L2,",                  # 14 listing L2 has three photos
        f"{a},p/6.jpg,L2,",                  # 15
        f"{a},p/7.jpg,L2,",                  # 16
        f"{a},p/8.jpg,,yesterday",           # 17 not a date
        f"{a},p/8.jpg,,2999-01-01",          # 18 in the future (and path repeated)
        f"{a},p/9.jpg,L3,2023-01-01",        # 19 listing L3 dates differ
        f"{a},p/10.jpg,L3,2023-02-01",       # 20
        f"{a},p/11.jpg,L4,",                 # 21 fine itself, but ...
        f"{a},p/text.jpg,L4,",               # 22 ... repeats line 8's path
        f"{b},{'x' * 501}.jpg,,",            # 23 path too long
    ]
    files = {f"p/{i}.jpg": photo(i) for i in range(1, 12)}
    files |= {"p/text.jpg": b"%PDF-1.7 not a photo", "p/truncated.jpg": good[: len(good) // 2],
              "p/huge.jpg": huge_file, "p/pixels.jpg": big_pixels}
    plan, _ = _run(bundle(lines, files), dry_run=True)
    assert not plan.ok
    reasons = _reasons(plan)
    expected = {
        2: "sku_code is empty", 3: "photo is empty", 4: "must be relative to the bundle",
        5: "SKU NOPE-1 is not in the catalogue", 6: f"SKU {c} is inactive; it was merged into {a}",
        7: "photo p/missing.jpg is not in the bundle", 8: "not a supported image",
        9: "truncated", 10: "limit", 11: "too large",
        13: f"listing L1 is {a} on line 12, not {b}", 12: "another photo of listing L1",
        14: "listing L2 has 3 photos; at most 2 per item", 17: "is not a date",
        18: "is in the future", 20: "matched_at differs from line 19",
        19: "another photo of listing L3 is rejected (line 20)",
        22: "photo p/text.jpg is already on line 8", 21: "another photo of listing L4",
        23: "photo is longer than 500 characters",
    }
    for line, text in expected.items():
        assert text in reasons.get(line, ""), (line, reasons.get(line))
    assert set(reasons) == set(range(2, 24))
    assert nothing_imported(settings)


def test_a_header_without_the_required_columns_is_refused_at_once(skus) -> None:
    with pytest.raises(CatalogueFormatError, match="missing required columns"):
        parse_history_csv("sku_code,image\nA,b.jpg\n")
    with pytest.raises(CatalogueFormatError, match="not a readable zip"):
        open_zip_csv(io.BytesIO(b"not a zip"), preferred="history.csv")


def test_heic_png_webp_and_exif_orientation_are_read_like_uploads(skus, settings) -> None:
    a = skus[0]
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    rotated = jpeg_bytes(Image.new("RGB", (80, 40), "green"), exif=exif)
    png, webp = io.BytesIO(), io.BytesIO()
    Image.new("RGB", (50, 50), "blue").save(png, "PNG")
    Image.new("RGB", (50, 50), "red").save(webp, "WEBP")
    files = {"r.jpg": rotated, "p.jpg": png.getvalue(), "w.webp": webp.getvalue()}
    lines = [f"{a},r.jpg,,", f"{a},p.jpg,,", f"{a},w.webp,,"]
    heic = _heic()
    if heic is not None:
        files["h.heic"] = heic
        lines.append(f"{a},h.heic,,")
    plan, record = _run(bundle(lines, files))
    assert plan.ok and record.status == HistoryImport.Status.APPLIED
    photos = {p.original_name: p for p in QueryPhoto.objects.all()}
    assert (photos["r.jpg"].width, photos["r.jpg"].height) == (40, 80)
    assert photos["p.jpg"].original_format == "PNG"
    assert photos["p.jpg"].original.name.endswith(".png")
    assert photos["w.webp"].original_format == "WEBP"
    with Image.open(photos["r.jpg"].image.path) as stored:
        assert stored.size == (40, 80) and stored.format == "JPEG"
    if heic is not None:
        assert photos["h.heic"].original_format == "HEIF"


def _heic() -> bytes | None:
    try:
        import pillow_heif
    except ImportError:
        return None
    buffer = io.BytesIO()
    try:
        pillow_heif.from_pillow(Image.new("RGB", (64, 64), "purple")).save(buffer, format="HEIF")
    except (ValueError, RuntimeError, OSError):
        return None
    return buffer.getvalue()


def test_one_bad_row_fails_the_whole_import_and_leaves_nothing(skus, settings) -> None:
    a, b, _ = skus
    lines = [f"{a},p/{i}.jpg,,2023-05-0{1 + i % 5}" for i in range(1, 8)] + [f"{b},p/bad.jpg,,"]
    files = {f"p/{i}.jpg": photo(i) for i in range(1, 8)} | {"p/bad.jpg": b"GIF89a" + b"\0" * 40}
    plan, record = _run(bundle(lines, files))
    assert record.status == HistoryImport.Status.REFUSED
    assert not plan.ok and plan.counts[Action.REJECT] == 1
    assert _reasons(plan) == {9: "photo p/bad.jpg: not a supported image. Upload JPEG, PNG, "
                                   "WebP or HEIC photos."}
    assert nothing_imported(settings)
    assert not AuditEntry.objects.filter(action="history.import").exists()
    assert HistoryImport.objects.get().report["counts"] == {"import": 7, "skip": 0, "reject": 1}


def test_an_error_while_recording_rolls_back_rows_and_files(skus, settings, monkeypatch) -> None:
    a = skus[0]
    data = bundle([f"{a},p/{i}.jpg,," for i in range(3)], {f"p/{i}.jpg": photo(i)
                                                          for i in range(3)})
    real = services._record

    def record_then_fail(*args, **kwargs):  # type: ignore[no-untyped-def]
        real(*args, **kwargs)
        assert QueryPhoto.objects.count() == 3 and media_files(settings)
        raise RuntimeError("database went away")

    monkeypatch.setattr(services, "_record", record_then_fail)
    with pytest.raises(RuntimeError, match="went away"):
        _run(data)
    assert nothing_imported(settings)


def test_a_full_disk_while_storing_leaves_no_files(skus, settings, monkeypatch) -> None:
    a = skus[0]
    data = bundle([f"{a},p/{i}.jpg,," for i in range(4)], {f"p/{i}.jpg": photo(i)
                                                          for i in range(4)})
    real_save = FileSystemStorage._save
    calls = {"n": 0}

    def save_then_fill_up(self, name, content):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] > 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, name, content)

    monkeypatch.setattr(FileSystemStorage, "_save", save_then_fill_up)
    with pytest.raises(OSError, match="No space"):
        _run(data)
    assert calls["n"] > 5
    assert nothing_imported(settings)
    record = HistoryImport.objects.get()  # the page says what happened
    assert record.status == HistoryImport.Status.FAILED and "No space" in record.error


def test_applied_items_are_confirmed_matches_with_their_photos(skus, catalogue_admin) -> None:
    a, b, _ = skus
    lines = [f"{a},p/1.jpg,L-9,2023-04-01T10:30:00+02:00", f"{a},p/2.jpg,L-9,"
             "2023-04-01T10:30:00+02:00", f"{b},p/3.jpg,,"]
    plan, record = _run(bundle(lines, {f"p/{i}.jpg": photo(i) for i in (1, 2, 3)}),
                        actor=catalogue_admin)
    assert plan.applied and record.status == HistoryImport.Status.APPLIED
    assert (record.items_created, record.photos_created) == (2, 3)
    listing = MatchRequest.objects.get(decision__sku__code=a)
    assert listing.source == MatchRequest.Source.HISTORY
    assert listing.status == MatchRequest.Status.DONE and not listing.candidates.exists()
    assert listing.created_by == catalogue_admin
    assert [p.original_name for p in listing.photos.order_by("position")] == ["p/1.jpg", "p/2.jpg"]
    decision = listing.decision
    assert decision.outcome == Decision.Outcome.OTHER_SKU
    assert decision.decided_by == catalogue_admin
    assert decision.decided_at == datetime(2023, 4, 1, 8, 30, tzinfo=UTC)
    assert listing.created_at == decision.decided_at
    assert "listing L-9" in decision.note
    assert not BadCase.objects.exists()
    origins = HistoryPhoto.objects.filter(request=listing).order_by("line")
    assert [(o.line, o.listing) for o in origins] == [(2, "L-9"), (3, "L-9")]
    # Files live under the import's own folder.
    assert all(p.image.name.startswith(f"history/{record.pk}/") for p in QueryPhoto.objects.all())


def test_without_a_user_the_system_account_decides(skus) -> None:
    a = skus[0]
    _run(bundle([f"{a},p.jpg,,"], {"p.jpg": photo(1)}))
    decider = Decision.objects.get().decided_by
    assert decider.username == services.SYSTEM_USERNAME
    assert not decider.is_active and not decider.has_usable_password()


def test_reimporting_the_same_file_changes_nothing(skus) -> None:
    a, b, _ = skus
    data = bundle([f"{a},p/1.jpg,L1,", f"{a},p/2.jpg,L1,", f"{b},p/3.jpg,,"],
                  {f"p/{i}.jpg": photo(i) for i in (1, 2, 3)})
    first, record = _run(data)
    assert first.applied
    again, second = _run(data)
    assert again.ok and again.counts == {"import": 0, "skip": 3, "reject": 0}
    assert f"already imported (import #{record.pk}, line 2)" == again.rows[0].detail
    assert second.status == HistoryImport.Status.APPLIED and second.items_created == 0
    assert MatchRequest.objects.count() == 2
    # A listing of which some photos came before: refused, so it is never split in two.
    partly = bundle([f"{a},q/1.jpg,L1,", f"{a},q/new.jpg,L1,"],
                    {"q/1.jpg": photo(1), "q/new.jpg": photo(50)})
    plan, _ = _run(partly, dry_run=True)
    assert "was partly imported before" in _reasons(plan)[3]


def test_the_import_is_audited(skus, catalogue_admin) -> None:
    a, b, _ = skus
    _, record = _run(bundle([f"{a},p/1.jpg,,", f"{a},p/2.jpg,,", f"{b},p/3.jpg,,"],
                            {f"p/{i}.jpg": photo(i) for i in (1, 2, 3)}), actor=catalogue_admin)
    entries = AuditEntry.objects.filter(action="history.import", object_id=str(record.pk))
    whole = entries.get(sku=None)
    assert whole.actor == catalogue_admin
    assert whole.changes == {"items": [None, 3], "photos": [None, 3],
                             "reference_images": [None, 3], "skus": [None, 2]}
    per_sku = {e.sku.code: e.changes["photos"][1] for e in entries.exclude(sku=None)}
    assert per_sku == {a: 2, b: 1}


def test_a_dead_workers_import_is_taken_over_and_a_finished_one_left_alone(
    skus, settings, catalogue_admin
) -> None:
    a = skus[0]
    data = bundle([f"{a},p/{i}.jpg,," for i in range(2)], {f"p/{i}.jpg": photo(i)
                                                          for i in range(2)})
    from django.core.files.base import ContentFile
    from django.utils import timezone

    record = HistoryImportFactory(status=HistoryImport.Status.APPLYING,
                                  applied_by=catalogue_admin, heartbeat_at=timezone.now(),
                                  bundle=ContentFile(data, name="h.zip"))
    # What the dead worker had written before it died:
    leftover = Path(settings.MEDIA_ROOT) / f"history/{record.pk}/photos/h{record.pk}-2.jpg"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half")
    assert not history_import_execute(import_id=record.pk)  # still fresh: someone holds it
    HistoryImport.objects.filter(pk=record.pk).update(
        heartbeat_at=timezone.now() - services.STALE_AFTER * 2)
    assert history_import_execute(import_id=record.pk)
    record.refresh_from_db()
    assert record.status == HistoryImport.Status.APPLIED and record.attempts == 1
    assert QueryPhoto.objects.count() == 2
    assert not record.bundle  # stored photos are kept; the upload goes
    stored = {Path(p.image.name).name for p in QueryPhoto.objects.all()}
    assert stored == {f"h{record.pk}-2.jpg", f"h{record.pk}-3.jpg"}  # no "_abc123" renames
    assert not history_import_execute(import_id=record.pk)  # a redelivered message
    assert QueryPhoto.objects.count() == 2


def test_command_dry_run_prints_each_row_and_writes_nothing(skus, tmp_path, settings) -> None:
    a, b, _ = skus
    csv_path = folder(tmp_path / "h", [f"{a},1.jpg,,", f"{b},2.jpg,,"],
                      {"1.jpg": photo(1), "2.jpg": photo(2)})
    out = io.StringIO()
    call_command("import_history", str(csv_path), "--dry-run", stdout=out, stderr=io.StringIO())
    text = out.getvalue()
    assert f"line 2 {a} 1.jpg: import (item 1, JPEG 96×72, + reference image)" in text
    assert "dry run, nothing written: 2 items from 2 photos" in text
    assert nothing_imported(settings)
    assert HistoryImport.objects.count() == 0


def test_command_imports_a_zip_and_refuses_bad_rows(skus, tmp_path, settings) -> None:
    a = skus[0]
    good = tmp_path / "good.zip"
    good.write_bytes(bundle([f"{a},1.jpg,,"], {"1.jpg": photo(1)}))
    out = io.StringIO()
    call_command("import_history", str(good), stdout=out, stderr=io.StringIO())
    assert "imported: 1 items" in out.getvalue()
    assert MatchRequest.objects.filter(source="history").count() == 1
    bad = tmp_path / "bad.zip"
    bad.write_bytes(bundle([f"{a},2.jpg,,", "NOPE,3.jpg,,"], {"2.jpg": photo(2),
                                                               "3.jpg": photo(3)}))
    err = io.StringIO()
    with pytest.raises(CommandError, match="nothing imported"):
        call_command("import_history", str(bad), stdout=io.StringIO(), stderr=err)
    assert "line 3 NOPE 3.jpg: SKU NOPE is not in the catalogue" in err.getvalue()
    assert MatchRequest.objects.count() == 1
    with pytest.raises(CommandError, match="no user"):
        call_command("import_history", str(good), "--user", "ghost")


# ----- the Grocery Store Dataset ------------------------------------------------------------

needs_grocery = pytest.mark.skipif(
    not (GROCERY / "train.txt").exists(),
    reason=f"the Grocery Store Dataset is not at {GROCERY} (the workspace's shared data, "
    "never in the repository)",
)


@needs_grocery
def test_grocery_history_reads_the_train_split_only() -> None:
    from webapp.history.format import grocery_history_rows

    rows = grocery_history_rows(GROCERY.resolve())
    assert len(rows) == sum(1 for line in (GROCERY / "train.txt").read_text().splitlines()
                            if line.strip())
    assert all(r.photo.startswith("train/") for r in rows)
    assert not any(r.listing for r in rows)  # one grocery photo, one item
    subset = grocery_history_rows(GROCERY.resolve(), products={0, 1}, per_product=2)
    assert [r.sku_code for r in subset] == ["GROCERY-000"] * 2 + ["GROCERY-001"] * 2


@needs_grocery
def test_grocery_import_against_the_grocery_catalogue(db, settings) -> None:
    from webapp.catalog.bulk import catalogue_import_rows
    from webapp.catalog.importing import grocery_rows
    from webapp.history.format import grocery_history_rows

    root = GROCERY.resolve()
    products = [r for r in grocery_rows(root)][:3]
    assert not catalogue_import_rows(rows=products, source=FolderSource(root),
                                     actor=None).errors
    ids = {int(r.attributes["dataset_class_id"]) for r in products}
    rows = grocery_history_rows(root, products=ids, per_product=2)
    plan, record = history_import_run(rows=rows, source=FolderSource(root), actor=None,
                                      origin="grocery")
    assert plan.applied and record.items_created == 6 and record.photos_created == 6
    assert set(Decision.objects.values_list("sku__code", flat=True)) == {
        r.sku_code for r in products}
    # Without the catalogue, the rows say what to do.
    missing = grocery_history_rows(root, per_product=1)
    plan, _ = history_import_run(rows=missing, source=FolderSource(root), actor=None,
                                 dry_run=True)
    assert "import the catalogue first" in " ".join(
        reason for r in plan.rows for reason in r.reasons)


def test_grocery_command_says_when_the_folder_is_not_the_dataset(db, tmp_path) -> None:
    with pytest.raises(CommandError, match="train.txt not found"):
        call_command("import_history", "--grocery", str(tmp_path))


def test_a_photo_damaged_in_the_zip_is_a_rejected_row(skus, settings) -> None:
    a = skus[0]
    good, broken = photo(1), photo(2)
    data = bundle([f"{a},p/1.jpg,,", f"{a},p/2.jpg,,"], {"p/1.jpg": good, "p/2.jpg": broken})
    middle = broken[len(broken) // 2: len(broken) // 2 + 8]
    damaged = data.replace(middle, bytes(b ^ 0xFF for b in middle))  # stored: the CRC fails
    plan, record = _run(damaged)
    assert record.status == HistoryImport.Status.REFUSED
    assert "photo p/2.jpg: damaged in the zip" in _reasons(plan)[3]
    assert nothing_imported(settings)


def test_the_sweeper_resends_a_lost_or_orphaned_import_once_it_is_due(
    skus, settings, catalogue_admin, monkeypatch
) -> None:
    from django.utils import timezone

    from webapp import sweeper

    sent: list[tuple[str, tuple]] = []
    monkeypatch.setattr(sweeper, "enqueue_now",
                        lambda task, *args: sent.append((task.name, args)) or True)
    now = timezone.now()
    fresh = HistoryImportFactory(status=HistoryImport.Status.QUEUED)
    lost = HistoryImportFactory(status=HistoryImport.Status.APPLY_QUEUED)
    orphan = HistoryImportFactory(
        status=HistoryImport.Status.APPLYING, heartbeat_at=now - services.STALE_AFTER * 2)
    working = HistoryImportFactory(status=HistoryImport.Status.PLANNING, heartbeat_at=now)
    isolating = HistoryImportFactory(
        status=HistoryImport.Status.APPLIED, isolation=HistoryImport.Isolation.RUNNING,
        isolation_heartbeat_at=now - services.STALE_AFTER * 2)
    old = now - timedelta(seconds=settings.REQUEUE_AFTER_S + 60)
    HistoryImport.objects.filter(pk__in=[lost.pk, orphan.pk, working.pk, isolating.pk]).update(
        created_at=old)
    report = sweeper.stuck_work_sweep()
    assert sorted(report.resent["history_import"]) == sorted([lost.pk, orphan.pk])
    assert report.resent["history_isolation"] == [isolating.pk]
    assert ("history.run_import", (fresh.pk,)) not in sent
    assert ("history.run_import", (working.pk,)) not in sent
    # The task's own claim guards a resend: a finished import is left alone.
    assert not history_import_execute(import_id=isolating.pk)
