"""The catalogue: Category -> Brand -> Series -> SKU, with reference images."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from webapp.jobs import JobRow


class Category(models.Model):
    name = models.CharField(max_length=120, unique=True)
    # Detector class names that count as this category's item (empty: any class). Small COCO
    # models confuse bag types, so bags list all of handbag, backpack and suitcase.
    detection_classes = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.name


class Brand(models.Model):
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="brands")
    name = models.CharField(max_length=120)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["category", "name"], name="brand_unique_in_category")
        ]

    def __str__(self) -> str:
        return self.name


class Series(models.Model):
    brand = models.ForeignKey(Brand, on_delete=models.PROTECT, related_name="series")
    name = models.CharField(max_length=120)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "series"
        constraints = [
            models.UniqueConstraint(fields=["brand", "name"], name="series_unique_in_brand")
        ]

    def __str__(self) -> str:
        return self.name


class SKU(models.Model):
    code = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    series = models.ForeignKey(Series, on_delete=models.PROTECT, related_name="skus")
    colour = models.CharField(max_length=60, blank=True)
    material = models.CharField(max_length=60, blank=True)
    size = models.CharField(max_length=60, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    is_active = models.BooleanField(default=True)
    # Set when an admin merged this SKU into another; merged SKUs stay, inactive, for history.
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="merged_from"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["code"]
        verbose_name = "SKU"

    def __str__(self) -> str:
        return f"{self.code} · {self.name}"

    @property
    def brand(self) -> Brand:
        return self.series.brand

    @property
    def category(self) -> Category:
        return self.series.brand.category


class SKUImage(models.Model):
    class Source(models.TextChoices):
        CATALOGUE = "catalogue", "Catalogue"
        APPRAISAL = "appraisal", "Confirmed appraisal"

    sku = models.ForeignKey(SKU, on_delete=models.CASCADE, related_name="images")
    image = models.ImageField(upload_to="catalog/%Y/%m/")
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.CATALOGUE)
    position = models.PositiveIntegerField(default=0)
    # Path in the import folder, or the uploaded file name: keeps re-imports idempotent.
    original_name = models.CharField(max_length=255, blank=True)
    # sha256 of the file as supplied: a re-import of the same bytes is recognised as unchanged.
    checksum = models.CharField(max_length=64, blank=True, db_index=True)
    # L2-normalised float32 vector and the model that produced it; the index is rebuilt from these.
    embedding = models.BinaryField(null=True, blank=True, editable=False)
    embedding_model = models.CharField(max_length=120, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["sku_id", "position", "id"]

    def __str__(self) -> str:
        return f"{self.sku.code} image {self.pk} ({self.source})"


class DuplicatePair(models.Model):
    """Two active SKUs whose reference images (or centroids) are nearly identical.

    One row per SKU pair, `sku_a_id < sku_b_id`. A pair marked distinct stays so that later
    scans do not list it again.
    """

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        DISTINCT = "distinct", "Marked distinct"
        MERGED = "merged", "Merged"

    sku_a = models.ForeignKey(SKU, on_delete=models.CASCADE, related_name="+")
    sku_b = models.ForeignKey(SKU, on_delete=models.CASCADE, related_name="+")
    # The closest pair of reference images across the two SKUs.
    image_a = models.ForeignKey(
        SKUImage, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    image_b = models.ForeignKey(
        SKUImage, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    image_cosine = models.FloatField(null=True, blank=True)
    image_pairs = models.PositiveIntegerField(default=0)
    sku_cosine = models.FloatField(null=True, blank=True, help_text="cosine of the SKU centroids")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    found_at = models.DateTimeField(auto_now_add=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["status", "-image_cosine"]
        constraints = [
            models.UniqueConstraint(fields=["sku_a", "sku_b"], name="duplicate_pair_unique"),
            models.CheckConstraint(
                condition=models.Q(sku_a__lt=models.F("sku_b")), name="duplicate_pair_ordered"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.sku_a_id} ~ {self.sku_b_id} ({self.status})"


class DuplicateScan(JobRow):
    """One near-duplicate scan: a row the page polls while the worker computes."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    threshold = models.FloatField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    images_compared = models.PositiveIntegerField(default=0)
    pairs_found = models.PositiveIntegerField(default=0)

    FAIL_KEEPS = (Status.DONE,)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Duplicate scan #{self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)


class CatalogueImport(JobRow):
    """A bulk import: planned by a dry run, then applied (all or nothing) or refused."""

    class Status(models.TextChoices):
        PLANNED = "planned", "Dry run"
        APPLIED = "applied", "Imported"
        REFUSED = "refused", "Refused"

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The upload, always kept as one zip (catalogue.csv at its root, images inside).
    bundle = models.FileField(upload_to="imports/%Y/%m/")
    original_name = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PLANNED)
    # The row-by-row plan of the last run (see webapp.catalog.bulk.ImportPlan.as_json).
    report = models.JSONField(default=dict, blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)

    FAIL_KEEPS = (Status.APPLIED,)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Catalogue import #{self.pk} ({self.status})"
