from __future__ import annotations

from pathlib import Path

from django import template

register = template.Library()


@register.filter
def hms(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = int(max(0, seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


@register.filter
def pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * float(value):.1f}%"


@register.filter
def signed_pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * float(value):+.1f} pt"


@register.filter
def basename(value: str) -> str:
    return Path(value).name if value else ""


@register.filter
def get(mapping: dict, key: str) -> object:
    return mapping.get(key) if isinstance(mapping, dict) else None
