"""The demo shows the loop: "Retrain now" on `make run`'s demo, timed, with the sample photos'
ranks before and after.

In one process, on a fresh var directory and the embedded defaults: `load_demo_catalogue`
(catalogue and its drawn labelled history), `build_index`, then every sample photo in
`var/demo/photos/` matched through the real path (the match task runs eagerly); then
`manage.py retrain --wait`, the same code "Retrain now" queues for a worker (train, gate,
promote with the app's default recipe and budget); then the same photos matched again.
Prints the wall time of the run, the gate's verdict, and per photo the right SKU's rank and
the first candidate before and after. Usage:

    source scripts/env.sh && python bench/demo_retrain.py [--threads N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: every core)")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()

    var = Path(tempfile.mkdtemp(prefix="skulens-demo-retrain-"))
    os.environ.update(
        SKULENS_VAR_DIR=str(var), DJANGO_DEBUG="true", CELERY_TASK_ALWAYS_EAGER="true",
        SKULENS_LOG_LEVEL="WARNING", SKULENS_TORCH_THREADS=str(args.threads),
    )
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.config.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.core.management import call_command

    from webapp.learning.models import ModelVersion, TrainingRun
    from webapp.learning.selectors import live_model_ref
    from webapp.matching.requests import match_request_create

    started = datetime.now(UTC)
    print(f"machine: {platform.node()} {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs; {started:%Y-%m-%d %H:%M} UTC; var {var}")
    call_command("migrate", verbosity=0)
    call_command("create_demo_users", verbosity=0)
    t = time.perf_counter()
    call_command("load_demo_catalogue", verbosity=0)
    call_command("build_index", verbosity=0)
    setup_s = time.perf_counter() - t
    appraiser = get_user_model().objects.get(username="appraiser")
    photos = sorted((var / "demo" / "photos").glob("*.jpg"))

    def ranks() -> list[dict[str, object]]:
        rows = []
        for path in photos:
            truth = path.stem.rsplit("-photo", 1)[0]
            upload = SimpleUploadedFile(path.name, path.read_bytes(), content_type="image/jpeg")
            match = match_request_create(user=appraiser, uploads=[upload])
            match.refresh_from_db()
            codes = list(match.candidates.order_by("rank").values_list("sku__code", flat=True))
            rows.append({"photo": path.name, "truth": truth, "first": codes[0] if codes else "",
                         "rank": codes.index(truth) + 1 if truth in codes else None})
        return rows

    before = ranks()
    t = time.perf_counter()
    call_command("retrain", "--wait")
    retrain_s = time.perf_counter() - t
    run = TrainingRun.objects.order_by("-pk").first()
    model = ModelVersion.objects.filter(training_run=run).first() if run else None
    after = ranks()

    def first_right(rows: list[dict[str, object]]) -> int:
        return sum(r["rank"] == 1 for r in rows)

    print(f"\nset-up (catalogue, history, index): {setup_s:.0f} s")
    print(f"retrain --wait (train, gate, promote): {retrain_s:.0f} s = {retrain_s / 60:.1f} min")
    live = model is not None and model.model_ref == live_model_ref()
    if run is not None:
        took = (run.finished_at - run.started_at).total_seconds() if run.finished_at else None
        print(f"run {run.pk}: {run.status}, {run.epoch} of {run.epochs} epochs, "
              f"{run.steps_total} steps, started to finished {took} s")
    if model is not None:
        print(f"gate: {model.gate}; promoted and live: {live}")
    print(f"\nright SKU first: {first_right(before)}/{len(before)} before, "
          f"{first_right(after)}/{len(after)} after\n")
    print("| photo | right SKU | rank before | first before | rank after | first after |")
    print("|---|---|---|---|---|---|")
    for b, a in zip(before, after, strict=True):
        print(f"| {b['photo']} | {b['truth']} | {b['rank']} | {b['first']} | {a['rank']} | "
              f"{a['first']} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "started": started.isoformat(), "setup_s": setup_s, "retrain_s": retrain_s,
            "run_status": run.status if run else None, "gate": model.gate if model else None,
            "live": live, "before": before, "after": after,
        }, indent=1))


if __name__ == "__main__":
    main()
