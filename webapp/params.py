"""Bounded work from any request: one place for search-text caps and query-parameter checks.

Every page and API endpoint reads its query parameters through these functions. A value out of
bounds raises BadParameter, which `webapp.errors` turns into a 400 (JSON under /api/, the
error page or an htmx fragment elsewhere): no request can make the server do unbounded work,
and no malformed value reaches the database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

from django.conf import settings

# PostgreSQL's bigint: ids above it can never exist, and some backends raise on them.
MAX_ID = 2**63 - 1

Choice = TypeVar("Choice", bound=str)


class BadParameter(ValueError):
    """A query parameter the server refuses; `str(exc)` is safe to show."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


def search_text(value: str | None, *, name: str = "q") -> str:
    """The search text, stripped; refused beyond SEARCH_MAX_CHARS characters or
    SEARCH_MAX_WORDS words (each word is one more filter over the catalogue)."""
    text = (value or "").strip()
    if "\x00" in text:
        raise BadParameter(name, "contains a NUL character.")
    if len(text) > settings.SEARCH_MAX_CHARS:
        raise BadParameter(
            name, f"at most {settings.SEARCH_MAX_CHARS} characters (got {len(text)})."
        )
    words = len(text.split())
    if words > settings.SEARCH_MAX_WORDS:
        raise BadParameter(name, f"at most {settings.SEARCH_MAX_WORDS} words (got {words}).")
    return text


def int_param(
    params: Mapping[str, str],
    name: str,
    *,
    default: int | None = None,
    min_value: int = 1,
    max_value: int = MAX_ID,
    strict: bool = True,
) -> int | None:
    """An optional integer parameter within [min_value, max_value]; empty means `default`.

    Anything else is refused, or, with `strict=False` (filters that have always ignored a
    value they do not understand), read as `default`."""
    raw = (params.get(name) or "").strip()
    if not raw:
        return default
    try:
        if len(raw) > 20 or not raw.lstrip("-").isdigit() or not raw.isascii():
            raise BadParameter(name, f"must be a whole number, not {raw[:40]!r}.")
        value = int(raw)
        if not min_value <= value <= max_value:
            raise BadParameter(name, f"must be between {min_value} and {max_value}.")
    except BadParameter:
        if strict:
            raise
        return default
    return value


def choice_param(
    params: Mapping[str, str], name: str, choices: Iterable[Choice], default: Choice,
    *, strict: bool = True,
) -> Choice:
    """One of `choices`; absent or empty means `default`, anything else is refused (or, with
    `strict=False`, read as `default`)."""
    raw = params.get(name) or ""
    if not raw:
        return default
    allowed = list(choices)
    if raw not in allowed:
        if not strict:
            return default
        shown = ", ".join(allowed[:12])
        raise BadParameter(name, f"must be one of {shown}.")
    return raw  # type: ignore[return-value]


def text_param(params: Mapping[str, str], name: str, *, max_chars: int = 120) -> str:
    """A short free-text parameter (an exact-match filter), refused beyond `max_chars`."""
    raw = (params.get(name) or "").strip()
    if len(raw) > max_chars or "\x00" in raw:
        raise BadParameter(name, f"at most {max_chars} characters.")
    return raw
