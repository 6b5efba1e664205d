from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from webapp.catalog.demo import demo_detection_classes_set, write_demo_catalogue
from webapp.catalog.importing import read_catalogue_csv
from webapp.catalog.services import catalogue_import


class Command(BaseCommand):
    help = "Draw the demo bag catalogue (CC0, see webapp/catalog/demo.py) and import it."

    def handle(self, *args: Any, **options: Any) -> None:
        folder = settings.VAR_DIR / "demo"
        csv_path = write_demo_catalogue(folder)
        report = catalogue_import(rows=read_catalogue_csv(csv_path), image_root=folder)
        demo_detection_classes_set()
        self.stdout.write(
            f"demo catalogue: {report.skus_created} SKUs created, {report.images_added} images; "
            f"sample appraisal photos to upload are in {folder / 'photos'}"
        )
