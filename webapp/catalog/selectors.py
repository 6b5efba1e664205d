from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence

from django.db.models import Count, Prefetch, Q, QuerySet
from django.db.models.fields.files import FieldFile

from webapp.catalog.models import SKU, Brand, Category, Series, SKUImage
from webapp.catalog.search import sku_text_filter, sku_text_rank
from webapp.ml_gateway.sources import ReferenceImage, SkuDescription


def sku_search(*, query: str = "", limit: int = 20) -> list[SKU]:
    """Active SKUs matching every word of `query` (full-text, as prefixes), best first."""
    skus = SKU.objects.filter(is_active=True).select_related("series__brand__category")
    return list(sku_text_rank(skus, query)[:limit])


def sku_list_with_counts() -> QuerySet[SKU]:
    return SKU.objects.select_related("series__brand__category").annotate(
        image_count=Count("images")
    )


def filter_choices() -> dict[str, QuerySet]:
    return {
        "categories": Category.objects.all(),
        "brands": Brand.objects.select_related("category"),
        "series": Series.objects.select_related("brand"),
    }


def indexable_images() -> QuerySet[SKUImage]:
    """Reference images that belong in the search index: embedded, of active SKUs."""
    return SKUImage.objects.filter(sku__is_active=True, embedding__isnull=False)


def reference_ids_for_filters(
    *, category_id: int | None, brand_id: int | None, series_id: int | None
) -> list[int]:
    images = indexable_images()
    if category_id:
        images = images.filter(sku__series__brand__category_id=category_id)
    if brand_id:
        images = images.filter(sku__series__brand_id=brand_id)
    if series_id:
        images = images.filter(sku__series_id=series_id)
    return list(images.values_list("id", flat=True))


# ----- curation pages ---------------------------------------------------------------------

SKU_STATUSES = ("active", "inactive", "all")


def sku_browse(
    *,
    query: str = "",
    category_id: int | None = None,
    brand_id: int | None = None,
    series_id: int | None = None,
    status: str = "active",
) -> QuerySet[SKU]:
    """SKUs for the curation list, any state, with their image counts and first image."""
    skus = SKU.objects.select_related("series__brand__category").annotate(
        image_count=Count("images")
    )
    if status == "active":
        skus = skus.filter(is_active=True)
    elif status == "inactive":
        skus = skus.filter(is_active=False)
    if category_id:
        skus = skus.filter(series__brand__category_id=category_id)
    if brand_id:
        skus = skus.filter(series__brand_id=brand_id)
    if series_id:
        skus = skus.filter(series_id=series_id)
    if query.strip():
        skus = sku_text_filter(skus, query)
    return skus.order_by("code")


def hierarchy_tree() -> QuerySet[Category]:
    """Categories -> brands -> series, each with `sku_count` (active SKUs) and `child_count`
    (brands, series or SKUs of any state: a level can be deleted only when it is 0)."""
    active = Q(skus__is_active=True)
    series = Series.objects.annotate(
        sku_count=Count("skus", filter=active, distinct=True),
        child_count=Count("skus", distinct=True),
    ).order_by("name")
    brands = Brand.objects.annotate(
        sku_count=Count("series__skus", filter=Q(series__skus__is_active=True), distinct=True),
        child_count=Count("series", distinct=True),
    ).prefetch_related(Prefetch("series", queryset=series)).order_by("name")
    return Category.objects.annotate(
        sku_count=Count(
            "brands__series__skus", filter=Q(brands__series__skus__is_active=True), distinct=True
        ),
        child_count=Count("brands", distinct=True),
    ).prefetch_related(Prefetch("brands", queryset=brands)).order_by("name")


def sku_detail(*, sku_id: int) -> SKU:
    return (
        SKU.objects.select_related("series__brand__category", "merged_into")
        .prefetch_related("merged_from")
        .get(pk=sku_id)
    )


def sku_images(*, sku: SKU) -> QuerySet[SKUImage]:
    return sku.images.order_by("position", "id")


def hierarchy_names() -> dict[str, list[str]]:
    """Distinct names per level, for the form's suggestions."""
    return {
        "categories": list(Category.objects.order_by("name").values_list("name", flat=True)),
        "brands": sorted(set(Brand.objects.values_list("name", flat=True))),
        "series": sorted(set(Series.objects.values_list("name", flat=True))),
    }


# Attribute keys whose values are prose, not a property one states about an item.
PROSE_ATTRIBUTE_KEYS = frozenset({"description"})
SKU_FIELD_ATTRIBUTES = ("colour", "material", "size")


def sku_attribute_keys() -> list[str]:
    """What an appraiser may state about an item: the SKU fields colour, material and size,
    then every other attribute key of the active catalogue (prose keys aside), sorted."""
    keys: set[str] = set()
    rows = SKU.objects.filter(is_active=True).exclude(attributes={}).values_list(
        "attributes", flat=True
    )
    for attributes in rows.iterator(chunk_size=2000):
        if isinstance(attributes, dict):
            keys.update(str(key) for key in attributes)
    extra = sorted(k for k in keys - set(SKU_FIELD_ATTRIBUTES) - PROSE_ATTRIBUTE_KEYS if k.strip())
    return [*SKU_FIELD_ATTRIBUTES, *extra]


# ----- what the ml gateway reads (installed as its readers by webapp.learning.apps) -------


def active_sku_of(reference_ids: Collection[int]) -> dict[int, int]:
    """Reference id -> SKU id for references of active SKUs: a SKU deactivated since the last
    index sync must not be offered."""
    return dict(
        SKUImage.objects.filter(id__in=list(reference_ids), sku__is_active=True)
        .values_list("id", "sku_id")
    )


def sku_descriptions(sku_ids: Sequence[int]) -> dict[int, SkuDescription]:
    """The SKUs' text and attributes as the re-ranking stage compares them."""
    entries = {}
    for sku in SKU.objects.filter(id__in=sku_ids).select_related("series__brand__category"):
        attributes = {k: str(v) for k, v in (sku.attributes or {}).items()
                      if k != "description" and v not in (None, "")}
        attributes.update({k: v for k, v in (("colour", sku.colour), ("material", sku.material),
                                             ("size", sku.size)) if v})
        entries[sku.id] = SkuDescription(
            sku_id=sku.id,
            name=sku.name,
            category=sku.series.brand.category.name,
            brand=sku.series.brand.name,
            series=sku.series.name,
            description=str((sku.attributes or {}).get("description", "")),
            attributes=attributes,
        )
    return entries


def sku_reference_ids(sku_ids: Sequence[int]) -> dict[int, list[int]]:
    """Each SKU's indexable reference images, catalogue images first."""
    out: dict[int, list[int]] = {}
    rows = indexable_images().filter(sku_id__in=sku_ids).order_by("sku_id", "position", "id")
    for image_id, sku_id in rows.values_list("id", "sku_id"):
        out.setdefault(sku_id, []).append(image_id)
    return out


def _reader(field: FieldFile) -> Callable[[], bytes]:
    def read() -> bytes:
        with field.open("rb") as handle:
            return handle.read()

    return read


def reference_images(image_ids: Sequence[int]) -> Iterator[ReferenceImage]:
    """The reference images with these ids, each read only when asked."""
    rows = SKUImage.objects.filter(id__in=list(image_ids)).only("id", "image", "source",
                                                                "checksum")
    for image in rows:
        yield ReferenceImage(image.id, image.checksum or "",
                             image.source == SKUImage.Source.CATALOGUE, _reader(image.image))
