from django.contrib import admin

from webapp.learning.models import IndexVersion


@admin.register(IndexVersion)
class IndexVersionAdmin(admin.ModelAdmin):
    list_display = ["name", "model_version", "status", "is_active", "vector_count", "created_at"]
    readonly_fields = [f.name for f in IndexVersion._meta.fields]
