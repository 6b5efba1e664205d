from django.contrib import admin

from webapp.history.models import HistoryImport


@admin.register(HistoryImport)
class HistoryImportAdmin(admin.ModelAdmin):
    list_display = ["pk", "original_name", "origin", "status", "items_created", "created_by",
                    "created_at"]
    list_filter = ["status", "origin"]
    readonly_fields = ["report"]
