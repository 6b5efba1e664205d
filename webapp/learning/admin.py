from django.contrib import admin

from webapp.learning.models import IndexVersion, ModelVersion, Promotion, TrainingRun


@admin.register(IndexVersion)
class IndexVersionAdmin(admin.ModelAdmin):
    list_display = ["name", "model_version", "status", "is_active", "vector_count", "created_at"]
    readonly_fields = [f.name for f in IndexVersion._meta.fields]


# The learning loop's rows are written by services and tasks; the admin only shows them.
@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ["id", "status", "trigger", "stage", "progress", "created_at", "finished_at"]
    list_filter = ["status", "trigger"]
    readonly_fields = [f.name for f in TrainingRun._meta.fields]


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["name", "source", "gate", "created_at", "promoted_at"]
    list_filter = ["source", "gate"]
    readonly_fields = [f.name for f in ModelVersion._meta.fields]


@admin.register(Promotion)
class PromotionAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "model", "status", "automatic", "created_at"]
    readonly_fields = [f.name for f in Promotion._meta.fields]
