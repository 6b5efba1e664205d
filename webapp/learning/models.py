"""Model and index versions: long work is a row people can watch."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from webapp.jobs import JobRow


class IndexVersion(JobRow):
    class Status(models.TextChoices):
        BUILDING = "building", "Building"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"
        PRUNED = "pruned", "Pruned (files deleted)"

    name = models.CharField(max_length=120, unique=True)
    model_version = models.CharField(max_length=120)
    # What to load for queries against this index: a backbone name or a checkpoint path.
    model_ref = models.CharField(max_length=500, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.BUILDING)
    is_active = models.BooleanField(default=False)
    vector_count = models.PositiveIntegerField(default=0)
    added = models.PositiveIntegerField(default=0)
    removed = models.PositiveIntegerField(default=0)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL)
    pruned_at = models.DateTimeField(null=True, blank=True)

    FAIL_KEEPS = (Status.READY, Status.PRUNED)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_active"], condition=models.Q(is_active=True), name="one_active_index"
            )
        ]

    def __str__(self) -> str:
        return self.name


class TrainingRun(JobRow):
    """One retraining of the embedding network; the page polls this row, never the GPU."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    class Trigger(models.TextChoices):
        AUTO = "auto", "Enough new bad cases"
        MANUAL = "manual", "Asked by an admin"

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.MANUAL)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Overrides of the training settings, e.g. {"epochs": 2} or {"shuffle_labels": true}.
    options = models.JSONField(default=dict, blank=True)
    cancel_requested = models.BooleanField(default=False)
    attempts = models.PositiveSmallIntegerField(default=0)
    stage = models.CharField(max_length=40, blank=True)
    epoch = models.PositiveIntegerField(default=0)
    epochs = models.PositiveIntegerField(default=0)
    step = models.PositiveIntegerField(default=0)
    steps_total = models.PositiveIntegerField(default=0)
    loss = models.FloatField(null=True, blank=True)
    eta_s = models.FloatField(null=True, blank=True)
    log = models.TextField(blank=True)
    # Bad cases resolved up to this instant are in the data; later ones count toward the next run.
    data_cutoff = models.DateTimeField(null=True, blank=True)
    data_snapshot = models.JSONField(default=dict, blank=True)
    cause_weights = models.JSONField(default=dict, blank=True)
    config = models.JSONField(default=dict, blank=True)
    history = models.JSONField(default=list, blank=True)

    FAIL_KEEPS = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)
    ERROR_MAX_CHARS = 4000

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # At most one run in flight: the trigger and the admin button cannot start two.
            models.UniqueConstraint(
                models.Value(1),
                condition=models.Q(status__in=["queued", "running"]),
                name="one_training_run_in_flight",
            )
        ]

    def __str__(self) -> str:
        return f"Training run #{self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED, self.Status.CANCELLED)

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at or self.heartbeat_at or self.started_at
        return (end - self.started_at).total_seconds()


class ModelVersion(models.Model):
    """A registered embedding model: pretrained, or trained by a run (immutable checkpoint)."""

    class Source(models.TextChoices):
        PRETRAINED = "pretrained", "Pretrained backbone"
        TRAINED = "trained", "Trained here"

    class Gate(models.TextChoices):
        PENDING = "pending", "Not evaluated"
        PASSED = "passed", "Passed"
        REFUSED = "refused", "Refused"

    name = models.CharField(max_length=160, unique=True)
    # What ml_gateway loads: a backbone name or an absolute checkpoint path.
    model_ref = models.CharField(max_length=500, unique=True)
    source = models.CharField(max_length=12, choices=Source.choices)
    training_run = models.OneToOneField(
        TrainingRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="model"
    )
    data_snapshot = models.JSONField(default=dict, blank=True)
    config = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    gate = models.CharField(max_length=10, choices=Gate.choices, default=Gate.PENDING)
    gate_report = models.JSONField(default=dict, blank=True)
    gated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Last time it went live (promotion or rollback).
    promoted_at = models.DateTimeField(null=True, blank=True)
    # The checkpoint was deleted by the retention policy (webapp.learning.retention).
    pruned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name


class Promotion(JobRow):
    """Making a model live: re-embed the catalogue, build its index, swap both atomically."""

    class Kind(models.TextChoices):
        PROMOTE = "promote", "Promotion"
        ROLLBACK = "rollback", "Rollback"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    model = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="promotions")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    automatic = models.BooleanField(default=False)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    previous_model_ref = models.CharField(max_length=500, blank=True)
    index_version = models.ForeignKey(
        IndexVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    FAIL_KEEPS = (Status.DONE,)
    ERROR_MAX_CHARS = 4000

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                models.Value(1),
                condition=models.Q(status__in=["queued", "running"]),
                name="one_promotion_in_flight",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of {self.model} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)
