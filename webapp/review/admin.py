from django.contrib import admin

from webapp.review.models import BadCase, CatalogueGap


@admin.register(BadCase)
class BadCaseAdmin(admin.ModelAdmin):
    list_display = ["id", "request", "status", "margin", "category", "correct_sku", "created_at"]
    list_filter = ["status", "category"]
    raw_id_fields = ["request", "decision", "correct_sku"]


@admin.register(CatalogueGap)
class CatalogueGapAdmin(admin.ModelAdmin):
    list_display = ["id", "bad_case", "status", "sku", "created_at"]
    list_filter = ["status"]
    raw_id_fields = ["bad_case", "sku"]
