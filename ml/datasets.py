"""Image-list CSVs (the evaluation and training format) and the Grocery Store converter.

CSV format: a header with at least ``path,label``; optional ``category``, ``brand``,
``series``, ``group`` and any other columns (kept in :attr:`ImageRecord.attrs`). ``path`` is
absolute or relative to the CSV's folder. Rows sharing a non-empty ``group`` are photos of one
item and form one multi-photo query.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REQUIRED_COLUMNS = ("path", "label")
KNOWN_COLUMNS = ("path", "label", "category", "brand", "series", "group")


@dataclass(frozen=True)
class ImageRecord:
    """One image row. ``attrs`` holds every column except path/label/group (category too)."""

    path: Path
    label: str
    group: str | None = None
    attrs: Mapping[str, str] = field(default_factory=dict)

    @property
    def category(self) -> str | None:
        return self.attrs.get("category") or None

    def get(self, column: str) -> str | None:
        """Value of any column by name (``label``, ``category``, ``brand``...)."""
        if column == "label":
            return self.label
        if column == "group":
            return self.group
        if column == "path":
            return str(self.path)
        return self.attrs.get(column) or None


def read_image_csv(path: str | Path) -> list[ImageRecord]:
    """Read an image-list CSV; relative paths resolve against the CSV's folder.

    Raises:
        ValueError: missing required columns, or an empty path/label (with the line number).
    """
    path = Path(path)
    base = path.parent
    records: list[ImageRecord] = []
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; found {columns}")
        for line, raw in enumerate(reader, start=2):
            row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
            if not row["path"] or not row["label"]:
                raise ValueError(f"{path}:{line}: empty path or label")
            image_path = Path(row["path"])
            if not image_path.is_absolute():
                image_path = base / image_path
            attrs = {k: v for k, v in row.items() if k not in ("path", "label", "group") and k}
            records.append(ImageRecord(image_path, row["label"], row.get("group") or None, attrs))
    return records


def write_image_csv(
    path: str | Path, rows: Iterable[Mapping[str, object]], columns: Sequence[str]
) -> int:
    """Write rows (dicts with at least ``path`` and ``label``) atomically; returns the row count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    n = 0
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
            n += 1
    os.replace(tmp, path)
    return n


# ----- Grocery Store Dataset (Klasson et al., WACV 2019) ------------------------------------


@dataclass(frozen=True)
class GroceryClass:
    name: str
    class_id: int
    coarse_name: str
    coarse_id: int
    iconic_path: Path
    description_path: Path


def read_grocery_classes(root: str | Path) -> list[GroceryClass]:
    """Parse ``classes.csv``; its paths start with ``/`` but are relative to ``root``."""
    root = Path(root)
    classes = []
    with open(root / "classes.csv", newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        if len(header) < 6 or not header[0].startswith("Class Name"):
            raise ValueError(f"{root / 'classes.csv'}: unexpected header {header}")
        for row in reader:
            if not row:
                continue
            classes.append(
                GroceryClass(
                    name=row[0].strip(),
                    class_id=int(row[1]),
                    coarse_name=row[2].strip(),
                    coarse_id=int(row[3]),
                    iconic_path=root / row[4].strip().lstrip("/"),
                    description_path=root / row[5].strip().lstrip("/"),
                )
            )
    return classes


def read_grocery_split(root: str | Path, split: str) -> list[tuple[Path, int, int]]:
    """``<split>.txt`` lines ``path, product_id, coarse_id`` -> ``(absolute path, ids)``."""
    root = Path(root)
    items = []
    for line in (root / f"{split}.txt").read_text().splitlines():
        if not line.strip():
            continue
        rel, product, coarse = (part.strip() for part in line.split(","))
        items.append((root / rel, int(product), int(coarse)))
    return items


GROCERY_COLUMNS = ("path", "label", "category", "product_id", "coarse_id", "department")
# The gallery also carries the catalogue text (re-ranking reads it) and the image's role.
GROCERY_GALLERY_COLUMNS = (*GROCERY_COLUMNS, "role", "name", "description", "description_path")


def _department(path: Path, anchor: str) -> str:
    """Fruit / Vegetables / Packages: the folder under ``anchor`` in a grocery path."""
    parts = path.parts
    return parts[parts.index(anchor) + 1] if anchor in parts else ""


def _description(path: Path) -> str:
    """A class's description file as one line (it holds English and Swedish text)."""
    try:
        return " ".join(path.read_text(encoding="utf-8").split())
    except OSError:
        return ""


def grocery_to_csv(root: str | Path, out: str | Path) -> dict[str, Path]:
    """Write ``gallery_iconic.csv`` (81 iconic images, with ``name`` and ``description``),
    ``train_photos.csv``, ``val_photos.csv`` and ``gallery_warm.csv`` (the iconic images with
    ``role=catalogue`` plus the train photos with ``role=photo``: a catalogue enriched with
    confirmed photos) into ``out``. Label = product class name, category = coarse class name,
    department = Fruit / Vegetables / Packages; paths are absolute.

    Returns:
        CSV name -> path written.
    """
    root, out = Path(root).resolve(), Path(out)
    classes = read_grocery_classes(root)
    by_id = {c.class_id: c for c in classes}
    if len({c.name for c in classes}) != len(classes):
        raise ValueError("grocery class names are not unique; cannot use them as labels")
    written: dict[str, Path] = {}

    gallery_rows = [
        {
            "path": str(c.iconic_path),
            "label": c.name,
            "category": c.coarse_name,
            "product_id": c.class_id,
            "coarse_id": c.coarse_id,
            "department": _department(c.iconic_path, "iconic-images-and-descriptions"),
            "role": "catalogue",
            "name": c.name.replace("-", " "),
            "description": _description(c.description_path),
            "description_path": str(c.description_path),
        }
        for c in classes
    ]
    target = out / "gallery_iconic.csv"
    write_image_csv(target, gallery_rows, GROCERY_GALLERY_COLUMNS)
    written[target.name] = target

    photos: dict[str, list[dict[str, object]]] = {}
    for split in ("train", "val"):
        rows = []
        for image_path, product, coarse in read_grocery_split(root, split):
            cls = by_id[product]
            if cls.coarse_id != coarse:
                raise ValueError(f"{split}.txt: {image_path} coarse id {coarse} != {cls.coarse_id}")
            rows.append(
                {
                    "path": str(image_path),
                    "label": cls.name,
                    "category": cls.coarse_name,
                    "product_id": product,
                    "coarse_id": coarse,
                    "department": _department(image_path, split),
                }
            )
        target = out / f"{split}_photos.csv"
        write_image_csv(target, rows, GROCERY_COLUMNS)
        written[target.name] = target
        photos[split] = rows

    target = out / "gallery_warm.csv"
    warm = gallery_rows + [{**row, "role": "photo"} for row in photos["train"]]
    write_image_csv(target, warm, GROCERY_GALLERY_COLUMNS)
    written[target.name] = target
    return written


__all__ = [
    "GroceryClass",
    "ImageRecord",
    "grocery_to_csv",
    "read_grocery_classes",
    "read_grocery_split",
    "read_image_csv",
    "write_image_csv",
]
