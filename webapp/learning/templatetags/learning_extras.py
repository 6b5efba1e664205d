from __future__ import annotations

from pathlib import Path

from django import template

register = template.Library()


def _number(value: object) -> float | None:
    """Missing figures (None, or "" from an absent key) render as a dash, never an error."""
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


@register.filter
def hms(seconds: object) -> str:
    value = _number(seconds)
    if value is None:
        return "—"
    s = int(max(0.0, value))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


@register.filter
def pct(value: object) -> str:
    number = _number(value)
    return "—" if number is None else f"{100 * number:.1f}%"


@register.filter
def signed_pct(value: object) -> str:
    number = _number(value)
    return "—" if number is None else f"{100 * number:+.1f} pt"


@register.filter
def basename(value: str) -> str:
    return Path(value).name if value else ""


@register.filter
def get(mapping: dict, key: str) -> object:
    return mapping.get(key) if isinstance(mapping, dict) else None
