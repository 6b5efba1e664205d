"""Catalogue import from a CSV file plus an image folder.

CSV format (UTF-8, header row required):

    sku_code,name,category,brand,series,colour,material,size,images,attr:<key>...

- `sku_code`, `name`, `category`, `brand`, `series` are required.
- `images` lists image paths relative to the image folder, separated by `|`.
- Every column named `attr:<key>` becomes a free-form attribute `<key>`.

Importing is idempotent: SKUs are matched by `sku_code`, images by their relative path.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REQUIRED_COLUMNS = ("sku_code", "name", "category", "brand", "series")


class CatalogueFormatError(ValueError):
    pass


@dataclass(frozen=True)
class CatalogueRow:
    sku_code: str
    name: str
    category: str
    brand: str
    series: str
    colour: str = ""
    material: str = ""
    size: str = ""
    images: tuple[str, ...] = ()
    attributes: dict[str, str] = field(default_factory=dict)


def read_catalogue_csv(path: Path) -> Iterator[CatalogueRow]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise CatalogueFormatError(f"{path.name}: missing required columns {missing}")
        for line_number, raw in enumerate(reader, start=2):
            row = {k: (v or "").strip() for k, v in raw.items() if k is not None}
            empty = [c for c in REQUIRED_COLUMNS if not row.get(c)]
            if empty:
                raise CatalogueFormatError(f"{path.name} line {line_number}: empty {empty}")
            yield CatalogueRow(
                sku_code=row["sku_code"],
                name=row["name"],
                category=row["category"],
                brand=row["brand"],
                series=row["series"],
                colour=row.get("colour", ""),
                material=row.get("material", ""),
                size=row.get("size", ""),
                images=tuple(p for p in row.get("images", "").split("|") if p),
                attributes={
                    key.removeprefix("attr:"): value
                    for key, value in row.items()
                    if key.startswith("attr:") and value
                },
            )


def write_catalogue_csv(path: Path, rows: Iterable[CatalogueRow]) -> int:
    rows = list(rows)
    attribute_keys = sorted({key for row in rows for key in row.attributes})
    header = [*REQUIRED_COLUMNS, "colour", "material", "size", "images"]
    header += [f"attr:{key}" for key in attribute_keys]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in rows:
            writer.writerow(
                [row.sku_code, row.name, row.category, row.brand, row.series, row.colour,
                 row.material, row.size, "|".join(row.images)]
                + [row.attributes.get(key, "") for key in attribute_keys]
            )
    return len(rows)


def grocery_rows(root: Path) -> Iterator[CatalogueRow]:
    """Map the Grocery Store Dataset onto the catalogue.

    coarse class -> category, product -> SKU, iconic image -> reference image,
    description -> attribute `description`. Packaged products carry their brand as the
    first word of the name (e.g. "Alpro-Fresh-Soy-Milk"); loose produce has none.
    """
    classes_csv = root / "classes.csv"
    if not classes_csv.exists():
        raise CatalogueFormatError(f"{classes_csv} not found: is {root} the grocery dataset?")
    with classes_csv.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader)
        for name, class_id, coarse_name, _coarse_id, iconic, description_path in reader:
            iconic_rel = iconic.lstrip("/")
            top_level = Path(iconic_rel).parts[1]  # Fruit / Packages / Vegetables
            brand = name.split("-")[0] if top_level == "Packages" else "Loose produce"
            description_file = root / description_path.lstrip("/")
            description = (
                description_file.read_text(encoding="utf-8", errors="replace").strip()
                if description_file.exists()
                else ""
            )
            yield CatalogueRow(
                sku_code=f"GROCERY-{int(class_id):03d}",
                name=name.replace("-", " "),
                category=coarse_name,
                brand=brand,
                series=top_level,
                images=(iconic_rel,),
                attributes={"description": description, "dataset_class_id": class_id},
            )
