"""What review does when the catalogue changes (webapp.catalog.signals) and when a bad case
opens; connected by ReviewConfig.ready."""

from __future__ import annotations

from typing import Any

from django.core.cache import cache
from django.db.models.signals import post_save
from django.dispatch import receiver

from webapp.catalog.models import SKU
from webapp.catalog.signals import sku_merged
from webapp.review.models import BadCase, CatalogueGap
from webapp.review.selectors import QUEUE_MODEL_VERSIONS_CACHE_KEY


@receiver(sku_merged, dispatch_uid="review_rows_follow_sku_merge")
def _sku_merged(sender: type[SKU], source: SKU, target: SKU, **kwargs: Any) -> dict[str, int]:
    """Bad cases and catalogue gaps that named `source` name `target`: review history sees one
    SKU. Runs in the merge's transaction."""
    return {
        "bad_cases": BadCase.objects.filter(correct_sku=source).update(correct_sku=target),
        "catalogue_gaps": CatalogueGap.objects.filter(sku=source).update(sku=target),
    }


@receiver(post_save, sender=BadCase, dispatch_uid="review_queue_versions_follow_new_cases")
def _bad_case_opened(sender: type[BadCase], instance: BadCase, created: bool,
                     **kwargs: Any) -> None:
    """A new case may name a model version the queue's filter bar has not offered yet."""
    if created:
        cache.delete(QUEUE_MODEL_VERSIONS_CACHE_KEY)
