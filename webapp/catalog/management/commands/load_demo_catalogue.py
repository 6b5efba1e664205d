from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from webapp.catalog.bulk import catalogue_import
from webapp.catalog.demo import (
    demo_detection_classes_set,
    write_demo_catalogue,
    write_demo_history,
)
from webapp.catalog.importing import read_catalogue_csv

# The demo's catalogue admin (create_demo_users): the history's decisions are recorded as theirs.
DEMO_ADMIN = "admin"


class Command(BaseCommand):
    help = (
        "Draw the demo bag catalogue (CC0, see webapp/catalog/demo.py) and import it, with "
        "drawn labelled history (past listings matched to SKUs) through import_history."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--no-history", action="store_true",
                            help="the catalogue only, without the labelled history")

    def handle(self, *args: Any, **options: Any) -> None:
        folder = settings.VAR_DIR / "demo"
        csv_path = write_demo_catalogue(folder)
        report = catalogue_import(rows=read_catalogue_csv(csv_path), image_root=folder)
        demo_detection_classes_set()
        self.stdout.write(
            f"demo catalogue: {report.skus_created} SKUs created, {report.images_added} images; "
            f"sample appraisal photos to upload are in {folder / 'photos'}"
        )
        if options["no_history"]:
            return
        history_csv = write_demo_history(folder / "history")
        user = [] if not get_user_model().objects.filter(username=DEMO_ADMIN).exists() else [
            "--user", DEMO_ADMIN]
        self.stdout.write("demo labelled history:")
        call_command("import_history", str(history_csv), *user, stdout=self.stdout,
                     stderr=self.stderr, verbosity=0)
