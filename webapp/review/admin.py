from django.contrib import admin

from webapp.review.models import BadCase


@admin.register(BadCase)
class BadCaseAdmin(admin.ModelAdmin):
    list_display = ["id", "request", "status", "margin", "created_at"]
    list_filter = ["status"]
