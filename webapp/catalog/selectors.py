from __future__ import annotations

from django.db.models import Count, Q, QuerySet

from webapp.catalog.models import SKU, Brand, Category, Series, SKUImage


def sku_search(*, query: str = "", limit: int = 20) -> QuerySet[SKU]:
    skus = SKU.objects.filter(is_active=True).select_related("series__brand__category")
    for word in query.split():
        skus = skus.filter(
            Q(code__icontains=word)
            | Q(name__icontains=word)
            | Q(series__name__icontains=word)
            | Q(series__brand__name__icontains=word)
            | Q(series__brand__category__name__icontains=word)
        )
    return skus.order_by("code")[:limit]


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
