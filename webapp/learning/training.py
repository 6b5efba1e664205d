"""Training runs: request (trigger or admin), execute on the gpu queue, cancel.

A run exports what the loop has learnt (`dataset.training_data_export`), trains with
`ml.train.Trainer` (augmentation weighted by the tagged causes, rejected candidates as hard
negatives), registers the checkpoint, asks the gate, and, when allowed, queues a promotion.
Progress, the log and the ETA are written to the row about once a second; the page polls it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections import deque
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from webapp import ml_gateway
from webapp.enqueue import enqueue_on_commit
from webapp.learning.dataset import training_data_export
from webapp.learning.gate import model_version_gate
from webapp.learning.models import ModelVersion, TrainingRun
from webapp.learning.promotion import PromotionError, promotion_request
from webapp.learning.registry import checkpoint_store, model_version_register
from webapp.learning.selectors import live_model_ref, training_run_in_flight
from webapp.review.models import BadCase

logger = logging.getLogger(__name__)

# A RUNNING row whose heartbeat is older than this lost its worker and may be taken over.
STALE_AFTER = timedelta(minutes=10)
LOG_LINES = 400
RUN_ONLY_OPTIONS = {"shuffle_labels"}


class TrainingError(ValueError):
    pass


def new_resolved_bad_cases() -> int:
    """Resolved bad cases with a correct SKU that no run has trained on yet (a failed run
    trained on nothing: its cases still count)."""
    last = (TrainingRun.objects.exclude(data_cutoff=None)
            .exclude(status=TrainingRun.Status.FAILED).order_by("-data_cutoff").first())
    cases = BadCase.objects.filter(status=BadCase.Status.RESOLVED, correct_sku__isnull=False)
    if last is not None:
        cases = cases.filter(resolved_at__gt=last.data_cutoff)
    return cases.count()


def _enqueue(run_id: int) -> None:
    # By name: tasks import this module, not the other way (a lost message: the sweeper resends)
    enqueue_on_commit("learning.train_model", run_id)


def training_run_request(
    *, trigger: str, user: User | None = None, options: dict[str, Any] | None = None
) -> TrainingRun:
    """Queue a run. Raises TrainingError while another one is queued or running."""
    unknown = set(options or {}) - RUN_ONLY_OPTIONS - ml_gateway.train_option_names()
    if unknown:
        raise TrainingError(f"Unknown training option(s): {', '.join(sorted(unknown))}")
    if training_run_in_flight() is not None:
        raise TrainingError("A training run is already queued or running.")
    try:
        with transaction.atomic():
            run = TrainingRun.objects.create(
                trigger=trigger, requested_by=user, options=options or {}
            )
            _enqueue(run.pk)
    except IntegrityError as exc:  # the one-in-flight constraint: a concurrent request won
        raise TrainingError("A training run is already queued or running.") from exc
    return run


def training_run_maybe_trigger() -> TrainingRun | None:
    """The beat check: start a run when enough new resolved bad cases have gathered."""
    if new_resolved_bad_cases() < settings.RETRAIN_MIN_BAD_CASES:
        return None
    try:
        return training_run_request(trigger=TrainingRun.Trigger.AUTO)
    except TrainingError:
        return None


def training_run_cancel(*, run: TrainingRun) -> TrainingRun:
    """A queued run is cancelled at once; a running one stops at its next step."""
    with transaction.atomic():
        TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.QUEUED).update(
            status=TrainingRun.Status.CANCELLED, finished_at=timezone.now(),
            stage="cancelled before it started",
        )
        TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.RUNNING).update(
            cancel_requested=True
        )
    run.refresh_from_db()
    return run


def training_run_fail(*, run_id: int, error: str) -> None:
    TrainingRun.fail(run_id, error=error)  # only a queued or running one


def _claim(run_id: int) -> bool:
    return TrainingRun.claim(run_id, takeover=STALE_AFTER, also=Q(cancel_requested=False),
                             stage="exporting data", progress=1.0, error="")


class RunReporter(logging.Handler):
    """Collects the trainer's log and progress, and writes both to the row (throttled).

    Also the trainer's `on_step` hook: returns False once someone asked to cancel."""

    def __init__(self, run_id: int, *, interval_s: float = 1.0) -> None:
        super().__init__(level=logging.INFO)
        self.run_id = run_id
        self.interval_s = interval_s
        self.lines: deque[str] = deque(maxlen=LOG_LINES)
        self.fields: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []
        self._last = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))

    def start_heartbeat(self, every_s: float = 15.0) -> None:
        """Keep the heartbeat and the log fresh while the trainer has no steps to report
        (decoding images, caching trunk features), so the row never looks orphaned."""
        if connection.in_atomic_block:
            return  # inside a caller's transaction another connection would only wait on it

        def beat() -> None:
            try:
                while not self._stop.wait(every_s):
                    if time.monotonic() - self._last >= every_s:
                        self.flush_now()
            finally:
                connection.close()

        self._thread = threading.Thread(target=beat, name=f"run-{self.run_id}-beat", daemon=True)
        self._thread.start()

    def stop_heartbeat(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock:
            self.lines.append(self.format(record))

    def note(self, message: str, **fields: Any) -> bool:
        logger.info("run %s: %s", self.run_id, message)
        with self._lock:
            self.lines.append(f"{timezone.localtime():%H:%M:%S} {message}")
            self.fields.update(fields)
        return self.flush_now()

    def flush_now(self) -> bool:
        """Write progress and log; returns False when the run should stop."""
        self._last = time.monotonic()
        with self._lock:  # the heartbeat thread flushes too
            log = "\n".join(self.lines)
            fields = dict(self.fields)
        TrainingRun.objects.filter(pk=self.run_id).update(
            log=log, heartbeat_at=timezone.now(), **fields
        )
        return not TrainingRun.objects.filter(pk=self.run_id, cancel_requested=True).exists()

    def __call__(self, info: dict[str, Any]) -> bool:
        if info.get("event") == "epoch":
            with self._lock:
                self.history.append({k: v for k, v in info.items() if k != "event"})
                self.fields["history"] = list(self.history)
            return self.flush_now()
        total = max(1, int(info["total_steps"]))
        with self._lock:
            self.fields.update(
                stage="training", epoch=info["epoch"], epochs=info["epochs"],
                step=info["done_steps"], steps_total=total, loss=float(info["loss"]),
                eta_s=float(info["eta_s"]), progress=10.0 + 80.0 * info["done_steps"] / total,
            )
        if time.monotonic() - self._last < self.interval_s and info["done_steps"] < total:
            return True
        return self.flush_now()


def train_config(
    run: TrainingRun, *, data: str, out: Path, augment: dict[str, float]
) -> ml_gateway.TrainConfig:
    """Defaults < settings < SKULENS_TRAIN_OPTIONS < the run's own options."""
    live = live_model_ref()
    values: dict[str, Any] = {
        # The live model seeds the run when its backbone, size and dim match the recipe's.
        "warm_start": live if Path(live).is_file() else None,
        "backbone": settings.TRAIN_BACKBONE,
        "epochs": settings.TRAIN_EPOCHS,
        "image_size": settings.TRAIN_IMAGE_SIZE or None,
        "embedding_dim": settings.TRAIN_EMBEDDING_DIM,
        "cached_views": settings.TRAIN_CACHED_VIEWS,
        "freeze_blocks": (11 if settings.TRAIN_CACHED_VIEWS
                          else ml_gateway.train_option_default("freeze_blocks")),
        "batches_per_epoch": settings.TRAIN_BATCHES_PER_EPOCH or None,
        "max_minutes": settings.TRAIN_MAX_MINUTES or None,
        "device": settings.TORCH_DEVICE,
        "augment": augment,
        "seed": run.pk,
        **settings.TRAIN_OPTIONS,
        **{k: v for k, v in run.options.items() if k not in RUN_ONLY_OPTIONS},
    }
    values.update(data=data, out=str(out), progress=False)
    return ml_gateway.train_config(values)


def training_run_execute(*, run_id: int) -> bool:
    """Run one training end to end. Returns False when the row was not ours to run."""
    if not _claim(run_id):
        return False
    run = TrainingRun.objects.get(pk=run_id)
    reporter = RunReporter(run_id)
    ml_log = logging.getLogger("ml")
    ml_log.addHandler(reporter)
    previous_level = ml_log.level
    ml_log.setLevel(logging.INFO)
    reporter.start_heartbeat()
    try:
        return _execute(run, reporter)
    finally:
        reporter.stop_heartbeat()
        ml_log.removeHandler(reporter)
        ml_log.setLevel(previous_level)


def _execute(run: TrainingRun, reporter: RunReporter) -> bool:
    started = time.perf_counter()
    folder = Path(settings.TRAINING_DIR) / f"run-{run.pk}"
    cutoff = timezone.now()
    snapshot = training_data_export(
        folder=folder, until=cutoff, shuffle_labels=bool(run.options.get("shuffle_labels")),
        seed=run.pk,
    )
    weights = {k: v for k, v in snapshot.cause_counts.items() if k != "catalogue_gap"}
    # Transforms aimed at what QA saw go wrong; the defaults before anything was tagged.
    augment = ml_gateway.augment_probabilities(weights)
    cfg = train_config(run, data=snapshot.csv, out=folder / "out", augment=augment)
    TrainingRun.objects.filter(pk=run.pk).update(
        data_cutoff=cutoff, data_snapshot=snapshot.as_json(), cause_weights=weights,
        config=dataclasses.asdict(cfg), epochs=cfg.epochs,
    )
    reporter.note(
        f"data: {snapshot.catalogue_images} catalogue images, {snapshot.photos} photos "
        f"({snapshot.from_bad_cases} from bad cases, {snapshot.hard_negatives} hard negatives), "
        f"{snapshot.holdout_requests} requests held out for the gate",
        stage="preparing images and features", progress=5.0,
    )
    cancelled = ml_gateway.train(cfg, on_step=reporter, note=reporter.note)
    if cancelled:
        reporter.flush_now()
        TrainingRun.objects.filter(pk=run.pk).update(
            status=TrainingRun.Status.CANCELLED, stage="cancelled", finished_at=timezone.now()
        )
        return True
    checkpoint = folder / "out" / "model.pt"
    if not checkpoint.is_file():
        raise TrainingError("Training ended without a checkpoint.")
    stored = checkpoint_store(source=checkpoint, stem=f"run{run.pk}")
    best = [row for row in trainer_history(folder) if "best_epoch" in row]
    model = model_version_register(
        model_ref=str(stored), source=ModelVersion.Source.TRAINED, training_run=run,
        data_snapshot=snapshot.as_json(), config=dataclasses.asdict(cfg),
        metrics={"selection": best[-1] if best else {}, "history": reporter.history,
                 "train_s": round(time.perf_counter() - started, 1)},
    )
    reporter.note(f"registered {model.name}; evaluating the gate", stage="gate", progress=92.0)
    model = model_version_gate(model=model, progress=lambda message: reporter.note(message))
    verdict = "passed" if model.gate == ModelVersion.Gate.PASSED else "refused"
    reporter.note(f"gate {verdict}: " + ("; ".join(model.gate_report.get("reasons", [])) or
                                          "better than the live model"))
    TrainingRun.objects.filter(pk=run.pk).update(
        status=TrainingRun.Status.SUCCEEDED, stage=f"done, gate {verdict}", progress=100.0,
        finished_at=timezone.now(), eta_s=0.0,
    )
    if model.gate == ModelVersion.Gate.PASSED and settings.AUTO_PROMOTE:
        try:
            promotion_request(model=model, automatic=True)
        except PromotionError as exc:
            reporter.note(f"not promoted automatically: {exc}")
    return True


def trainer_history(folder: Path) -> list[dict[str, Any]]:
    path = folder / "out" / "history.json"
    return json.loads(path.read_text()) if path.is_file() else []
