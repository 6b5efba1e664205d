"""Serializer fields for query parameters, bounded by the shared rules of webapp.params."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import serializers

from webapp.params import MAX_ID, BadParameter, search_text


class IdField(serializers.IntegerField):
    """A database id: 1 .. the largest id the database can hold."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(**kwargs)


class SearchTextField(serializers.CharField):
    """Search text within SEARCH_MAX_CHARS characters and SEARCH_MAX_WORDS words."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", settings.SEARCH_MAX_CHARS)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        text = super().to_internal_value(data)
        try:
            return search_text(text)
        except BadParameter as exc:
            raise serializers.ValidationError(str(exc).split(": ", 1)[-1]) from exc
