"""What review does when the catalogue changes (webapp.catalog.signals); connected by
ReviewConfig.ready."""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from webapp.catalog.models import SKU
from webapp.catalog.signals import sku_merged
from webapp.review.models import BadCase, CatalogueGap


@receiver(sku_merged, dispatch_uid="review_rows_follow_sku_merge")
def _sku_merged(sender: type[SKU], source: SKU, target: SKU, **kwargs: Any) -> dict[str, int]:
    """Bad cases and catalogue gaps that named `source` name `target`: review history sees one
    SKU. Runs in the merge's transaction."""
    return {
        "bad_cases": BadCase.objects.filter(correct_sku=source).update(correct_sku=target),
        "catalogue_gaps": CatalogueGap.objects.filter(sku=source).update(sku=target),
    }
