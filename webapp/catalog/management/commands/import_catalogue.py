from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from webapp.catalog.importing import CatalogueFormatError, grocery_rows, read_catalogue_csv
from webapp.catalog.services import catalogue_import


class Command(BaseCommand):
    help = (
        "Import a catalogue: `import_catalogue CSV [--images DIR]` (format in "
        "webapp/catalog/importing.py and docs/catalogue-format.md), or "
        "`import_catalogue --grocery ROOT` for the Grocery Store Dataset."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("csv", nargs="?", type=Path)
        parser.add_argument("--images", type=Path, help="image folder (default: the CSV's folder)")
        parser.add_argument("--grocery", type=Path, help="root of the Grocery Store Dataset")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["grocery"]:
                root = Path(options["grocery"]).resolve()
                rows, image_root = list(grocery_rows(root)), root
            elif options["csv"]:
                csv_path = Path(options["csv"]).resolve()
                rows = list(read_catalogue_csv(csv_path))
                image_root = Path(options["images"] or csv_path.parent).resolve()
            else:
                raise CommandError("give a CSV path or --grocery ROOT")
        except (CatalogueFormatError, FileNotFoundError) as exc:
            raise CommandError(str(exc)) from exc
        report = catalogue_import(rows=rows, image_root=image_root)
        if report.errors:
            for error in report.errors:
                self.stderr.write(error)
            raise CommandError(f"nothing imported: {len(report.errors)} bad image(s)")
        self.stdout.write(
            f"SKUs created {report.skus_created}, updated {report.skus_updated}, "
            f"images added {report.images_added}"
        )
