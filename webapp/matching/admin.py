from django.contrib import admin

from webapp.matching.models import Candidate, Decision, MatchRequest


class CandidateInline(admin.TabularInline):
    model = Candidate
    extra = 0
    readonly_fields = ["rank", "sku", "score", "cosine", "query_photo", "reference_image"]


@admin.register(MatchRequest)
class MatchRequestAdmin(admin.ModelAdmin):
    list_display = ["id", "created_by", "status", "model_version", "index_version", "created_at"]
    list_filter = ["status"]
    inlines = [CandidateInline]


admin.site.register(Decision)
