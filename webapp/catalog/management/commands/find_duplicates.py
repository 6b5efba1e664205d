from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from webapp.catalog.duplicates import (
    duplicate_pairs_find,
    duplicate_pairs_store,
    duplicate_threshold,
)


class Command(BaseCommand):
    help = "List near-duplicate SKU pairs (stored for the Duplicates page)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--threshold", type=float, default=None,
                            help="cosine threshold (default CATALOGUE_DUPLICATE_COSINE or 0.97)")

    def handle(self, *args: Any, **options: Any) -> None:
        threshold = options["threshold"] or duplicate_threshold()
        found, compared = duplicate_pairs_find(threshold=threshold)
        stored = duplicate_pairs_store(found=found)
        for pair in found[:50]:
            self.stdout.write(
                f"SKU {pair.sku_a} ~ {pair.sku_b}: image cosine {pair.image_cosine}, "
                f"centroid cosine {pair.sku_cosine:.4f}"
            )
        self.stdout.write(f"{compared} images compared; {stored} open pairs at >= {threshold}")
