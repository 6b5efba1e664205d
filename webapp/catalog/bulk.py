"""Bulk import: a dry run first, then all or nothing (export, in the same format: export.py).

The plan says, row by row, what an import would create, change or reject and why; applying
re-plans inside the transaction (the catalogue may have moved on since the dry run) and
writes only when no row is rejected.
"""

from __future__ import annotations

import io
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from webapp.accounts.roles import Actor
from webapp.audit.services import audit_record, field_changes
from webapp.catalog.bundles import Bundle, FolderSource, ImageSource, open_zip_bundle
from webapp.catalog.importing import (
    CatalogueFormatError,
    CatalogueRow,
    ParsedCatalogue,
    ParsedRow,
)
from webapp.catalog.models import SKU, Brand, CatalogueImport, Category, Series, SKUImage
from webapp.catalog.services import (
    catalogue_changed_on_commit,
    hierarchy_resolve,
    sku_images_add,
)
from webapp.catalog.validation import ReferenceImageError, image_check

logger = logging.getLogger(__name__)

ALL_FIELDS = frozenset(
    {"sku_code", "name", "category", "brand", "series", "colour", "material", "size",
     "images", "attributes", "active"}
)
# Row fields compared with the SKU, in report order; `active` maps to SKU.is_active.
_COMPARED = ("name", "category", "brand", "series", "colour", "material", "size",
             "attributes", "active")


class Action:
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    REJECT = "reject"


@dataclass
class RowPlan:
    line: int
    sku_code: str
    action: str
    changes: dict[str, list[Any]] = field(default_factory=dict)
    images_added: list[str] = field(default_factory=list)
    images_kept: int = 0
    new_hierarchy: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


@dataclass
class ImportPlan:
    rows: list[RowPlan]
    errors: list[str] = field(default_factory=list)  # problems of the whole file
    applied: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors and all(r.action != Action.REJECT for r in self.rows)

    @property
    def counts(self) -> dict[str, int]:
        counted = Counter(r.action for r in self.rows)
        return {a: counted.get(a, 0) for a in
                (Action.CREATE, Action.UPDATE, Action.UNCHANGED, Action.REJECT)}

    @property
    def images_added(self) -> int:
        return sum(len(r.images_added) for r in self.rows if r.action != Action.REJECT)

    def as_json(self) -> dict[str, Any]:
        return {"rows": [asdict(r) for r in self.rows], "errors": self.errors,
                "applied": self.applied, "counts": self.counts, "images_added": self.images_added}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImportPlan:
        return cls([RowPlan(**r) for r in data.get("rows", [])], list(data.get("errors", [])),
                   bool(data.get("applied")))


def _row_state(row: CatalogueRow) -> dict[str, Any]:
    return {"name": row.name, "category": row.category, "brand": row.brand, "series": row.series,
            "colour": row.colour, "material": row.material, "size": row.size,
            "attributes": dict(row.attributes), "active": row.active}


def _sku_state(sku: SKU) -> dict[str, Any]:
    return {"name": sku.name, "category": sku.series.brand.category.name,
            "brand": sku.series.brand.name, "series": sku.series.name, "colour": sku.colour,
            "material": sku.material, "size": sku.size,
            "attributes": {k: str(v) for k, v in sku.attributes.items()},
            "active": sku.is_active}


class _Hierarchy:
    """Which category/brand/series names exist, and which this plan would add."""

    def __init__(self) -> None:
        self.categories = set(Category.objects.values_list("name", flat=True))
        self.brands = set(Brand.objects.values_list("category__name", "name"))
        self.series = set(Series.objects.values_list("brand__category__name", "brand__name",
                                                      "name"))

    def new_nodes(self, row: CatalogueRow) -> list[str]:
        found = []
        if row.category not in self.categories:
            self.categories.add(row.category)
            found.append(f"category {row.category}")
        if (row.category, row.brand) not in self.brands:
            self.brands.add((row.category, row.brand))
            found.append(f"brand {row.brand}")
        if (row.category, row.brand, row.series) not in self.series:
            self.series.add((row.category, row.brand, row.series))
            found.append(f"series {row.series}")
        return found


def _plan_images(
    row: CatalogueRow, existing: SKU | None, source: ImageSource, plan: RowPlan
) -> None:
    names: set[str] = set()
    checksums: set[str] = set()
    if existing is not None:
        for name, checksum in existing.images.values_list("original_name", "checksum"):
            names.add(name)
            if checksum:
                checksums.add(checksum)
    for relative in dict.fromkeys(row.images):  # keeps order, drops repeats
        if relative in names:
            plan.images_kept += 1
            continue
        try:
            data = source.read(relative)
            if data is None:
                plan.reasons.append(f"image {relative} is not in the bundle")
                continue
            valid = image_check(data, name=relative)
        except ReferenceImageError as exc:
            plan.reasons.extend(exc.messages)
            continue
        if valid.checksum in checksums:
            plan.images_kept += 1
            continue
        checksums.add(valid.checksum)
        plan.images_added.append(relative)


def import_plan(*, catalogue: ParsedCatalogue, source: ImageSource) -> ImportPlan:
    """What importing would do, row by row. Reads only; decodes every new image."""
    given = catalogue.given_fields
    codes = [item.sku_code for item in catalogue.rows if item.sku_code]
    existing = {
        sku.code: sku
        for sku in SKU.objects.filter(code__in=codes).select_related("series__brand__category")
    }
    hierarchy = _Hierarchy()
    seen: dict[str, int] = {}
    rows: list[RowPlan] = []
    for item in catalogue.rows:
        plan = RowPlan(item.line, item.sku_code, Action.REJECT, reasons=list(item.errors))
        rows.append(plan)
        if item.sku_code in seen:
            earlier = seen[item.sku_code]
            plan.reasons.append(f"sku_code {item.sku_code} is already on line {earlier}")
        elif item.sku_code:
            seen[item.sku_code] = item.line
        row = item.row
        if row is None or plan.reasons:
            continue
        sku = existing.get(row.sku_code)
        wanted = {k: v for k, v in _row_state(row).items() if k in given}
        if wanted.get("active", False) is None:
            del wanted["active"]  # an empty cell leaves the SKU as it is
        if sku is None:
            plan.changes = {k: [None, v] for k, v in wanted.items() if v not in ("", {}, None)}
        else:
            current = _sku_state(sku)
            plan.changes = field_changes({k: current[k] for k in wanted}, wanted)
        plan.new_hierarchy = hierarchy.new_nodes(row)
        if "images" in given:
            _plan_images(row, sku, source, plan)
        if plan.reasons:
            continue
        if sku is None:
            plan.action = Action.CREATE
        elif plan.changes or plan.images_added:
            plan.action = Action.UPDATE
        else:
            plan.action = Action.UNCHANGED
    return ImportPlan(rows)


def _apply_row(
    item: ParsedRow, plan: RowPlan, given: frozenset[str], source: ImageSource, actor: Actor
) -> list[SKUImage]:
    row = item.row
    assert row is not None
    series = hierarchy_resolve(category=row.category, brand=row.brand, series=row.series,
                               actor=actor)
    values: dict[str, Any] = {"name": row.name, "series": series}
    for name in ("colour", "material", "size", "attributes"):
        if name in given:
            values[name] = getattr(row, name)
    if "active" in given and row.active is not None:
        values["is_active"] = row.active
    if plan.action == Action.CREATE:
        sku = SKU.objects.create(code=row.sku_code, **values)
        audit_record(actor=actor, action="sku.import_create", obj=sku, changes=plan.changes)
    else:
        sku = SKU.objects.get(code=row.sku_code)
        for key, value in values.items():
            setattr(sku, key, value)
        sku.save()
        audit_record(actor=actor, action="sku.import_update", obj=sku, changes=plan.changes)
    added: list[SKUImage] = []
    for relative in plan.images_added:
        data = source.read(relative)
        if data is None:  # the planner saw it a moment ago
            raise ReferenceImageError([f"image {relative} disappeared during the import"])
        appraisal = relative in row.appraisal_images
        added += sku_images_add(
            sku=sku, actor=actor, images=[image_check(data, name=relative)],
            source=SKUImage.Source.APPRAISAL if appraisal else SKUImage.Source.CATALOGUE,
        )
    return added


def import_apply(*, bundle: Bundle, actor: Actor, dry_run: bool = False) -> ImportPlan:
    """Plan, then (unless `dry_run` or a row is rejected) write everything in one transaction."""
    given = bundle.catalogue.given_fields
    stored: list[str] = []
    try:
        with transaction.atomic():
            plan = import_plan(catalogue=bundle.catalogue, source=bundle.source)
            if dry_run or not plan.ok:
                return plan
            for item, row_plan in zip(bundle.catalogue.rows, plan.rows, strict=True):
                if row_plan.action in (Action.CREATE, Action.UPDATE):
                    added = _apply_row(item, row_plan, given, bundle.source, actor)
                    for image in added:
                        assert image.image.name is not None  # just saved
                        stored.append(image.image.name)
            plan.applied = True
            catalogue_changed_on_commit()
    except BaseException:
        # The rows are rolled back; the files written so far must go too.
        storage = SKUImage._meta.get_field("image").storage
        for name in stored:
            storage.delete(name)
        raise
    logger.info("catalogue import: %s, %d images", plan.counts, plan.images_added)
    return plan


@dataclass
class ImportReport:
    """The summary the management commands and fixtures use."""

    skus_created: int = 0
    skus_updated: int = 0
    images_added: int = 0
    errors: list[str] = field(default_factory=list)
    plan: ImportPlan | None = None


def report_of(plan: ImportPlan) -> ImportReport:
    errors = list(plan.errors) + [
        f"{r.sku_code or 'line ' + str(r.line)}: {reason}"
        for r in plan.rows if r.action == Action.REJECT for reason in r.reasons
    ]
    counts = plan.counts
    return ImportReport(counts[Action.CREATE], counts[Action.UPDATE], plan.images_added,
                        errors, plan)


def catalogue_import_rows(
    *, rows: list[CatalogueRow], source: ImageSource, actor: Actor, dry_run: bool = False
) -> ImportReport:
    """Import rows made in code (the demo, the grocery dataset); every field is given."""
    catalogue = ParsedCatalogue(
        frozenset({"colour", "material", "size", "images", "attr:"}),
        [ParsedRow(line, row.sku_code, row) for line, row in enumerate(rows, start=2)],
    )
    plan = import_apply(bundle=Bundle(catalogue, source), actor=actor, dry_run=dry_run)
    return report_of(plan)


def catalogue_import(*, rows: Iterable[CatalogueRow], image_root: Path) -> ImportReport:
    """Import rows whose images live under `image_root`, all or nothing."""
    return catalogue_import_rows(rows=list(rows), source=FolderSource(image_root), actor=None)


# ----- imports from the page: a row people can come back to --------------------------------


def catalogue_import_start(
    *, actor: Actor, zip_data: bytes, original_name: str
) -> CatalogueImport:
    """Store the upload as one zip and record its dry run. Raises CatalogueFormatError."""
    bundle = open_zip_bundle(io.BytesIO(zip_data))
    plan = import_apply(bundle=bundle, actor=actor, dry_run=True)
    record = CatalogueImport(
        created_by=actor if actor is not None and actor.is_authenticated else None,
        original_name=original_name[:255],
        report=plan.as_json(),
    )
    record.bundle.save("catalogue-import.zip", ContentFile(zip_data), save=False)
    record.save()
    return record


def catalogue_import_commit(*, record: CatalogueImport, actor: Actor) -> CatalogueImport:
    """Apply a planned import, all or nothing; a second click finds it no longer planned."""
    with transaction.atomic():
        # The row lock makes a double submit wait, then see the first one's outcome.
        locked = CatalogueImport.objects.select_for_update().get(pk=record.pk)
        if locked.status != CatalogueImport.Status.PLANNED:
            return locked
        try:
            if not locked.bundle:
                raise OSError("pruned")
            handle = locked.bundle.open("rb")
        except OSError as exc:
            raise CatalogueFormatError("the upload is no longer stored; upload it again") from exc
        with handle:
            plan = import_apply(bundle=open_zip_bundle(handle), actor=actor)
        locked.status = (
            CatalogueImport.Status.APPLIED if plan.applied else CatalogueImport.Status.REFUSED
        )
        locked.report = plan.as_json()
        locked.applied_at = timezone.now() if plan.applied else None
        locked.save(update_fields=["status", "report", "applied_at"])
        if plan.applied:
            audit_record(actor=actor, action="catalogue.import", obj=locked,
                         changes={"counts": [None, plan.counts]})
    return locked


def import_bundles_prune(*, older_than_days: int) -> int:
    """Delete the stored uploads of imports older than this; rows and reports stay.

    A planned import whose upload is gone says so if someone applies it. Returns the count."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    pruned = 0
    for record in CatalogueImport.objects.filter(created_at__lt=cutoff).exclude(bundle=""):
        record.bundle.delete(save=False)  # a file already gone is not an error
        CatalogueImport.objects.filter(pk=record.pk).update(bundle="")
        pruned += 1
    if pruned:
        logger.info("pruned %d catalogue import uploads older than %d days", pruned,
                    older_than_days)
    return pruned
