"""Bad cases: matches the appraiser rejected or corrected, for QA to diagnose."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from webapp.catalog.models import SKU, Category
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
    # For filtering: the correct SKU's category once known, else the request's filter or the
    # top candidate's.
    category = models.ForeignKey(
        Category, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    note = models.TextField(blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["status", "margin", "-created_at"]
        indexes = [
            models.Index(fields=["status", "margin"]),
            models.Index(fields=["status", "resolved_at"]),
        ]

    def __str__(self) -> str:
        return f"Bad case for match #{self.request_id} ({self.status})"

    @property
    def is_gap(self) -> bool:
        return FailureCause.CATALOGUE_GAP in self.causes

    @property
    def cause_labels(self) -> list[str]:
        labels = dict(FailureCause.choices)
        return [labels.get(c, c) for c in self.causes]


class CatalogueGap(models.Model):
    """A photo QA could not attach to any SKU: the catalogue admins' to-do list."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ADDED = "added", "SKU added"
        DISMISSED = "dismissed", "Dismissed"

    bad_case = models.OneToOneField(BadCase, on_delete=models.CASCADE, related_name="gap")
    note = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    reported_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # The SKU the admins created (or found) for it, when they did.
    sku = models.ForeignKey(SKU, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["status", "-created_at"]

    def __str__(self) -> str:
        return f"Catalogue gap from match #{self.bad_case.request_id} ({self.status})"
