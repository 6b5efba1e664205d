"""Appraiser-corrected boxes as a YOLO detection dataset, for fine-tuning the detector."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from django.db.models import QuerySet

from webapp.matching.models import QueryPhoto


@dataclass(frozen=True)
class DetectorExport:
    images: int
    classes: list[str]


def corrected_photos() -> QuerySet[QueryPhoto]:
    return QueryPhoto.objects.filter(box_source=QueryPhoto.BoxSource.CORRECTED).select_related(
        "request__category", "request__decision__sku__series__brand__category"
    )


def _class_name(photo: QueryPhoto) -> str:
    decision = getattr(photo.request, "decision", None)
    if decision is not None and decision.sku is not None:
        return decision.sku.series.brand.category.name
    if photo.request.category is not None:
        return photo.request.category.name
    return "item"


def detector_dataset_export(*, out: Path) -> DetectorExport:
    """Write `images/`, `labels/` (one `class cx cy w h` line, normalised) and `data.yaml`."""
    photos = list(corrected_photos())
    classes = sorted({_class_name(p) for p in photos})
    index = {name: i for i, name in enumerate(classes)}
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    for photo in photos:
        assert photo.box is not None  # a corrected photo holds the box it was corrected to
        x0, y0, x1, y1 = photo.box
        stem = f"match{photo.request_id}-photo{photo.position}"
        with photo.image.open("rb") as source, (out / "images" / f"{stem}.jpg").open("wb") as dst:
            shutil.copyfileobj(source, dst)
        cx, cy = (x0 + x1) / 2 / photo.width, (y0 + y1) / 2 / photo.height
        w, h = (x1 - x0) / photo.width, (y1 - y0) / photo.height
        (out / "labels" / f"{stem}.txt").write_text(
            f"{index[_class_name(photo)]} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n"
        )
    names = "\n".join(f"  {i}: {name}" for i, name in enumerate(classes))
    (out / "data.yaml").write_text(
        f"path: {out.resolve()}\ntrain: images\nval: images\nnames:\n{names}\n"
    )
    return DetectorExport(images=len(photos), classes=classes)
