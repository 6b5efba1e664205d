from __future__ import annotations

import json
from typing import Any

from django import template

register = template.Library()

MAX_CHARS = 120


@register.filter
def change_items(changes: Any) -> list[tuple[str, Any, Any]]:
    """{"field": [old, new]} -> [(field, old, new)]; other shapes show as the new value."""
    if not isinstance(changes, dict):
        return []
    items = []
    for field, value in changes.items():
        if isinstance(value, list | tuple) and len(value) == 2:
            items.append((field, value[0], value[1]))
        else:
            items.append((field, None, value))
    return items


@register.filter
def short_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 1] + "…"
