"""What matching does when the catalogue changes (webapp.catalog.signals); connected by
MatchingConfig.ready."""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from webapp.catalog.models import SKU
from webapp.catalog.signals import sku_merged
from webapp.matching.models import Candidate, Decision


@receiver(sku_merged, dispatch_uid="matching_rows_follow_sku_merge")
def _sku_merged(sender: type[SKU], source: SKU, target: SKU, **kwargs: Any) -> dict[str, int]:
    """Candidates and decisions that named `source` name `target`: calibration and training
    see one SKU. Runs in the merge's transaction."""
    return {
        "candidates": Candidate.objects.filter(sku=source).update(sku=target),
        "decisions": Decision.objects.filter(sku=source).update(sku=target),
    }
