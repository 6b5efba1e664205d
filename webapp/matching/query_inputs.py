"""The appraiser's words about an item, besides the photos: free text and soft attributes.

They are evidence for the re-ranking stage, never filters: a wrong colour must not hide the
right SKU. Both are bounded and validated here, for the page and the API alike; bad input is
refused with a clear message (nothing is cut silently).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

MAX_QUERY_TEXT_CHARS = 300
MAX_QUERY_TEXT_WORDS = 40
MAX_SOFT_ATTRIBUTES = 8
MAX_ATTRIBUTE_VALUE_CHARS = 60

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACE = re.compile(r"\s+")


class QueryInputError(ValueError):
    def __init__(self, messages: Sequence[str]) -> None:
        super().__init__(" ".join(messages))
        self.messages = list(messages)


def _one_line(text: str) -> str:
    return _SPACE.sub(" ", _CONTROL.sub("", text)).strip()


def query_text_clean(text: object) -> str:
    """The free text on one line; QueryInputError when it is too long."""
    if text is None:
        return ""
    if not isinstance(text, str):
        raise QueryInputError(["The description must be text."])
    cleaned = _one_line(text)
    if len(cleaned) > MAX_QUERY_TEXT_CHARS:
        raise QueryInputError([f"The description is {len(cleaned)} characters long; at most "
                               f"{MAX_QUERY_TEXT_CHARS} are allowed."])
    words = len(cleaned.split())
    if words > MAX_QUERY_TEXT_WORDS:
        raise QueryInputError([f"The description has {words} words; at most "
                               f"{MAX_QUERY_TEXT_WORDS} are allowed."])
    return cleaned


def soft_attributes_clean(
    raw: Mapping[str, object] | Iterable[tuple[object, object]] | None,
    *,
    known_keys: Sequence[str],
) -> dict[str, str]:
    """{key: value} with the catalogue's spelling of each key; empty values are dropped.

    `raw` is a mapping (the API's JSON object) or (key, value) pairs (the page's rows)."""
    if raw is None:
        return {}
    if isinstance(raw, Mapping):
        pairs = list(raw.items())
    elif isinstance(raw, (str, bytes)):
        raise QueryInputError(["Attributes must be an object of attribute: value."])
    else:
        try:
            pairs = [(key, value) for key, value in raw]
        except (TypeError, ValueError) as exc:
            raise QueryInputError(["Attributes must be an object of attribute: value."]) from exc
    canonical = {key.casefold(): key for key in known_keys}
    cleaned: dict[str, str] = {}
    errors: list[str] = []
    for key, value in pairs:
        name = _one_line(str(key)) if key is not None else ""
        if value is None or (isinstance(value, str) and not value.strip()):
            continue  # an empty row of the form
        if not name:
            errors.append("An attribute value was given without its attribute.")
            continue
        known = canonical.get(name.casefold())
        if known is None:
            errors.append(f"Unknown attribute {name[:40]!r}; the catalogue knows "
                          f"{', '.join(known_keys[:20])}.")
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            errors.append(f"The value of {known} must be text.")
            continue
        text = _one_line(str(value))
        if len(text) > MAX_ATTRIBUTE_VALUE_CHARS:
            errors.append(f"The value of {known} is longer than {MAX_ATTRIBUTE_VALUE_CHARS} "
                          "characters.")
            continue
        if known in cleaned:
            errors.append(f"{known} is given twice.")
            continue
        cleaned[known] = text
    if len(cleaned) > MAX_SOFT_ATTRIBUTES:
        errors.append(f"At most {MAX_SOFT_ATTRIBUTES} attributes are allowed.")
    if errors:
        raise QueryInputError(errors)
    return cleaned
