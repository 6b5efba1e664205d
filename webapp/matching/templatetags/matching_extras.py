import math
from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal

from django import template
from django.template.defaultfilters import floatformat
from django.utils.html import format_html_join
from django.utils.safestring import SafeString

register = template.Library()


@register.filter
def percent(value: float) -> str:
    return f"{value * 100:.0f}%"


# ----- evidence of the re-ranking stage (Candidate.evidence) --------------------------------

EVIDENCE_HEIGHT = 200  # px of both images in the drawn match view
EVIDENCE_GAP = 28
KIND_LABELS = {
    "visual": "Visual similarity", "spatial": "Matched keypoints", "text": "Text on the item",
    "attributes": "Attributes (model)", "query_text": "Your text",
    "soft_attributes": "Your attributes",
}


def _crop_bounds(photo) -> tuple[int, int, int, int]:
    """The crop that was embedded, in photo pixels (as ml.segment.isolate cuts it)."""
    if not photo.box:
        return 0, 0, photo.width, photo.height
    x0, y0, x1, y1 = photo.box
    return int(x0), int(y0), min(photo.width, math.ceil(x1)), min(photo.height, math.ceil(y1))


@register.inclusion_tag("matching/_evidence.html")
def evidence_view(candidate, photos) -> dict[str, object]:
    """The drawn evidence of one candidate: the query crop beside the verified reference with
    the inlier matches as lines and the key parts as boxes, the OCR lines whose words matched,
    and each kind's contribution to the score."""
    evidence = candidate.evidence or {}
    if not evidence:
        return {"evidence": None}
    spatial = evidence.get("spatial") or None
    text = evidence.get("text") or None
    photos = list(photos)
    query_index = spatial["query_index"] if spatial else 0
    photo = photos[query_index] if query_index < len(photos) else candidate.query_photo
    cx0, cy0, cx1, cy1 = _crop_bounds(photo)
    crop_w, crop_h = max(1, cx1 - cx0), max(1, cy1 - cy0)
    reference = candidate.reference_image
    if spatial:
        # The verified catalogue image, read with the page's candidates by
        # webapp.matching.selectors.request_with_candidates (None: it was removed since).
        reference = candidate.evidence_reference or reference
    h = EVIDENCE_HEIGHT
    left_w = h * crop_w / crop_h
    ref_size = tuple(spatial["reference_size"]) if spatial else (
        (reference.image.width, reference.image.height) if reference else (1, 1))
    right_w = h * ref_size[0] / max(1, ref_size[1]) if reference else 0.0
    sl, sr = h / crop_h, h / max(1, ref_size[1])
    right_x = left_w + EVIDENCE_GAP

    lines, left_parts, right_parts = [], [], []
    if spatial:
        for (qx, qy), (rx, ry) in zip(spatial["query_points"], spatial["reference_points"],
                                      strict=False):
            lines.append({"x1": qx * sl, "y1": qy * sl, "x2": right_x + rx * sr, "y2": ry * sr})
        for part in spatial.get("query_parts", []):
            left_parts.append(_rect(part, sl, 0.0))
        for part in spatial.get("reference_parts", []):
            right_parts.append(_rect(part, sr, right_x))
    words = []
    for match in (text or {}).get("matches", []):
        box = match.get("box")
        if box and match.get("query_index", 0) == query_index:
            words.append({**_rect({"x0": box[0], "y0": box[1], "x1": box[2], "y1": box[3]},
                                  sl, 0.0), "word": match["word"]})
    contributions = evidence.get("contributions", {})
    largest = max([abs(v) for v in contributions.values()] or [1.0]) or 1.0
    bars = [
        {"kind": kind, "label": KIND_LABELS.get(kind, kind), "value": value,
         "width": 100 * abs(value) / largest, "positive": value >= 0}
        for kind, value in contributions.items() if abs(value) >= 0.005 or kind == "visual"
    ]
    return {
        "evidence": evidence,
        "candidate": candidate,
        "spatial": spatial,
        "text": text,
        "typed": evidence.get("query_text") or None,
        "attributes": evidence.get("attributes") or None,
        "soft": evidence.get("soft_attributes") or None,
        "photo": photo,
        "reference": reference,
        "width": left_w + (EVIDENCE_GAP + right_w if reference else 0),
        "height": h,
        "left_w": left_w,
        "right_x": right_x,
        "right_w": right_w,
        "view_box": f"{cx0} {cy0} {crop_w} {crop_h}",
        # Drawn here rather than by template loops: ~200 elements a candidate.
        "lines_svg": _svg('<line class="match" x1="{}" y1="{}" x2="{}" y2="{}"></line>', lines,
                          ("x1", "y1", "x2", "y2")),
        "left_parts_svg": _svg(_KEY_PART, left_parts, _RECT),
        "right_parts_svg": _svg(_KEY_PART, right_parts, _RECT),
        "words_svg": _svg('<rect class="ocr-word" x="{}" y="{}" width="{}" height="{}">'
                          "<title>read \u201c{}\u201d</title></rect>", words, _RECT, "word"),
        "bars": bars,
    }


_TENTH = Decimal("0.1")


def _tenths(value: float) -> str:
    """``value|floatformat:1``, digit for digit, without the filter's localisation machinery
    (a page draws hundreds of coordinates): the value's repr rounded half up to one decimal,
    and no minus sign on a zero."""
    if not math.isfinite(value):
        return str(floatformat(value, 1))
    rounded = Decimal(repr(float(value))).quantize(_TENTH, rounding=ROUND_HALF_UP)
    return f"{abs(rounded) if rounded == 0 else rounded:f}"


def _svg(markup: str, rows: Iterable[dict], keys: tuple[str, ...], *text: str) -> SafeString:
    """One element per row, its coordinates formatted as ``floatformat:1`` would, its text
    escaped as the template would."""
    return format_html_join(
        "", markup, ((*(_tenths(row[k]) for k in keys), *(row[t] for t in text)) for row in rows)
    )


_RECT = ("x", "y", "w", "h")
_KEY_PART = '<rect class="key-part" x="{}" y="{}" width="{}" height="{}"></rect>'


def _rect(part: dict, scale: float, offset: float) -> dict[str, float]:
    return {"x": offset + part["x0"] * scale, "y": part["y0"] * scale,
            "w": (part["x1"] - part["x0"]) * scale, "h": (part["y1"] - part["y0"]) * scale}
