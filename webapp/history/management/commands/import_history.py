from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from webapp.catalog.bundles import FolderSource, ImageSource, open_zip_csv
from webapp.catalog.importing import CatalogueFormatError, decode_csv
from webapp.history.format import (
    HISTORY_CSV_NAME,
    HistoryRow,
    grocery_history_rows,
    parse_history_csv,
)
from webapp.history.isolation import history_isolation_run
from webapp.history.planning import Action, HistoryPlan
from webapp.history.services import history_import_run


class Command(BaseCommand):
    help = (
        "Import labelled history (photos already matched to SKUs) as confirmed matches, all or "
        "nothing: `import_history BUNDLE.zip`, `import_history history.csv [--images DIR]` "
        "(format in docs/catalogue-format.md, 'Labelled history'), or `import_history "
        "--grocery ROOT` for the Grocery Store Dataset's train split. --dry-run reports row "
        "by row and writes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", nargs="?", type=Path, help="a zip bundle or a CSV file")
        parser.add_argument("--images", type=Path, help="photo folder (default: the CSV's folder)")
        parser.add_argument("--grocery", type=Path, help="root of the Grocery Store Dataset")
        parser.add_argument("--per-product", type=int,
                            help="with --grocery: at most this many photos per product")
        parser.add_argument("--dry-run", action="store_true", help="report only, write nothing")
        parser.add_argument("--user", help="the catalogue admin the decisions are recorded "
                            "under (default: the inactive system user 'history-import')")
        parser.add_argument("--isolate-now", action="store_true",
                            help="find the photos' item boxes in this process instead of "
                            "leaving it to a gpu worker")

    def handle(self, *args: Any, **options: Any) -> None:
        actor = None
        if options["user"]:
            actor = get_user_model().objects.filter(username=options["user"]).first()
            if actor is None:
                raise CommandError(f"no user {options['user']!r}")
        dry_run = bool(options["dry_run"])
        with ExitStack() as stack:
            try:
                rows, source, name, origin = self._rows(options, stack)
            except (CatalogueFormatError, OSError) as exc:
                raise CommandError(str(exc)) from exc
            started = time.perf_counter()
            plan, record = history_import_run(
                rows=rows, source=source, actor=actor, origin=origin, original_name=name,
                dry_run=dry_run,
                echo=self._echo(len(rows)) if options["verbosity"] >= 1 else None,
            )
            seconds = time.perf_counter() - started
        self._report(plan, dry_run=dry_run, verbose=options["verbosity"] > 1 or dry_run)
        if record is not None:
            self.stdout.write(
                f"import #{record.pk}: {record.items_created} items, {record.photos_created} "
                f"photos, {record.gallery_added} reference images in {seconds:.1f} s"
            )
            if options["isolate_now"] and record.photos_created:
                history_isolation_run(import_id=record.pk, echo=self._isolation_echo())

    def _rows(
        self, options: dict[str, Any], stack: ExitStack
    ) -> tuple[list[HistoryRow], ImageSource, str, str]:
        if options["grocery"]:
            root = Path(options["grocery"]).resolve()
            rows = grocery_history_rows(root, per_product=options["per_product"])
            return rows, FolderSource(root), f"{root}/train.txt", "grocery"
        if not options["path"]:
            raise CommandError("give a zip or CSV path, or --grocery ROOT")
        path = Path(options["path"]).resolve()
        if path.suffix.lower() == ".zip":
            handle = stack.enter_context(path.open("rb"))
            text, csv_name, zip_source = open_zip_csv(handle, preferred=HISTORY_CSV_NAME)
            return parse_history_csv(text, name=csv_name), zip_source, path.name, "command"
        text = decode_csv(path.read_bytes(), name=path.name)
        images = Path(options["images"]).resolve() if options["images"] else path.parent
        return parse_history_csv(text, name=path.name), FolderSource(images), path.name, "command"

    def _echo(self, total: int) -> Any:
        step = max(1, total // 10)
        seen = {"next": step}

        def echo(done: int) -> None:
            if done >= seen["next"] or done == total:
                self.stderr.write(f"  {done}/{total} rows")
                seen["next"] = done + step

        return echo

    def _isolation_echo(self) -> Any:
        def echo(done: int, total: int) -> None:
            self.stderr.write(f"  isolated {done}/{total} photos")

        return echo

    def _report(self, plan: HistoryPlan, *, dry_run: bool, verbose: bool) -> None:
        for error in plan.errors:
            self.stderr.write(error)
        for row in plan.rows:
            if row.action == Action.REJECT:
                for reason in row.reasons:
                    self.stderr.write(f"line {row.line} {row.sku_code} {row.photo}: {reason}")
            elif verbose:
                note = f"item {row.item}, {row.detail}" if row.action == Action.IMPORT else (
                    row.detail)
                gallery = ", + reference image" if row.gallery else ""
                self.stdout.write(f"line {row.line} {row.sku_code} {row.photo}: {row.action} "
                                  f"({note}{gallery})")
        counts = plan.counts
        summary = (f"{plan.items} items from {counts['import']} photos to import, "
                   f"{counts['skip']} skipped, {counts['reject']} rejected, "
                   f"{plan.gallery} reference images")
        if not plan.ok:
            raise CommandError(f"nothing imported: {summary}")
        self.stdout.write(f"dry run, nothing written: {summary}" if dry_run
                          else f"imported: {summary}")
