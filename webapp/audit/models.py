"""Audit history: who changed what, and when."""

from __future__ import annotations

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.utils import timezone


class AuditEntry(models.Model):
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="audit_entries",
    )
    # Kept as text so that the history still reads right after a user is deleted.
    actor_name = models.CharField(max_length=150, blank=True)
    # Dotted verb, e.g. "sku.update", "image.add", "decision.record", "model.promote".
    action = models.CharField(max_length=60, db_index=True)
    content_type = models.ForeignKey(
        ContentType, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    # The SKU the change concerns, if any: the per-SKU history reads this column.
    sku = models.ForeignKey(
        "catalog.SKU", null=True, blank=True, on_delete=models.SET_NULL,
        related_name="audit_entries",
    )
    # {"field": [old, new], ...} or any JSON the caller finds useful.
    changes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "audit entries"
        indexes = [
            models.Index(fields=["sku", "-created_at"]),
            models.Index(fields=["actor", "-created_at"]),
            models.Index(fields=["content_type", "object_id"]),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_name or 'system'} {self.action}"
