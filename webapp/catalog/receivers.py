"""The catalogue's own receivers: keep the SKU search documents (webapp.catalog.search) in step
with every save and delete of a SKU or a level of the hierarchy."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from webapp.catalog.models import SKU, Brand, Category, Series
from webapp.catalog.search import DOCUMENT_FIELDS, search_documents_refresh

# Saves that touch none of these leave the document as it is (e.g. deactivation).
_SKU_DOCUMENT_FIELDS = {*DOCUMENT_FIELDS, "series", "series_id"}


@receiver(post_save, sender=SKU, dispatch_uid="sku_search_on_save")
def _sku_saved(sender: type[SKU], instance: SKU, using: str,
               update_fields: frozenset[str] | None = None, **kwargs: Any) -> None:
    if update_fields is not None and not set(update_fields) & _SKU_DOCUMENT_FIELDS:
        return
    search_documents_refresh(sku_ids=[instance.pk], using=using)


@receiver(post_delete, sender=SKU, dispatch_uid="sku_search_on_delete")
def _sku_deleted(sender: type[SKU], instance: SKU, using: str, **kwargs: Any) -> None:
    search_documents_refresh(sku_ids=[instance.pk], using=using)


@receiver(post_save, sender=Series, dispatch_uid="series_search_on_save")
@receiver(post_save, sender=Brand, dispatch_uid="brand_search_on_save")
@receiver(post_save, sender=Category, dispatch_uid="category_search_on_save")
def _hierarchy_saved(sender: type[Series | Brand | Category],
                     instance: Series | Brand | Category, using: str,
                     created: bool, **kwargs: Any) -> None:
    if created:
        return  # nothing belongs to it yet
    under: dict[type[Series | Brand | Category], str] = {
        Series: "series", Brand: "series__brand", Category: "series__brand__category"}
    ids = SKU.objects.using(using).filter(**{under[sender]: instance}).values_list("pk", flat=True)
    search_documents_refresh(sku_ids=list(ids), using=using)
