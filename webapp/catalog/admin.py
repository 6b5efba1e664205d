from django.contrib import admin

from webapp.catalog.models import (
    SKU,
    Brand,
    CatalogueImport,
    Category,
    DuplicatePair,
    Series,
    SKUImage,
)


class SKUImageInline(admin.TabularInline):
    model = SKUImage
    extra = 1
    fields = ["image", "source", "position", "embedding_model"]
    readonly_fields = ["embedding_model"]


@admin.register(SKU)
class SKUAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "series", "colour", "material", "is_active"]
    list_filter = ["is_active", "series__brand__category", "series__brand"]
    search_fields = ["code", "name"]
    inlines = [SKUImageInline]


admin.site.register(Category)
admin.site.register(Brand)
admin.site.register(Series)
admin.site.site_header = "SKU Lens catalogue admin"


@admin.register(DuplicatePair)
class DuplicatePairAdmin(admin.ModelAdmin):
    list_display = ["sku_a", "sku_b", "image_cosine", "sku_cosine", "status", "resolved_by"]
    list_filter = ["status"]


@admin.register(CatalogueImport)
class CatalogueImportAdmin(admin.ModelAdmin):
    list_display = ["pk", "original_name", "status", "created_by", "created_at"]
    list_filter = ["status"]
    readonly_fields = ["report"]
