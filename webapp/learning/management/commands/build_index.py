from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from webapp.learning.services import index_publish


class Command(BaseCommand):
    help = "Embed reference images and publish the search index (incremental unless --full)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--full", action="store_true", help="rebuild from the database")

    def handle(self, *args: Any, **options: Any) -> None:
        version = index_publish(full_rebuild=options["full"])
        self.stdout.write(
            f"index {version.name}: {version.vector_count} vectors "
            f"(+{version.added} -{version.removed}), model {version.model_version}"
        )
