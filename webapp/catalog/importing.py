"""The catalogue's CSV format: reading (strict or row by row) and writing. No database here.

CSV format (UTF-8, header row required; docs/catalogue-format.md has the full table):

    sku_code,name,category,brand,series,colour,material,size,images,active,attr:<key>...

- `sku_code`, `name`, `category`, `brand`, `series` are required.
- `images` lists image paths relative to the image folder (or zip root), separated by `|`.
- `active` is `true` or `false`; left out, an import does not change it.
- `appraisal_images` names which of `images` are confirmed appraisal photos (the rest are
  catalogue shots), so that an export imports back unchanged.
- Every column named `attr:<key>` becomes a free-form attribute `<key>`.

Importing is idempotent: SKUs are matched by `sku_code`, images by relative path or content.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

REQUIRED_COLUMNS = ("sku_code", "name", "category", "brand", "series")
OPTIONAL_COLUMNS = ("colour", "material", "size", "images", "active")
MAX_LENGTHS = {
    "sku_code": 64, "name": 200, "category": 120, "brand": 120, "series": 120,
    "colour": 60, "material": 60, "size": 60,
}
_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


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
    active: bool | None = None  # None: not given, leave the SKU's state alone
    appraisal_images: frozenset[str] = frozenset()  # which of `images` are appraisal photos


@dataclass(frozen=True)
class ParsedRow:
    """One data line: a row, or the reasons it cannot be one."""

    line: int
    sku_code: str
    row: CatalogueRow | None
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class ParsedCatalogue:
    columns: frozenset[str]
    rows: list[ParsedRow]

    @property
    def given_fields(self) -> frozenset[str]:
        """CatalogueRow fields that the file sets; the others an import leaves alone."""
        given = {"sku_code", "name", "category", "brand", "series"}
        given |= {c for c in OPTIONAL_COLUMNS if c in self.columns}
        if any(c.startswith("attr:") for c in self.columns):
            given.add("attributes")
        return frozenset(given)


def safe_relative_path(value: str) -> bool:
    """A path inside the bundle: relative, no `..`, no backslashes or drive letters."""
    path = PurePosixPath(value)
    return bool(value) and not path.is_absolute() and ".." not in path.parts and (
        "\\" not in value and ":" not in value
    )


def _parse_row(line: int, row: dict[str, str]) -> ParsedRow:
    errors = [f"{c} is empty" for c in REQUIRED_COLUMNS if not row.get(c)]
    errors += [
        f"{c} is longer than {limit} characters"
        for c, limit in MAX_LENGTHS.items()
        if len(row.get(c, "")) > limit
    ]
    images = tuple(p.strip() for p in row.get("images", "").split("|") if p.strip())
    errors += [f"image path {p!r} must be relative to the bundle" for p in images
               if not safe_relative_path(p)]
    appraisal = frozenset(p.strip() for p in row.get("appraisal_images", "").split("|")
                          if p.strip())
    errors += [f"appraisal image {p!r} is not in images" for p in sorted(appraisal - set(images))]
    active_text = row.get("active", "").lower()
    if active_text and active_text not in _BOOLEANS:
        errors.append(f"active must be true or false, not {row['active']!r}")
    if errors:
        return ParsedRow(line, row.get("sku_code", ""), None, tuple(errors))
    return ParsedRow(
        line,
        row["sku_code"],
        CatalogueRow(
            sku_code=row["sku_code"],
            name=row["name"],
            category=row["category"],
            brand=row["brand"],
            series=row["series"],
            colour=row.get("colour", ""),
            material=row.get("material", ""),
            size=row.get("size", ""),
            images=images,
            attributes={
                key.removeprefix("attr:"): value
                for key, value in row.items()
                if key.startswith("attr:") and key != "attr:" and value
            },
            active=_BOOLEANS[active_text] if active_text else None,
            appraisal_images=appraisal,
        ),
    )


def parse_catalogue_csv(text: str, *, name: str = "catalogue.csv") -> ParsedCatalogue:
    """Every line parsed on its own, so a dry run can report each one.

    Raises CatalogueFormatError only for problems of the whole file (header, encoding).
    """
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    fieldnames = [f.strip() for f in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in fieldnames]
    if missing:
        raise CatalogueFormatError(f"{name}: missing required columns {missing}")
    reader.fieldnames = fieldnames
    rows = []
    for line_number, raw in enumerate(reader, start=2):
        row = {k: (v or "").strip() for k, v in raw.items() if k is not None}
        if not any(row.values()):
            continue  # blank line
        rows.append(_parse_row(line_number, row))
    return ParsedCatalogue(frozenset(fieldnames), rows)


def decode_csv(data: bytes, *, name: str = "catalogue.csv") -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CatalogueFormatError(f"{name} is not UTF-8 text") from exc


def read_catalogue_csv(path: Path) -> Iterator[CatalogueRow]:
    """Strict reading: the first bad line raises CatalogueFormatError."""
    parsed = parse_catalogue_csv(decode_csv(path.read_bytes(), name=path.name), name=path.name)
    for item in parsed.rows:
        if item.row is None:
            raise CatalogueFormatError(f"{path.name} line {item.line}: {'; '.join(item.errors)}")
        yield item.row


def write_catalogue_csv(path: Path | io.TextIOBase, rows: Iterable[CatalogueRow]) -> int:
    """Write rows (to a path or an open text stream); returns how many."""
    rows = list(rows)
    attribute_keys = sorted({key for row in rows for key in row.attributes})
    with_active = any(row.active is not None for row in rows)
    with_appraisal = any(row.appraisal_images for row in rows)
    header = [*REQUIRED_COLUMNS, "colour", "material", "size", "images"]
    header += ["active"] if with_active else []
    header += ["appraisal_images"] if with_appraisal else []
    header += [f"attr:{key}" for key in attribute_keys]

    def write(handle: io.TextIOBase) -> None:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            active = [] if not with_active else [
                "" if row.active is None else ("true" if row.active else "false")
            ]
            if with_appraisal:  # in the order of `images`
                active.append("|".join(p for p in row.images if p in row.appraisal_images))
            writer.writerow(
                [row.sku_code, row.name, row.category, row.brand, row.series, row.colour,
                 row.material, row.size, "|".join(row.images)]
                + active
                + [row.attributes.get(key, "") for key in attribute_keys]
            )

    if isinstance(path, Path):
        with path.open("w", newline="", encoding="utf-8") as handle:
            write(handle)  # type: ignore[arg-type]
    else:
        write(path)
    return len(rows)


def grocery_sku_code(class_id: int) -> str:
    """The SKU code of a Grocery Store Dataset product (class id)."""
    return f"GROCERY-{class_id:03d}"


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
                sku_code=grocery_sku_code(int(class_id)),
                name=name.replace("-", " "),
                category=coarse_name,
                brand=brand,
                series=top_level,
                images=(iconic_rel,),
                attributes={"description": description, "dataset_class_id": class_id},
            )
