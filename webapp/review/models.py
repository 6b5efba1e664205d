"""Bad cases: matches the appraiser rejected or corrected, for QA to diagnose."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from webapp.catalog.models import SKU
from webapp.matching.models import Decision, MatchRequest


class FailureCause(models.TextChoices):
    OCCLUSION = "occlusion", "Occlusion"
    LIGHTING = "lighting", "Lighting"
    ANGLE = "angle", "Angle"
    BACKGROUND = "background", "Background"
    COMPRESSION_BLUR = "compression_blur", "Compression / blur"
    SCRIBBLE = "scribble", "Scribbles or text overlay"
    WRONG_CROP = "wrong_crop", "Wrong crop"
    CATALOGUE_GAP = "catalogue_gap", "Catalogue gap (new SKU needed)"


class BadCase(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        RESOLVED = "resolved", "Resolved"

    request = models.OneToOneField(MatchRequest, on_delete=models.CASCADE, related_name="bad_case")
    decision = models.OneToOneField(Decision, on_delete=models.CASCADE, related_name="bad_case")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)
    # Gap between the top two candidates' scores; small margins are reviewed first.
    margin = models.FloatField(null=True, blank=True)
    causes = models.JSONField(default=list, blank=True)
    correct_sku = models.ForeignKey(
        SKU, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["status", "margin", "-created_at"]
