from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from webapp.catalog.bulk import Action, ImportPlan, catalogue_import_rows, import_apply
from webapp.catalog.bundles import FolderSource, open_folder_bundle, open_zip_bundle
from webapp.catalog.importing import CatalogueFormatError, grocery_rows


class Command(BaseCommand):
    help = (
        "Import a catalogue, all or nothing: `import_catalogue BUNDLE.zip`, "
        "`import_catalogue CSV [--images DIR]` (format in docs/catalogue-format.md), or "
        "`import_catalogue --grocery ROOT` for the Grocery Store Dataset. "
        "--dry-run reports row by row what would change and writes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", nargs="?", type=Path, help="a zip bundle or a CSV file")
        parser.add_argument("--images", type=Path, help="image folder (default: the CSV's folder)")
        parser.add_argument("--grocery", type=Path, help="root of the Grocery Store Dataset")
        parser.add_argument("--dry-run", action="store_true", help="report only, write nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        dry_run = bool(options["dry_run"])
        try:
            if options["grocery"]:
                root = Path(options["grocery"]).resolve()
                report = catalogue_import_rows(rows=list(grocery_rows(root)),
                                               source=FolderSource(root), actor=None,
                                               dry_run=dry_run)
                assert report.plan is not None
                plan = report.plan
            elif options["path"]:
                path = Path(options["path"]).resolve()
                if path.suffix.lower() == ".zip":
                    with path.open("rb") as handle:
                        plan = import_apply(bundle=open_zip_bundle(handle), actor=None,
                                            dry_run=dry_run)
                else:
                    bundle = open_folder_bundle(path, options["images"] and
                                                Path(options["images"]).resolve())
                    plan = import_apply(bundle=bundle, actor=None, dry_run=dry_run)
            else:
                raise CommandError("give a zip or CSV path, or --grocery ROOT")
        except (CatalogueFormatError, FileNotFoundError) as exc:
            raise CommandError(str(exc)) from exc
        self._report(plan, dry_run=dry_run, verbose=options["verbosity"] > 1 or dry_run)

    def _report(self, plan: ImportPlan, *, dry_run: bool, verbose: bool) -> None:
        for error in plan.errors:
            self.stderr.write(error)
        for row in plan.rows:
            if row.action == Action.REJECT:
                for reason in row.reasons:
                    self.stderr.write(f"line {row.line} {row.sku_code}: {reason}")
            elif verbose and row.action != Action.UNCHANGED:
                details = [f"{k}: {old!r} -> {new!r}" for k, (old, new) in row.changes.items()]
                details += [f"+image {name}" for name in row.images_added]
                details += [f"new {node}" for node in row.new_hierarchy]
                self.stdout.write(f"line {row.line} {row.sku_code}: {row.action}; "
                                  + "; ".join(details))
        counts = plan.counts
        summary = (f"{counts['create']} to create, {counts['update']} to change, "
                   f"{counts['unchanged']} unchanged, {counts['reject']} rejected, "
                   f"{plan.images_added} new images")
        if not plan.ok:
            raise CommandError(f"nothing imported: {summary}")
        if dry_run:
            self.stdout.write(f"dry run, nothing written: {summary}")
        else:
            self.stdout.write(
                f"SKUs created {counts['create']}, updated {counts['update']}, "
                f"unchanged {counts['unchanged']}, images added {plan.images_added}"
            )
