"""What matching does when the catalogue changes (webapp.catalog.signals); connected by
MatchingConfig.ready."""

from __future__ import annotations

from typing import Any

from django.core.cache import cache
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from webapp.catalog.models import SKU
from webapp.catalog.signals import sku_merged
from webapp.matching.calibration import CALIBRATION_CACHE_KEY
from webapp.matching.models import Candidate, Decision, FusionWeights, ScoreThreshold


@receiver(sku_merged, dispatch_uid="matching_rows_follow_sku_merge")
def _sku_merged(sender: type[SKU], source: SKU, target: SKU, **kwargs: Any) -> dict[str, int]:
    """Candidates and decisions that named `source` name `target`: calibration and training
    see one SKU. Runs in the merge's transaction."""
    return {
        "candidates": Candidate.objects.filter(sku=source).update(sku=target),
        "decisions": Decision.objects.filter(sku=source).update(sku=target),
    }


@receiver([post_save, post_delete], sender=ScoreThreshold, dispatch_uid="threshold_cache_clear")
@receiver([post_save, post_delete], sender=FusionWeights, dispatch_uid="fusion_cache_clear")
def _calibration_changed(sender: type[Any], **kwargs: Any) -> None:
    """A refitted or edited threshold is read from the database by the next page."""
    cache.delete(CALIBRATION_CACHE_KEY)
