"""Model and index versions: long work is a row people can watch."""

from __future__ import annotations

from django.db import models


class IndexVersion(models.Model):
    class Status(models.TextChoices):
        BUILDING = "building", "Building"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    name = models.CharField(max_length=120, unique=True)
    model_version = models.CharField(max_length=120)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.BUILDING)
    is_active = models.BooleanField(default=False)
    vector_count = models.PositiveIntegerField(default=0)
    added = models.PositiveIntegerField(default=0)
    removed = models.PositiveIntegerField(default=0)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_active"], condition=models.Q(is_active=True), name="one_active_index"
            )
        ]

    def __str__(self) -> str:
        return self.name
