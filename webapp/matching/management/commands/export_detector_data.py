from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from webapp.matching.exports import detector_dataset_export


class Command(BaseCommand):
    help = "Export appraiser-corrected item boxes in YOLO format (images/, labels/, data.yaml)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("out", type=Path)

    def handle(self, *args: Any, **options: Any) -> None:
        export = detector_dataset_export(out=Path(options["out"]))
        self.stdout.write(f"{export.images} images, classes {export.classes} -> {options['out']}")
