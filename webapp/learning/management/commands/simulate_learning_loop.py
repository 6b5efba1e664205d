"""`manage.py simulate_learning_loop --grocery ../shared/data/grocery`: the loop, end to end.

Run it on a fresh SKULENS_VAR_DIR (it refuses a database that already holds matches). Tasks
run eagerly in this process, through the same services and Celery task functions a worker
would call. See docs/learning-loop.md for what is simulated and what the numbers mean.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from webapp.config.celery import app as celery_app
from webapp.learning.simulation import (
    SimConfig,
    Simulation,
    plot_curve,
    read_json,
    write_json,
)


class Command(BaseCommand):
    help = "Simulate the learning loop on the Grocery Store Dataset and plot the val curve."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--grocery", type=Path, help="dataset root (required to simulate)")
        parser.add_argument("--photos", type=int, default=360, help="train photos to stream")
        parser.add_argument("--retrain-every", type=int, default=90,
                            help="new resolved bad cases that trigger a run")
        parser.add_argument("--check-every", type=int, default=20,
                            help="photos between two beat checks")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--max-minutes", type=float, default=35.0,
                            help="stop streaming after this long")
        parser.add_argument("--gallery-policy", default="all",
                            choices=("all", "corrections", "none"))
        parser.add_argument("--isolation", action="store_true",
                            help="keep the detector and GrabCut (slow on CPU)")
        parser.add_argument("--no-shuffled-demo", dest="shuffled", action="store_false")
        parser.add_argument("--train-options", default="{}",
                            help="JSON overrides of the cheap training recipe below")
        parser.add_argument("--json", type=Path, default=None,
                            help="results (default: $SKULENS_VAR_DIR/learning_loop.json)")
        parser.add_argument("--plot", type=Path, default=Path("docs/learning-loop.png"))
        parser.add_argument("--replot", type=Path, help="only redraw the plot from a results JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["replot"]:
            plot_curve(read_json(options["replot"]), options["plot"])
            return
        if not options["grocery"]:
            raise CommandError("--grocery ROOT is required")
        root = Path(options["grocery"]).resolve()
        if not (root / "classes.csv").is_file():
            raise CommandError(f"{root} is not the Grocery Store Dataset")
        # Cheap on a shared 2-core CPU: cached trunk at 160 px with the first 13 blocks frozen,
        # no linear head (training starts from the pretrained 1280-d embedding), few steps.
        # No per-run hold-out: with one or two photos per product it would select on noise;
        # the last epoch is kept and the gate does the selecting.
        train = {"freeze_blocks": 13, "catalogue_views": 6, "batches_per_epoch": 10,
                 "classes_per_batch": 8, "samples_per_class": 4, "lr_backbone": 3e-4,
                 "holdout": 0.0, "threads": 2, **json.loads(options["train_options"])}
        settings.TRAIN_IMAGE_SIZE = 160
        settings.TRAIN_EPOCHS = 6
        settings.TRAIN_CACHED_VIEWS = 2
        settings.TRAIN_EMBEDDING_DIM = 0
        settings.TRAIN_OPTIONS = train
        settings.RETRAIN_MIN_BAD_CASES = options["retrain_every"]
        settings.AUTO_PROMOTE = True
        settings.GATE_HOLDOUT_PERCENT = 20
        settings.GATE_REPLAY_LIMIT = 200
        settings.GALLERY_ENRICHMENT = options["gallery_policy"]
        settings.GALLERY_MAX_APPRAISAL_IMAGES = 20
        if not options["isolation"]:
            settings.DETECTOR_WEIGHTS = ""  # read by ml_gateway.detector() on first use
            settings.SEGMENTATION = "none"
        celery_app.conf.task_always_eager = True
        cfg = SimConfig(
            root=root, photos=options["photos"], seed=options["seed"],
            retrain_min_bad_cases=options["retrain_every"], check_every=options["check_every"],
            gallery_policy=options["gallery_policy"], max_minutes=options["max_minutes"],
            shuffled_demo=options["shuffled"],
            train={"image_size": 160, "epochs": 6, "cached_views": 2, "embedding_dim": 0,
                   **train},
        )
        outcome = Simulation(cfg, lambda m: self.stdout.write(m, ending="\n")).run()
        out = options["json"] or Path(settings.VAR_DIR) / "learning_loop.json"
        write_json(outcome, out)
        plot_curve(outcome, options["plot"])
        self.stdout.write(f"\nresults: {out}\nplot: {options['plot']}\n")
        self.stdout.write("| photos | point | model | cold R@1 | cold Top-4 | warm R@1 | "
                          "warm Top-4 | gallery |\n|---|---|---|---|---|---|---|---|")
        for p in outcome.points:
            self.stdout.write(f"| {p.photos} | {p.label} | {p.model} | {p.cold_r1:.4f} | "
                              f"{p.cold_r4:.4f} | {p.warm_r1:.4f} | {p.warm_r4:.4f} | "
                              f"{p.gallery} |")
        self.stdout.write(f"\ndecisions: {outcome.decisions}; bad cases resolved: "
                          f"{outcome.bad_cases}; wall {outcome.wall_s:.0f} s")
