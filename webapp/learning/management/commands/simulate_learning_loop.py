"""`manage.py simulate_learning_loop --grocery ../shared/data/grocery`: the loop, end to end.

Run it on a fresh SKULENS_VAR_DIR (it refuses a database that already holds matches, unless
`--resume` continues the simulation that made them). Tasks run eagerly in this process,
through the same services and Celery task functions a worker would call, with the app's own
training, gate and gallery settings (the production recipe; `--train-options` overrides it
for experiments). See docs/learning-loop.md for what is simulated and what the numbers mean.
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
)


class Command(BaseCommand):
    help = "Simulate the learning loop on the Grocery Store Dataset and plot the val curve."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--grocery", type=Path, help="dataset root (required to simulate)")
        parser.add_argument("--photos", type=int, default=2640,
                            help="train photos to stream (default: all of them)")
        parser.add_argument("--retrain-every", type=int, default=None,
                            help="new resolved bad cases that trigger a run "
                            "(default: SKULENS_RETRAIN_MIN_BAD_CASES)")
        parser.add_argument("--check-every", type=int, default=20,
                            help="photos between two beat checks")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--max-minutes", type=float, default=0.0,
                            help="stop after this long (0: never); --resume continues")
        parser.add_argument("--resume", action="store_true",
                            help="continue the simulation recorded in --json")
        parser.add_argument("--gallery-policy", default=None,
                            choices=("all", "corrections", "none"),
                            help="default: SKULENS_GALLERY_ENRICHMENT")
        parser.add_argument("--isolation", action="store_true",
                            help="keep the detector and GrabCut (grocery photos show the item)")
        parser.add_argument("--no-shuffled-demo", dest="shuffled", action="store_false")
        parser.add_argument("--shuffled-options", default='{"epochs": 4}',
                            help="training options of the shuffled-labels run (JSON)")
        parser.add_argument("--train-options", default="{}",
                            help="JSON overrides of the app's training settings")
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
        try:
            train = json.loads(options["train_options"])
            shuffled = json.loads(options["shuffled_options"])
        except json.JSONDecodeError as exc:
            raise CommandError(f"options are not JSON: {exc}") from exc
        settings.TRAIN_OPTIONS = {**settings.TRAIN_OPTIONS, **train}
        if options["retrain_every"] is not None:
            settings.RETRAIN_MIN_BAD_CASES = options["retrain_every"]
        if options["gallery_policy"] is not None:
            settings.GALLERY_ENRICHMENT = options["gallery_policy"]
        settings.AUTO_PROMOTE = True
        if not options["isolation"]:
            settings.DETECTOR_WEIGHTS = ""  # read by ml_gateway.detector() on first use
            settings.SEGMENTATION = "none"
        celery_app.conf.task_always_eager = True
        out = options["json"] or Path(settings.VAR_DIR) / "learning_loop.json"
        cfg = SimConfig(
            root=root, photos=options["photos"], seed=options["seed"],
            retrain_min_bad_cases=settings.RETRAIN_MIN_BAD_CASES,
            check_every=options["check_every"], gallery_policy=settings.GALLERY_ENRICHMENT,
            max_minutes=options["max_minutes"], shuffled_demo=options["shuffled"],
            shuffled_options=shuffled, results=out, resume=options["resume"],
            train=dict(settings.TRAIN_OPTIONS),
        )
        try:
            outcome = Simulation(cfg, lambda m: self.stdout.write(m, ending="\n")).run()
        except RuntimeError as exc:
            raise CommandError(str(exc)) from exc
        plot_curve(outcome, options["plot"])
        self.stdout.write(f"\nresults: {out}\nplot: {options['plot']}\n")
        self.stdout.write("| photos | point | model | cold R@1 | cold Top-4 | warm R@1 | "
                          "warm Top-4 | 2-photo R@1 | gallery |\n"
                          "|---|---|---|---|---|---|---|---|---|")
        for p in outcome.points:
            self.stdout.write(f"| {p.photos} | {p.label} | {p.model} | {p.cold_r1:.4f} | "
                              f"{p.cold_r4:.4f} | {p.warm_r1:.4f} | {p.warm_r4:.4f} | "
                              f"{p.pair_r1:.4f} | {p.gallery} |")
        self.stdout.write(f"\ndecisions: {outcome.decisions}; bad cases resolved: "
                          f"{outcome.bad_cases}; photos {outcome.photos_seen}; "
                          f"wall {outcome.wall_s:.0f} s; finished: {outcome.finished}")
