"""What the loop has learnt so far, as labelled data: for training, the gate and the replay.

A photo's label is known when
- the appraiser accepted a candidate with confidence (no bad case), or
- QA resolved its bad case with a correct SKU (a catalogue gap has no label until the
  admins name the new SKU).
Candidates shown on a bad case that are not the label are known-wrong: the hard negatives.
A fixed share of requests (by a hash of their id) is held out of training for the gate.
"""

from __future__ import annotations

import csv
import hashlib
import random
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from django.conf import settings

from webapp.catalog.models import SKU, SKUImage
from webapp.matching.models import Candidate, Decision, QueryPhoto
from webapp.review.crops import query_photo_crop
from webapp.review.models import BadCase

NEGATIVE_RANKS = 4  # what the appraiser looked at first: the business Top-4
COLUMNS = ["path", "label", "role", "category", "brand", "series", "negatives"]


def is_holdout(request_id: int, percent: int | None = None) -> bool:
    """Deterministic and stable as data grows: a request never moves between the splits."""
    percent = settings.GATE_HOLDOUT_PERCENT if percent is None else percent
    digest = hashlib.sha256(f"skulens-holdout:{request_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 100 < percent


@dataclass(frozen=True)
class LabelledRequest:
    request_id: int
    sku_id: int
    photo_ids: tuple[int, ...]
    negative_sku_ids: tuple[int, ...]
    from_bad_case: bool
    decided_at: datetime


def labelled_requests(*, until: datetime | None = None) -> list[LabelledRequest]:
    """Every decided request whose right SKU is known (active SKUs only), oldest first."""
    decisions = Decision.objects.order_by("decided_at", "request_id")
    if until is not None:
        decisions = decisions.filter(decided_at__lte=until)
    rows = list(decisions.values_list("request_id", "sku_id", "decided_at"))
    cases = {
        request_id: (status, correct, resolved_at)
        for request_id, status, correct, resolved_at in BadCase.objects.values_list(
            "request_id", "status", "correct_sku_id", "resolved_at"
        )
    }
    active = set(SKU.objects.filter(is_active=True).values_list("pk", flat=True))
    labelled: list[tuple[int, int, bool, datetime]] = []
    for request_id, sku_id, decided_at in rows:
        case = cases.get(request_id)
        if case is None:
            label, from_case = sku_id, False
        else:
            status, correct, resolved_at = case
            resolved_in_time = until is None or (resolved_at is not None and resolved_at <= until)
            if status != BadCase.Status.RESOLVED or not resolved_in_time:
                continue
            label, from_case = correct, True
        if label is not None and label in active:
            labelled.append((request_id, label, from_case, decided_at))
    ids = [r[0] for r in labelled]
    photos: dict[int, list[int]] = defaultdict(list)
    for photo_id, request_id in QueryPhoto.objects.filter(request_id__in=ids).order_by(
        "position"
    ).values_list("pk", "request_id"):
        photos[request_id].append(photo_id)
    shown: dict[int, list[int]] = defaultdict(list)
    bad = [r[0] for r in labelled if r[2]]
    for request_id, sku_id in Candidate.objects.filter(
        request_id__in=bad, rank__lte=NEGATIVE_RANKS
    ).order_by("rank").values_list("request_id", "sku_id"):
        shown[request_id].append(sku_id)
    return [
        LabelledRequest(
            request_id, label, tuple(photos[request_id]),
            tuple(s for s in shown.get(request_id, []) if s != label), from_case, decided_at,
        )
        for request_id, label, from_case, decided_at in labelled
        if photos[request_id]
    ]


def _sku_columns(sku_ids: set[int]) -> dict[int, dict[str, str]]:
    return {
        sku.pk: {
            "label": sku.code,
            "category": sku.series.brand.category.name,
            "brand": sku.series.brand.name,
            "series": sku.series.name,
        }
        for sku in SKU.objects.filter(pk__in=sku_ids).select_related("series__brand__category")
    }


def crop_file(photo: QueryPhoto, folder: Path) -> Path:
    """The photo's item crop as a JPEG, written once per (photo, box, mask) and then reused."""
    key = hashlib.sha256(f"{photo.pk}|{photo.box}|{photo.mask.name}".encode()).hexdigest()[:12]
    path = folder / f"p{photo.pk}-{key}.jpg"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        query_photo_crop(photo).convert("RGB").save(tmp, "JPEG", quality=92)
        tmp.replace(path)
    return path


@dataclass(frozen=True)
class DataSnapshot:
    csv: str
    csv_sha256: str
    cutoff: str
    catalogue_images: int
    photos: int
    requests: int
    from_bad_cases: int
    hard_negatives: int
    labels: int
    holdout_requests: int
    shuffled_labels: bool
    cause_counts: dict[str, int]

    def as_json(self) -> dict[str, object]:
        return asdict(self)


def cause_counts(*, until: datetime) -> dict[str, int]:
    """Tagged causes of the bad cases resolved up to `until`: the augmentation weights."""
    counts: Counter[str] = Counter()
    for causes in BadCase.objects.filter(
        status=BadCase.Status.RESOLVED, resolved_at__lte=until
    ).values_list("causes", flat=True):
        counts.update(causes or [])
    return dict(counts)


def training_data_export(
    *, folder: Path, until: datetime, shuffle_labels: bool = False, seed: int = 0
) -> DataSnapshot:
    """Write `folder/train.csv`: catalogue images, then labelled photo crops (hold-out excluded).

    `shuffle_labels` permutes the photos' labels: a deliberately broken model for showing that
    the gate refuses it. Never used by the automatic trigger."""
    folder.mkdir(parents=True, exist_ok=True)
    known = labelled_requests(until=until)
    requests = [r for r in known if not is_holdout(r.request_id)]
    holdout = len(known) - len(requests)
    catalogue = list(
        SKUImage.objects.filter(source=SKUImage.Source.CATALOGUE, sku__is_active=True)
        .order_by("sku_id", "position", "pk")
        .values_list("image", "sku_id")
    )
    sku_ids = {s for _, s in catalogue} | {r.sku_id for r in requests}
    sku_ids |= {s for r in requests for s in r.negative_sku_ids}
    columns = _sku_columns(sku_ids)
    media = Path(settings.MEDIA_ROOT)
    rows: list[dict[str, str]] = [
        {"path": str(media / name), "role": "catalogue", "negatives": "", **columns[sku_id]}
        for name, sku_id in catalogue
    ]
    photos = QueryPhoto.objects.in_bulk([p for r in requests for p in r.photo_ids])
    crops = Path(settings.TRAINING_DIR) / "crops"
    photo_rows = []
    for r in requests:
        negatives = "|".join(columns[s]["label"] for s in r.negative_sku_ids if s in columns)
        for photo_id in r.photo_ids:
            path = crop_file(photos[photo_id], crops)
            photo_rows.append({"path": str(path), "role": "photo", "negatives": negatives,
                               **columns[r.sku_id]})
    if shuffle_labels:
        rng = random.Random(seed)
        labels = [dict(row) for row in photo_rows]
        rng.shuffle(labels)
        for row, other in zip(photo_rows, labels, strict=True):
            for key in ("label", "category", "brand", "series"):
                row[key] = other[key]
            row["negatives"] = ""
    rows += photo_rows
    path = folder / "train.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return DataSnapshot(
        csv=str(path),
        csv_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        cutoff=until.isoformat(),
        catalogue_images=len(catalogue),
        photos=len(photo_rows),
        requests=len(requests),
        from_bad_cases=sum(1 for r in requests if r.from_bad_case),
        hard_negatives=sum(len(r.negative_sku_ids) for r in requests),
        labels=len({row["label"] for row in rows}),
        holdout_requests=holdout,
        shuffled_labels=shuffle_labels,
        cause_counts=cause_counts(until=until),
    )
