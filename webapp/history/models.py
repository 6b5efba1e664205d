"""A labelled history import: long work, so a row people can watch.

The imported items themselves are ordinary confirmed matches (`MatchRequest` with
`source="history"`, its `QueryPhoto` rows and a `Decision` naming the SKU), so every reader of
labelled data (training, the gate, the gallery) sees them without knowing where they came from.
`HistoryPhoto` keeps, per photo, which import and which line of which file it came from.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from webapp.jobs import JobRow
from webapp.matching.models import MatchRequest, QueryPhoto


class HistoryImport(JobRow):
    class Status(models.TextChoices):
        QUEUED = "queued", "Waiting for the dry run"
        PLANNING = "planning", "Dry run running"
        PLANNED = "planned", "Dry run"
        APPLY_QUEUED = "apply_queued", "Waiting to import"
        APPLYING = "applying", "Importing"
        APPLIED = "applied", "Imported"
        REFUSED = "refused", "Refused"
        FAILED = "failed", "Failed"

    class Isolation(models.TextChoices):
        NONE = "", "Not asked"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Who pressed "Import": the imported decisions are recorded as theirs.
    applied_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Where the rows come from: "upload", "command", "grocery" or "demo".
    origin = models.CharField(max_length=12, default="upload")
    original_name = models.CharField(max_length=255, blank=True)
    # The page's upload, always one zip (history.csv at its root, photos inside); deleted
    # once applied. Command-line imports read their folder or zip in place and store none.
    bundle = models.FileField(upload_to="imports/history/%Y/%m/", blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    stage = models.CharField(max_length=60, blank=True)
    rows_total = models.PositiveIntegerField(default=0)
    rows_done = models.PositiveIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=0)
    applied_at = models.DateTimeField(null=True, blank=True)
    # The row-by-row plan (webapp.history.services.HistoryPlan.as_json) of the last pass.
    report = models.JSONField(default=dict, blank=True)
    items_created = models.PositiveIntegerField(default=0)
    photos_created = models.PositiveIntegerField(default=0)
    gallery_added = models.PositiveIntegerField(default=0)
    # The follow-up on the gpu queue: detector + GrabCut boxes for the imported photos.
    isolation = models.CharField(max_length=8, choices=Isolation.choices, blank=True)
    photos_isolated = models.PositiveIntegerField(default=0)
    isolation_error = models.TextField(blank=True)
    isolation_heartbeat_at = models.DateTimeField(null=True, blank=True)

    FAIL_KEEPS = (Status.APPLIED,)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"History import #{self.pk} ({self.status})"

    @property
    def is_working(self) -> bool:
        return self.status in (self.Status.QUEUED, self.Status.PLANNING,
                               self.Status.APPLY_QUEUED, self.Status.APPLYING)

    @property
    def phase(self) -> str:
        """What the page shows; when it changes, the page reloads. Isolation chunks go queued
        and running in turn, which is one phase to a reader."""
        working = self.isolation in (self.Isolation.QUEUED, self.Isolation.RUNNING)
        return f"{self.status}/{'working' if working else self.isolation}"

    # Replaces JobRow's column (Django adds no inherited field whose name the class defines).
    @property
    def progress(self) -> float:  # type: ignore[override]
        """Percent of the current pass over the rows."""
        if self.status in (self.Status.PLANNED, self.Status.APPLIED):
            return 100.0
        return 100.0 * self.rows_done / self.rows_total if self.rows_total else 0.0

    @property
    def isolation_progress(self) -> float:
        return 100.0 * self.photos_isolated / self.photos_created if self.photos_created else 0.0


class HistoryPhoto(models.Model):
    """Where an imported photo came from; its checksum makes re-importing a file a no-op."""

    history_import = models.ForeignKey(HistoryImport, on_delete=models.CASCADE,
                                       related_name="photos")
    request = models.ForeignKey(MatchRequest, on_delete=models.CASCADE, related_name="+")
    photo = models.OneToOneField(QueryPhoto, on_delete=models.CASCADE, related_name="history")
    line = models.PositiveIntegerField()
    path = models.CharField(max_length=500)
    listing = models.CharField(max_length=200, blank=True)
    # sha256 of the file as supplied.
    checksum = models.CharField(max_length=64, db_index=True)

    class Meta:
        ordering = ["history_import_id", "line"]

    def __str__(self) -> str:
        return f"History import #{self.history_import_id} line {self.line}"
