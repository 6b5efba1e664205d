"""Confirmed appraisal photos become reference images, so the next photo like them is found.

Policy (SKULENS_GALLERY_ENRICHMENT):
- "corrections" (default): only when the gallery fell short: the attached SKU was not the
  top candidate, or its score was below the confident threshold.
- "all": every confirmed photo.
- "none": never.
Each SKU keeps at most SKULENS_GALLERY_MAX_APPRAISAL_IMAGES appraisal images.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.base import ContentFile

from webapp.catalog.models import SKUImage
from webapp.matching.calibration import confident_threshold
from webapp.matching.models import Decision

POLICIES = ("corrections", "all", "none")


def _gallery_fell_short(decision: Decision) -> bool:
    top = decision.request.candidates.order_by("rank").select_related("sku").first()
    if top is None or top.sku_id != decision.sku_id:
        return True
    return top.score < confident_threshold(top.sku.category)


def _reference_name(request_id: int, position: int) -> str:
    return f"match-{request_id}-photo-{position}"


def gallery_enrich_from_decision(*, decision: Decision) -> list[SKUImage]:
    """Add the decision's photos to its SKU's references when the policy says so."""
    policy = settings.GALLERY_ENRICHMENT
    if decision.sku is None or policy == "none":
        return []
    if policy == "corrections" and not _gallery_fell_short(decision):
        return []
    room = settings.GALLERY_MAX_APPRAISAL_IMAGES - decision.sku.images.filter(
        source=SKUImage.Source.APPRAISAL
    ).count()
    added = []
    for photo in decision.request.photos.order_by("position")[: max(room, 0)]:
        assert photo.image.name is not None  # the file is required: a saved photo has one
        with photo.image.open("rb") as handle:
            content = ContentFile(handle.read())
        reference = SKUImage(
            sku=decision.sku,
            source=SKUImage.Source.APPRAISAL,
            position=1000 + photo.request_id,
            original_name=_reference_name(photo.request_id, photo.position),
        )
        reference.image.save(Path(photo.image.name).name, content, save=True)
        added.append(reference)
    if added:
        from webapp.learning.tasks import sync_index
        from webapp.sweeper import enqueue_on_commit

        enqueue_on_commit(sync_index)
    return added


def gallery_withdraw_decision(*, decision: Decision, actor: User) -> list[int]:
    """Remove the reference images this decision's request added (undo); their ids.

    Each goes through the catalogue's own removal: audited, file deleted on commit, vector
    dropped by the index sync."""
    from webapp.catalog.services import sku_image_remove

    images = SKUImage.objects.filter(
        source=SKUImage.Source.APPRAISAL,
        original_name__startswith=f"match-{decision.request_id}-photo-",
    ).select_related("sku")
    removed = []
    for image in images:
        removed.append(image.pk)
        sku_image_remove(image=image, actor=actor)
    return removed
