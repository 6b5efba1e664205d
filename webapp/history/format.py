"""The labelled history CSV: reading (row by row), writing, and the grocery train split.

The catalogue's bundle format (docs/catalogue-format.md) with a photo column: UTF-8, a header
row, one row per photo, paths relative to the bundle.

    sku_code,photo,listing,matched_at

- `sku_code` (required): an existing, active SKU.
- `photo` (required): the photo's path in the zip or folder.
- `listing` (optional): rows with the same value are the photos of one item, in file order;
  an empty cell makes the row an item of its own.
- `matched_at` (optional): when the listing was matched, ISO 8601 (`2023-04-01` or
  `2023-04-01T10:30:00+02:00`); empty means the import's time.
Other columns (a catalogue export's `name`, `category`, ...) are ignored.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, time
from pathlib import Path

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from webapp import ml_gateway
from webapp.catalog.importing import CatalogueFormatError, grocery_sku_code, safe_relative_path

HISTORY_CSV_NAME = "history.csv"
REQUIRED_COLUMNS = ("sku_code", "photo")
COLUMNS = ("sku_code", "photo", "listing", "matched_at")
MAX_LENGTHS = {"sku_code": 64, "photo": 500, "listing": 200}


@dataclass(frozen=True)
class HistoryRow:
    """One data line: the photo it names, or the reasons it cannot be read."""

    line: int
    sku_code: str
    photo: str
    listing: str = ""
    matched_at: datetime | None = None
    errors: tuple[str, ...] = ()


def _parse_moment(text: str) -> datetime:
    """An aware datetime from ISO 8601; a bare date is midnight; naive means the server's zone.

    Raises ValueError."""
    moment = parse_datetime(text)
    if moment is None:
        day = parse_date(text)
        if day is None:
            raise ValueError(text)
        moment = datetime.combine(day, time())
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment


def _parse_row(line: int, row: dict[str, str], now: datetime) -> HistoryRow:
    errors = [f"{c} is empty" for c in REQUIRED_COLUMNS if not row.get(c)]
    errors += [f"{c} is longer than {limit} characters" for c, limit in MAX_LENGTHS.items()
               if len(row.get(c, "")) > limit]
    photo = row.get("photo", "")
    if photo and not safe_relative_path(photo):
        errors.append(f"photo path {photo!r} must be relative to the bundle")
    matched_at = None
    if row.get("matched_at"):
        try:
            matched_at = _parse_moment(row["matched_at"])
        except ValueError:
            errors.append(f"matched_at {row['matched_at']!r} is not a date (use ISO 8601, "
                          "e.g. 2023-04-01 or 2023-04-01T10:30:00+02:00)")
        else:
            if matched_at > now:
                errors.append(f"matched_at {row['matched_at']} is in the future")
    return HistoryRow(line, row.get("sku_code", ""), photo, row.get("listing", ""), matched_at,
                      tuple(errors))


def parse_history_csv(text: str, *, name: str = HISTORY_CSV_NAME) -> list[HistoryRow]:
    """Every line parsed on its own, so a dry run can report each one.

    Raises CatalogueFormatError only for problems of the whole file (the header)."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    fieldnames = [f.strip() for f in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in fieldnames]
    if missing:
        raise CatalogueFormatError(
            f"{name}: missing required columns {missing} (a history CSV needs sku_code and "
            "photo; see docs/catalogue-format.md)"
        )
    reader.fieldnames = fieldnames
    now = timezone.now()
    rows = []
    for line_number, raw in enumerate(reader, start=2):
        row = {k: (v or "").strip() for k, v in raw.items() if k is not None}
        if not any(row.values()):
            continue  # blank line
        rows.append(_parse_row(line_number, row, now))
    return rows


def write_history_csv(out: Path | io.TextIOBase, rows: Iterable[HistoryRow]) -> int:
    """Write rows in the import format (to a path or an open text stream); returns how many."""

    def write(handle: io.TextIOBase) -> int:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        count = 0
        for row in rows:
            moment = row.matched_at.isoformat() if row.matched_at else ""
            writer.writerow([row.sku_code, row.photo, row.listing, moment])
            count += 1
        return count

    if isinstance(out, Path):
        with out.open("w", newline="", encoding="utf-8") as handle:
            return write(handle)  # type: ignore[arg-type]
    return write(out)


def grocery_history_rows(
    root: Path, *, products: Collection[int] | None = None, per_product: int | None = None
) -> list[HistoryRow]:
    """The Grocery Store Dataset's *train* split as history: one photo, one item.

    Only `train.txt` is read: val (and test) measure the loop and are never trained on. Each
    photo names the SKU `import_catalogue --grocery` made for its product. `products` and
    `per_product` pick a subset (tests, a quick try)."""
    if not (root / "train.txt").exists():
        raise CatalogueFormatError(f"{root / 'train.txt'} not found: is {root} the grocery "
                                   "dataset?")
    taken: dict[int, int] = {}
    rows = []
    train = ml_gateway.grocery_split(root, "train")
    for line, (path, product, _coarse) in enumerate(train, start=1):
        if products is not None and product not in products:
            continue
        if per_product is not None and taken.get(product, 0) >= per_product:
            continue
        taken[product] = taken.get(product, 0) + 1
        rows.append(HistoryRow(line, grocery_sku_code(product),
                               path.relative_to(root).as_posix()))
    return rows
