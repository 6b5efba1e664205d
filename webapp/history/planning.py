"""One pass over a history file: what each row would do, and (when applying) its stored files.

Rows are grouped into items (a `listing`, or the row alone). Every photo is read and validated
exactly like an upload (`webapp.matching.validation`: type by content, size, pixels, EXIF
orientation, HEIC). The dry run stops at the plan; applying passes a `PhotoFiles` that stores
each photo of a valid item under `history/<import id>/` as it goes, so the database
transaction afterwards only writes rows. Nothing here writes to the database.
"""

from __future__ import annotations

import hashlib
import io
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import Storage

from webapp.catalog.bundles import ImageSource
from webapp.catalog.models import SKU, SKUImage
from webapp.catalog.validation import ReferenceImageError
from webapp.history.format import HistoryRow
from webapp.history.models import HistoryPhoto
from webapp.matching.models import QueryPhoto
from webapp.matching.validation import PhotoValidationError, ValidPhoto, validate_photos

Progress = Callable[[int], None]  # rows done so far


class Action:
    IMPORT = "import"
    SKIP = "skip"  # already imported (same bytes), or the same photo twice in this file
    REJECT = "reject"


@dataclass
class RowPlan:
    line: int
    sku_code: str
    photo: str
    listing: str = ""
    item: int = 0  # 1-based item number in the file; 0 for rows that make none
    action: str = Action.REJECT
    reasons: list[str] = field(default_factory=list)
    detail: str = ""  # e.g. "JPEG 348×348", or why the row is skipped
    gallery: bool = False  # becomes a reference image (the enrichment policy and the cap)


@dataclass
class HistoryPlan:
    rows: list[RowPlan]
    errors: list[str] = field(default_factory=list)  # problems of the whole file
    applied: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors and all(r.action != Action.REJECT for r in self.rows)

    @property
    def counts(self) -> dict[str, int]:
        counts = {a: 0 for a in (Action.IMPORT, Action.SKIP, Action.REJECT)}
        for row in self.rows:
            counts[row.action] += 1
        return counts

    @property
    def items(self) -> int:
        return len({r.item for r in self.rows if r.action == Action.IMPORT})

    @property
    def gallery(self) -> int:
        return sum(1 for r in self.rows if r.action == Action.IMPORT and r.gallery)

    def as_json(self) -> dict[str, Any]:
        return {"rows": [asdict(r) for r in self.rows], "errors": self.errors,
                "applied": self.applied, "counts": self.counts, "items": self.items,
                "gallery": self.gallery}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HistoryPlan:
        return cls([RowPlan(**r) for r in data.get("rows", [])], list(data.get("errors", [])),
                   bool(data.get("applied")))


@dataclass(frozen=True)
class StoredPhoto:
    """A validated photo whose files are written; the row is created by the apply step."""

    line: int
    path: str
    original: str  # storage names
    image: str
    gallery: str | None
    gallery_checksum: str
    original_format: str
    width: int
    height: int
    checksum: str


@dataclass(frozen=True)
class PlannedItem:
    """One item to import: a confirmed match of `sku_id` with these photos, in order."""

    number: int
    sku_id: int
    listing: str
    matched_at: datetime | None
    photos: tuple[StoredPhoto, ...]


class PhotoFiles:
    """Writes one import's files under `history/<import id>/`, and can take them all back."""

    def __init__(self, import_id: int) -> None:
        self.folder = f"history/{import_id}"
        self.storage: Storage = QueryPhoto._meta.get_field("image").storage
        assert SKUImage._meta.get_field("image").storage is self.storage
        self.written: list[str] = []

    def save(self, relative: str, data: bytes) -> str:
        name = self.storage.save(f"{self.folder}/{relative}", ContentFile(data))
        self.written.append(name)
        return name

    def delete_all(self) -> None:
        """Everything under the folder: what this pass wrote and what a dead worker left."""
        for name in self.written:
            self.storage.delete(name)
        self.written.clear()
        try:
            shutil.rmtree(self.storage.path(self.folder), ignore_errors=True)
        except NotImplementedError:  # a remote storage: walk it instead
            self._delete_tree(self.folder)

    def _delete_tree(self, folder: str) -> None:
        try:
            folders, files = self.storage.listdir(folder)
        except (FileNotFoundError, NotImplementedError):
            return
        for name in files:
            self.storage.delete(f"{folder}/{name}")
        for name in folders:
            self._delete_tree(f"{folder}/{name}")


class _Upload(io.BytesIO):
    """A photo read from the bundle, shaped like an uploaded file for the upload validator."""

    def __init__(self, name: str, data: bytes) -> None:
        super().__init__(data)
        self.name: str | None = name
        self.size: int | None = len(data)


def _validate(path: str, data: bytes) -> tuple[ValidPhoto | None, list[str]]:
    try:
        (valid,) = validate_photos([_Upload(path, data)])
    except PhotoValidationError as exc:
        prefix = f"Photo 1 ({path}): "
        return None, [f"photo {path}: {m.removeprefix(prefix)}" for m in exc.messages]
    return valid, []


def _sku_problem(code: str, sku: SKU | None) -> str | None:
    if sku is None:
        return f"SKU {code} is not in the catalogue (import the catalogue first)"
    if not sku.is_active:
        merged = f"; it was merged into {sku.merged_into.code}" if sku.merged_into else ""
        return f"SKU {code} is inactive{merged}"
    return None


def gallery_room(sku_ids: set[int]) -> dict[int, int]:
    """Appraisal reference images each SKU may still take (SKULENS_GALLERY_MAX_APPRAISAL_IMAGES).

    The enrichment policy (webapp/matching/gallery.py): a history item was matched with no
    candidates shown, so under "corrections" the gallery fell short by definition; "all" takes
    it too; "none" never."""
    if settings.GALLERY_ENRICHMENT == "none":
        return dict.fromkeys(sku_ids, 0)
    room = dict.fromkeys(sku_ids, settings.GALLERY_MAX_APPRAISAL_IMAGES)
    for sku_id in SKUImage.objects.filter(
        sku_id__in=sku_ids, source=SKUImage.Source.APPRAISAL
    ).values_list("sku_id", flat=True):
        room[sku_id] -= 1
    return {k: max(v, 0) for k, v in room.items()}


def _groups(rows: Sequence[HistoryRow]) -> list[list[int]]:
    """Row indices per item, items in order of their first row."""
    groups: dict[tuple[str, str | int], list[int]] = {}
    for i, row in enumerate(rows):
        key: tuple[str, str | int] = ("listing", row.listing) if row.listing else ("line",
                                                                                   row.line)
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def plan_rows(
    *,
    rows: Sequence[HistoryRow],
    source: ImageSource,
    files: PhotoFiles | None = None,
    progress: Progress | None = None,
) -> tuple[HistoryPlan, list[PlannedItem]]:
    """Plan every row; with `files`, also store the photos of each valid item (until a row is
    rejected: then nothing will be imported and the rest is only checked)."""
    plans = [RowPlan(r.line, r.sku_code, r.photo, r.listing, reasons=list(r.errors))
             for r in rows]
    skus = {s.code: s for s in SKU.objects.filter(code__in={r.sku_code for r in rows})
            .select_related("merged_into")}
    room = gallery_room({s.pk for s in skus.values()})
    seen_paths: dict[str, int] = {}
    seen_checksums: dict[str, int] = {}
    items: list[PlannedItem] = []
    done = 0
    number = 0
    for group in _groups(rows):
        first = rows[group[0]]
        valid: dict[int, tuple[ValidPhoto, str]] = {}
        known_before: list[int] = []
        for i in group:
            row, plan = rows[i], plans[i]
            if i != group[0]:
                if row.sku_code != first.sku_code:
                    plan.reasons.append(f"listing {row.listing} is {first.sku_code} on line "
                                        f"{first.line}, not {row.sku_code}")
                if row.matched_at != first.matched_at:
                    plan.reasons.append(f"matched_at differs from line {first.line} of "
                                        f"listing {row.listing}")
            if len(group) > settings.MATCH_MAX_PHOTOS:
                plan.reasons.append(f"listing {row.listing} has {len(group)} photos; at most "
                                    f"{settings.MATCH_MAX_PHOTOS} per item (split it)")
            if row.errors:
                continue
            problem = _sku_problem(row.sku_code, skus.get(row.sku_code))
            if problem:
                plan.reasons.append(problem)
            if row.photo in seen_paths:
                plan.reasons.append(f"photo {row.photo} is already on line "
                                    f"{seen_paths[row.photo]}")
                continue
            seen_paths[row.photo] = row.line
            try:
                data = source.read(row.photo)
            except ReferenceImageError as exc:
                plan.reasons.extend(f"photo {m}" for m in exc.messages)
                continue
            if data is None:
                plan.reasons.append(f"photo {row.photo} is not in the bundle")
                continue
            checksum = hashlib.sha256(data).hexdigest()
            if checksum in seen_checksums:
                plan.action = Action.SKIP
                plan.detail = f"the same photo as line {seen_checksums[checksum]}"
                continue
            seen_checksums[checksum] = row.line
            earlier = HistoryPhoto.objects.filter(checksum=checksum).values_list(
                "history_import_id", "line").first()
            if earlier is not None:
                plan.action = Action.SKIP
                plan.detail = f"already imported (import #{earlier[0]}, line {earlier[1]})"
                known_before.append(i)
                continue
            photo, messages = _validate(row.photo, data)
            plan.reasons.extend(messages)
            if photo is not None:
                plan.detail = f"{photo.original_format} {photo.width}×{photo.height}"
                valid[i] = (photo, checksum)

        rejected = [i for i in group if plans[i].reasons]
        fresh = [i for i in group if not plans[i].reasons and plans[i].action != Action.SKIP]
        if rejected:
            for i in group:
                plans[i].action = Action.REJECT
                if not plans[i].reasons:
                    plans[i].reasons.append(f"another photo of listing {first.listing} is "
                                            f"rejected (line {rows[rejected[0]].line})")
        elif known_before and fresh:
            for i in fresh:
                plans[i].action = Action.REJECT
                plans[i].reasons.append(
                    f"listing {first.listing} was partly imported before (line "
                    f"{rows[known_before[0]].line}: {plans[known_before[0]].detail}); import "
                    "a listing once, as a whole")
        elif fresh:
            number += 1
            sku = skus[first.sku_code]
            stored = []
            for i in fresh:
                plan = plans[i]
                plan.action, plan.item = Action.IMPORT, number
                if room.get(sku.pk, 0) > 0:
                    plan.gallery = True
                    room[sku.pk] -= 1
                if files is not None:
                    stored.append(_store(files, rows[i], *valid[i], gallery=plan.gallery))
            if files is not None:
                items.append(PlannedItem(number, sku.pk, first.listing, first.matched_at,
                                         tuple(stored)))
        if files is not None and rejected:
            files.delete_all()  # nothing will be imported now: stop storing
            files = None
            items.clear()
        done += len(group)
        if progress is not None:
            progress(done)
    whole = HistoryPlan(plans)  # `plan` above is one row's
    return whole, (items if whole.ok else [])


def _store(files: PhotoFiles, row: HistoryRow, photo: ValidPhoto, checksum: str, *,
           gallery: bool) -> StoredPhoto:
    stem = f"h{files.folder.rsplit('/', 1)[-1]}-{row.line}"
    original = files.save(f"original/{stem}.{photo.extension}", photo.original)
    image = files.save(f"photos/{stem}.jpg", photo.normalised_jpeg)
    # The reference image is its own copy: removing it from the SKU must not lose the photo.
    copy = files.save(f"gallery/{stem}.jpg", photo.normalised_jpeg) if gallery else None
    return StoredPhoto(
        line=row.line, path=row.photo, original=original, image=image, gallery=copy,
        gallery_checksum=hashlib.sha256(photo.normalised_jpeg).hexdigest() if gallery else "",
        original_format=photo.original_format, width=photo.width, height=photo.height,
        checksum=checksum,
    )
