"""The catalogue: Category -> Brand -> Series -> SKU, with reference images."""

from __future__ import annotations

from django.db import models


class Category(models.Model):
    name = models.CharField(max_length=120, unique=True)

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
    # L2-normalised float32 vector and the model that produced it; the index is rebuilt from these.
    embedding = models.BinaryField(null=True, blank=True, editable=False)
    embedding_model = models.CharField(max_length=120, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["sku_id", "position", "id"]

    def __str__(self) -> str:
        return f"{self.sku.code} image {self.pk} ({self.source})"
