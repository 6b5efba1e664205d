"""Rebuild every SKU search document, e.g. after writes that bypassed the model's save()."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from webapp.catalog.search import search_documents_rebuild


class Command(BaseCommand):
    help = "Rebuild the SKU full-text search documents from the catalogue."

    def handle(self, *args: Any, **options: Any) -> None:
        count = search_documents_rebuild()
        self.stdout.write(f"{count} SKU search documents written.")
