"""`manage.py retrain [--wait]`: request a training run, or run it here and report the verdict.

Without `--wait` the run is queued for a gpu worker, exactly as the "Retrain now" button does.
With `--wait` this process runs it through the same task code a worker runs (train, register,
gate and, when the gate passes and SKULENS_AUTO_PROMOTE is on, promote), prints the verdict and
exits non-zero when the run failed.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from webapp.config.celery import app as celery_app
from webapp.learning.models import ModelVersion, Promotion, TrainingRun
from webapp.learning.selectors import live_model_ref
from webapp.learning.training import TrainingError, training_run_request


class Command(BaseCommand):
    help = "Request a retraining run; with --wait, run it here (train, gate, promote)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--wait", action="store_true",
                            help="run it in this process and print the verdict")
        parser.add_argument("--options", default="{}",
                            help='JSON overrides of the training settings, e.g. {"epochs": 2}')

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            overrides = json.loads(options["options"])
        except json.JSONDecodeError as exc:
            raise CommandError(f"--options is not JSON: {exc}") from exc
        if not isinstance(overrides, dict):
            raise CommandError("--options must be a JSON object")
        if options["wait"]:
            # The same task functions a worker runs, in this process: the run's on-commit
            # enqueue executes it, and its promotion, at once.
            celery_app.conf.task_always_eager = True
        try:
            run = training_run_request(trigger=TrainingRun.Trigger.MANUAL, options=overrides)
        except TrainingError as exc:
            raise CommandError(str(exc)) from exc
        if not options["wait"]:
            self.stdout.write(f"training run #{run.pk} queued")
            return
        run.refresh_from_db()
        self.stdout.write(f"training run #{run.pk}: {run.status} ({run.stage})")
        if run.status != TrainingRun.Status.SUCCEEDED:
            raise CommandError(f"training run #{run.pk} {run.status}: {run.error or run.stage}")
        model = ModelVersion.objects.filter(training_run=run).first()
        if model is None:
            raise CommandError(f"training run #{run.pk} registered no model")
        reasons = "; ".join(model.gate_report.get("reasons", [])) or "better than the live model"
        self.stdout.write(f"model {model.name}: gate {model.gate} ({reasons})")
        promotion = Promotion.objects.filter(model=model).order_by("-created_at").first()
        if promotion is not None:
            self.stdout.write(f"promotion #{promotion.pk}: {promotion.status}"
                              + (f" ({promotion.error})" if promotion.error else ""))
            if promotion.status == Promotion.Status.FAILED:
                raise CommandError(f"promotion #{promotion.pk} failed: {promotion.error}")
        self.stdout.write(f"live model: {live_model_ref()}")
