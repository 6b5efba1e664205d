from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from webapp.catalog.export import catalogue_export


class Command(BaseCommand):
    help = "Export the catalogue as a zip in the import format: `export_catalogue OUT.zip`."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("out", type=Path)
        parser.add_argument("--active-only", action="store_true", help="leave out inactive SKUs")

    def handle(self, *args: Any, **options: Any) -> None:
        out = Path(options["out"])
        partial = out.with_name(out.name + ".part")
        # Written aside and renamed, so a reader never sees half a zip.
        with partial.open("wb") as handle:
            summary = catalogue_export(out=handle, include_inactive=not options["active_only"])
        partial.replace(out)
        for name in summary.missing_files:
            self.stderr.write(f"missing image file, left out: {name}")
        self.stdout.write(f"exported {summary.skus} SKUs and {summary.images} images to {out}")
