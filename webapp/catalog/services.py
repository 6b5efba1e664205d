"""Catalogue writes: SKUs, reference images, the hierarchy and merges.

Every change is audited and, once committed, announced with `signals.catalogue_changed`
(learning queues the incremental index sync; the hourly beat sync is the safety net). A merge
sends `signals.sku_merged` inside its transaction, so matching and review move their rows
with it. Bulk import and export live in webapp.catalog.bulk, which calls these.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from django.core.files.base import ContentFile
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from webapp.accounts.roles import Actor
from webapp.audit.services import audit_record, field_changes
from webapp.catalog.models import SKU, Brand, Category, DuplicatePair, Series, SKUImage
from webapp.catalog.signals import catalogue_changed, sku_merged
from webapp.catalog.validation import ValidImage

HierarchyNode = Category | Brand | Series

# The fields an admin edits; `attributes` is the free-form {key: value} dict.
SKU_FIELDS = ("code", "name", "colour", "material", "size", "attributes")


class CatalogueError(ValueError):
    """A refused change; `str(exc)` is safe to show to the admin."""


def _catalogue_changed_send() -> None:
    # Robust: the change is committed; a failing receiver is logged and fails nothing here.
    catalogue_changed.send_robust(sender=SKU)


def catalogue_changed_on_commit() -> None:
    """Send `signals.catalogue_changed` once the current transaction commits."""
    # Once per transaction is enough (one index sync), however many changes it holds.
    if any(entry[1] is _catalogue_changed_send for entry in connection.run_on_commit):
        return
    transaction.on_commit(_catalogue_changed_send)


def _sku_state(sku: SKU) -> dict[str, Any]:
    return {
        **{name: getattr(sku, name) for name in SKU_FIELDS},
        "category": sku.series.brand.category.name,
        "brand": sku.series.brand.name,
        "series": sku.series.name,
        "is_active": sku.is_active,
    }


def hierarchy_resolve(*, category: str, brand: str, series: str, actor: Actor) -> Series:
    """The series at category/brand/series, creating the missing levels (audited)."""
    names = [n.strip() for n in (category, brand, series)]
    if not all(names):
        raise CatalogueError("Category, brand and series are all required.")
    category_row, created = Category.objects.get_or_create(name=names[0])
    if created:
        audit_record(actor=actor, action="category.create", obj=category_row)
    brand_row, created = Brand.objects.get_or_create(category=category_row, name=names[1])
    if created:
        audit_record(actor=actor, action="brand.create", obj=brand_row,
                     changes={"category": [None, category_row.name]})
    series_row, created = Series.objects.get_or_create(brand=brand_row, name=names[2])
    if created:
        audit_record(actor=actor, action="series.create", obj=series_row,
                     changes={"brand": [None, brand_row.name]})
    return series_row


def _clean_attributes(attributes: dict[str, Any] | None) -> dict[str, str]:
    cleaned = {}
    for key, value in (attributes or {}).items():
        key, value = str(key).strip(), str(value).strip()
        if key and value:
            cleaned[key] = value
    return cleaned


@transaction.atomic
def sku_create(
    *,
    actor: Actor,
    code: str,
    name: str,
    category: str,
    brand: str,
    series: str,
    colour: str = "",
    material: str = "",
    size: str = "",
    attributes: dict[str, Any] | None = None,
    images: Sequence[ValidImage] = (),
) -> SKU:
    """Create a SKU (and any missing hierarchy level) with its first reference images."""
    code, name = code.strip(), name.strip()
    if not code or not name:
        raise CatalogueError("A SKU needs a code and a name.")
    if SKU.objects.filter(code=code).exists():
        raise CatalogueError(f"A SKU with code {code} already exists.")
    sku = SKU.objects.create(
        code=code,
        name=name,
        series=hierarchy_resolve(category=category, brand=brand, series=series, actor=actor),
        colour=colour.strip(),
        material=material.strip(),
        size=size.strip(),
        attributes=_clean_attributes(attributes),
    )
    created = {k: v for k, v in _sku_state(sku).items() if v not in ("", {}, None)}
    audit_record(actor=actor, action="sku.create", obj=sku, changes=field_changes({}, created))
    if images:
        sku_images_add(sku=sku, actor=actor, images=images)
    catalogue_changed_on_commit()
    return sku


@transaction.atomic
def sku_update(
    *,
    sku: SKU,
    actor: Actor,
    category: str | None = None,
    brand: str | None = None,
    series: str | None = None,
    **fields: Any,
) -> SKU:
    """Change any of SKU_FIELDS and/or move the SKU in the hierarchy (by names)."""
    unknown = set(fields) - set(SKU_FIELDS)
    if unknown:
        raise TypeError(f"unknown SKU fields {sorted(unknown)}")
    sku = SKU.objects.select_for_update().select_related("series__brand__category").get(pk=sku.pk)
    before = _sku_state(sku)
    if "code" in fields:
        fields["code"] = str(fields["code"]).strip()
        if not fields["code"]:
            raise CatalogueError("A SKU needs a code.")
        if SKU.objects.filter(code=fields["code"]).exclude(pk=sku.pk).exists():
            raise CatalogueError(f"A SKU with code {fields['code']} already exists.")
    if "name" in fields and not str(fields["name"]).strip():
        raise CatalogueError("A SKU needs a name.")
    if "attributes" in fields:
        fields["attributes"] = _clean_attributes(fields["attributes"])
    for key, value in fields.items():
        setattr(sku, key, value.strip() if isinstance(value, str) else value)
    if any(level is not None for level in (category, brand, series)):
        sku.series = hierarchy_resolve(
            category=category if category is not None else before["category"],
            brand=brand if brand is not None else before["brand"],
            series=series if series is not None else before["series"],
            actor=actor,
        )
    changes = field_changes(before, _sku_state(sku))
    if changes:
        sku.save()
        audit_record(actor=actor, action="sku.update", obj=sku, changes=changes)
        catalogue_changed_on_commit()
    return sku


@transaction.atomic
def sku_set_active(*, sku: SKU, actor: Actor, active: bool) -> SKU:
    """Deactivate (the index drops its vectors on the next sync) or reactivate a SKU."""
    sku = SKU.objects.select_for_update().get(pk=sku.pk)
    if sku.is_active == active:
        return sku
    if active and sku.merged_into_id:
        raise CatalogueError(f"{sku.code} was merged into another SKU; edit that one instead.")
    sku.is_active = active
    sku.save(update_fields=["is_active", "updated_at"])
    audit_record(actor=actor, action="sku.reactivate" if active else "sku.deactivate", obj=sku,
                 changes={"is_active": [not active, active]})
    catalogue_changed_on_commit()
    return sku


def _next_position(sku: SKU) -> int:
    highest = sku.images.aggregate(highest=Max("position"))["highest"]
    return 0 if highest is None else highest + 1


@transaction.atomic
def sku_images_add(
    *, sku: SKU, actor: Actor, images: Sequence[ValidImage], source: str = SKUImage.Source.CATALOGUE
) -> list[SKUImage]:
    """Attach already validated images at the end; the index sync embeds them."""
    position = _next_position(sku)
    stored_names: list[str] = []
    added: list[SKUImage] = []
    try:
        for offset, valid in enumerate(images):
            row = SKUImage(sku=sku, position=position + offset, source=source,
                           original_name=valid.name[:255], checksum=valid.checksum)
            row.image.save(valid.stored_name, ContentFile(valid.data), save=False)
            assert row.image.name is not None  # set by save() above
            stored_names.append(row.image.name)
            row.save()
            added.append(row)
            audit_record(actor=actor, action="image.add", obj=row, sku=sku,
                         changes={"file": [None, valid.name]})
    except BaseException:
        _delete_files_now(stored_names)
        raise
    catalogue_changed_on_commit()
    return added


def _delete_files_now(names: Iterable[str]) -> None:
    storage = SKUImage._meta.get_field("image").storage
    for name in names:
        storage.delete(name)


def _delete_files_on_commit(names: list[str]) -> None:
    transaction.on_commit(lambda: _delete_files_now(names))


def _renumber(sku: SKU) -> None:
    """Positions 0..n-1 in the current order."""
    images = list(sku.images.order_by("position", "id"))
    for position, image in enumerate(images):
        image.position = position
    SKUImage.objects.bulk_update(images, ["position"])


@transaction.atomic
def sku_image_remove(*, image: SKUImage, actor: Actor) -> None:
    """Remove a reference image and, after commit, its file; the index sync drops its vector."""
    sku = image.sku
    audit_record(actor=actor, action="image.remove", obj=image, sku=sku,
                 changes={"file": [image.original_name or image.image.name, None]})
    name = image.image.name
    image.delete()
    _renumber(sku)
    if name:
        _delete_files_on_commit([name])
    catalogue_changed_on_commit()


@transaction.atomic
def sku_image_move(*, image: SKUImage, actor: Actor, offset: int) -> None:
    """Move an image `offset` places (negative: earlier). Position 0 is the SKU's main image."""
    _renumber(image.sku)
    images = list(image.sku.images.order_by("position", "id"))
    index = next(i for i, row in enumerate(images) if row.pk == image.pk)
    target = max(0, min(len(images) - 1, index + offset))
    if target == index:
        return
    images.insert(target, images.pop(index))
    for position, row in enumerate(images):
        row.position = position
    SKUImage.objects.bulk_update(images, ["position"])
    audit_record(actor=actor, action="image.move", obj=image, sku=image.sku,
                 changes={"position": [index, target]})


@dataclass(frozen=True)
class MergeSummary:
    """What a merge moved: the images, and the rows `signals.sku_merged`'s receivers moved."""

    images: int
    candidates: int = 0
    decisions: int = 0
    bad_cases: int = 0
    catalogue_gaps: int = 0


@transaction.atomic
def sku_merge(*, source: SKU, target: SKU, actor: Actor) -> MergeSummary:
    """Fold `source` into `target`: images and history move, `source` is deactivated.

    Candidates, decisions, bad cases and catalogue gaps that named `source` now name `target`
    (moved by the receivers of `signals.sku_merged`, in this transaction), so review history
    and calibration see one SKU. `source` stays (inactive, `merged_into` set) so old links and
    the audit trail still resolve.
    """
    if source.pk == target.pk:
        raise CatalogueError("Choose two different SKUs to merge.")
    rows = SKU.objects.select_for_update().filter(pk__in=[source.pk, target.pk])
    locked = {s.pk: s for s in rows}
    source, target = locked[source.pk], locked[target.pk]
    if not target.is_active:
        raise CatalogueError(f"{target.code} is inactive; reactivate it or merge the other way.")
    if source.merged_into_id:
        raise CatalogueError(f"{source.code} has already been merged.")

    position = _next_position(target)
    moved = list(source.images.order_by("position", "id"))
    for offset, image in enumerate(moved):
        image.sku = target
        image.position = position + offset
    SKUImage.objects.bulk_update(moved, ["sku", "position"])
    # Not robust: a receiver that fails rolls the whole merge back.
    rows_moved: dict[str, int] = {}
    for _receiver, counts in sku_merged.send(sender=SKU, source=source, target=target):
        rows_moved.update(cast("dict[str, int]", counts))  # as signals.sku_merged asks
    summary = MergeSummary(images=len(moved), **rows_moved)
    # Attributes the target lacks are kept from the source rather than lost.
    merged_attributes = {**source.attributes, **target.attributes}
    if merged_attributes != target.attributes:
        target.attributes = merged_attributes
        target.save(update_fields=["attributes", "updated_at"])
    source.is_active = False
    source.merged_into = target
    source.save(update_fields=["is_active", "merged_into", "updated_at"])
    DuplicatePair.objects.filter(status=DuplicatePair.Status.OPEN).filter(
        sku_a__in=[source, target], sku_b__in=[source, target]
    ).update(status=DuplicatePair.Status.MERGED, resolved_at=timezone.now(),
             resolved_by=actor if actor is not None and actor.is_authenticated else None)
    details = {"into": [None, target.code], "moved": [None, summary.__dict__]}
    audit_record(actor=actor, action="sku.merge", obj=source, changes=details)
    audit_record(actor=actor, action="sku.merge_into", obj=target,
                 changes={"from": [None, source.code], "moved": [None, summary.__dict__]})
    catalogue_changed_on_commit()
    return summary


@transaction.atomic
def hierarchy_rename(*, node: HierarchyNode, name: str, actor: Actor) -> HierarchyNode:
    name = name.strip()
    if not name:
        raise CatalogueError("A name is required.")
    taken: bool
    if isinstance(node, Brand):
        taken = Brand.objects.exclude(pk=node.pk).filter(
            name=name, category_id=node.category_id).exists()
    elif isinstance(node, Series):
        taken = Series.objects.exclude(pk=node.pk).filter(
            name=name, brand_id=node.brand_id).exists()
    else:
        taken = Category.objects.exclude(pk=node.pk).filter(name=name).exists()
    if taken:
        label = str(type(node)._meta.verbose_name or type(node).__name__)
        raise CatalogueError(f"{label.title()} {name} already exists here.")
    old = node.name
    if old == name:
        return node
    node.name = name
    node.save(update_fields=["name"])
    audit_record(actor=actor, action=f"{type(node)._meta.model_name}.rename", obj=node,
                 changes={"name": [old, name]})
    return node


@transaction.atomic
def hierarchy_delete(*, node: HierarchyNode, actor: Actor) -> None:
    """Delete an empty category, brand or series (anything with children is protected)."""
    children = {
        Category: lambda: node.brands.exists(),  # type: ignore[union-attr]
        Brand: lambda: node.series.exists(),  # type: ignore[union-attr]
        Series: lambda: node.skus.exists(),  # type: ignore[union-attr]
    }[type(node)]
    if children():
        raise CatalogueError(f"{node.name} is not empty; move or merge what it holds first.")
    audit_record(actor=actor, action=f"{type(node)._meta.model_name}.delete", obj=node,
                 changes={"name": [node.name, None]})
    node.delete()
