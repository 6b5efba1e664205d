"""A match request: 1..N photos in, ranked SKU candidates out, then a human decision."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from webapp.catalog.models import SKU, Brand, Category, Series, SKUImage
from webapp.jobs import JobRow


class MatchRequest(JobRow):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="match_requests"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    stage = models.CharField(max_length=40, blank=True)
    progress = models.PositiveSmallIntegerField(default=0)  # whole percent
    attempts = models.PositiveSmallIntegerField(default=0)
    # Optional filters chosen by the appraiser.
    category = models.ForeignKey(Category, null=True, blank=True, on_delete=models.SET_NULL)
    brand = models.ForeignKey(Brand, null=True, blank=True, on_delete=models.SET_NULL)
    series = models.ForeignKey(Series, null=True, blank=True, on_delete=models.SET_NULL)
    # Filters dropped because nothing passed them, e.g. ["series", "brand"].
    relaxed_filters = models.JSONField(default=list, blank=True)
    model_version = models.CharField(max_length=120, blank=True)
    index_version = models.CharField(max_length=120, blank=True)
    # Last time a task was sent for it: the sweeper re-sends QUEUED rows whose message was
    # lost (broker down at enqueue, the filesystem broker's deleted-on-receive messages).
    enqueued_at = models.DateTimeField(null=True, blank=True)
    # heartbeat_at (JobRow) is written every few seconds by the worker running it: a RUNNING
    # row with an old heartbeat lost its worker and may be taken over; a fresh one may not (no
    # match runs twice).
    timings_ms = models.JSONField(default=dict, blank=True)
    # Requests the worker ran through the model together with this one (itself included).
    batch_size = models.PositiveSmallIntegerField(default=1)
    # What the appraiser said about the item besides the photos (webapp.matching.query_inputs):
    # evidence for re-ranking, never a filter.
    query_text = models.TextField(blank=True, default="")
    soft_attributes = models.JSONField(default=dict, blank=True)  # {"colour": "red", ...}
    # The first candidate reached the calibrated threshold (the page's "confident"); null
    # until the match has run.
    confident = models.BooleanField(null=True, blank=True)

    class Source(models.TextChoices):
        APPRAISAL = "appraisal", "Appraisal"
        HISTORY = "history", "Imported history"

    # "history": a past listing imported as confirmed labelled data (webapp.history): done,
    # decided, no candidates; not live work, so kept out of the appraiser's pages and the
    # statistics of live decisions.
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.APPRAISAL)

    FAIL_KEEPS = (Status.DONE,)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self) -> str:
        return f"Match #{self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)

    @property
    def duration_ms(self) -> float | None:
        if self.finished_at and self.created_at:
            return (self.finished_at - self.created_at).total_seconds() * 1000
        return None


class QueryPhoto(models.Model):
    request = models.ForeignKey(MatchRequest, on_delete=models.CASCADE, related_name="photos")
    position = models.PositiveSmallIntegerField()
    original = models.FileField(upload_to="uploads/original/%Y/%m/")
    # EXIF-oriented RGB JPEG: what the model sees and the browser shows.
    image = models.ImageField(upload_to="uploads/normalised/%Y/%m/")
    original_name = models.CharField(max_length=255, blank=True)
    original_format = models.CharField(max_length=10)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    class BoxSource(models.TextChoices):
        DETECTOR = "detector", "Detected"
        FULL_FRAME = "full_frame", "Nothing detected: full photo used"
        CORRECTED = "corrected", "Corrected by the appraiser"

    # Item box [x0, y0, x1, y1] in pixels of `image`; null until the match has run.
    box = models.JSONField(null=True, blank=True)
    box_source = models.CharField(max_length=12, choices=BoxSource.choices, blank=True)
    detection_label = models.CharField(max_length=40, blank=True)
    detection_confidence = models.FloatField(null=True, blank=True)
    # Foreground mask (PNG, white = item) of the whole image, from segmentation.
    mask = models.ImageField(upload_to="uploads/masks/%Y/%m/", blank=True)

    class Meta:
        ordering = ["request_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["request", "position"], name="photo_position_unique")
        ]

    def __str__(self) -> str:
        return f"Match #{self.request_id} photo {self.position + 1}"

    @property
    def box_percent(self) -> dict[str, float] | None:
        """The box as CSS percentages of the photo, for drawing it over the image."""
        if not self.box:
            return None
        x0, y0, x1, y1 = self.box
        return {
            "left": 100 * x0 / self.width,
            "top": 100 * y0 / self.height,
            "width": 100 * (x1 - x0) / self.width,
            "height": 100 * (y1 - y0) / self.height,
        }



class Candidate(models.Model):
    request = models.ForeignKey(MatchRequest, on_delete=models.CASCADE, related_name="candidates")
    rank = models.PositiveSmallIntegerField()
    sku = models.ForeignKey(SKU, on_delete=models.PROTECT, related_name="+")
    score = models.FloatField(
        help_text="fused probability of being the SKU (re-ranking), else cosine mapped to [0, 1]"
    )
    cosine = models.FloatField()
    query_photo = models.ForeignKey(QueryPhoto, on_delete=models.CASCADE, related_name="+")
    reference_image = models.ForeignKey(
        SKUImage, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    # What the re-ranking stage found (ml.rerank.CandidateEvidence as JSON): matched
    # keypoints, key parts, OCR words, attribute agreement, features and contributions.
    evidence = models.JSONField(default=dict, blank=True)
    # Not a column: the catalogue image the evidence names, set on the candidates that
    # webapp.matching.selectors.request_with_candidates reads.
    evidence_reference: SKUImage | None

    class Meta:
        ordering = ["request_id", "rank"]
        constraints = [
            models.UniqueConstraint(fields=["request", "rank"], name="candidate_rank_unique")
        ]

    def __str__(self) -> str:
        return f"Match #{self.request_id} candidate {self.rank}: {self.sku_id} ({self.score:.2f})"


class Decision(models.Model):
    class Outcome(models.TextChoices):
        ACCEPT = "accept", "Accepted a candidate"
        REJECT = "reject", "Rejected all"
        OTHER_SKU = "other_sku", "Attached another SKU"
        NEW_SKU = "new_sku", "New SKU (not in the catalogue)"

    request = models.OneToOneField(MatchRequest, on_delete=models.CASCADE, related_name="decision")
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    sku = models.ForeignKey(SKU, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    candidate = models.ForeignKey(
        Candidate, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    decided_at = models.DateTimeField(auto_now_add=True)
    note = models.TextField(blank=True)
    # The versions in force when the decision was made.
    model_version = models.CharField(max_length=120, blank=True)
    index_version = models.CharField(max_length=120, blank=True)

    def __str__(self) -> str:
        return f"Match #{self.request_id}: {self.outcome}"


class FusionWeights(models.Model):
    """A fusion model (ml.rerank.fusion.FusionModel) fitted on review decisions; the newest
    row is the one in use, the measured default until there is one."""

    weights = models.JSONField()
    intercept = models.FloatField()
    threshold = models.FloatField(help_text="probability from which the first is confident")
    source = models.CharField(max_length=60)
    decisions = models.PositiveIntegerField()
    metrics = models.JSONField(default=dict, blank=True)
    fitted_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-fitted_at", "-pk"]
        verbose_name_plural = "fusion weights"

    def __str__(self) -> str:
        return f"fusion {self.source} ({self.decisions} decisions, {self.fitted_at:%Y-%m-%d})"


class ScoreThreshold(models.Model):
    """A category's calibrated "confident match" score, fitted on review decisions."""

    category = models.OneToOneField(Category, on_delete=models.CASCADE, related_name="threshold")
    threshold = models.FloatField()
    target_precision = models.FloatField()
    precision = models.FloatField()
    coverage = models.FloatField()
    support = models.PositiveIntegerField()
    decisions = models.PositiveIntegerField()
    computed_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.category}: {self.threshold:.3f} (precision {self.precision:.2f})"
