"""The learning loop, simulated end to end through the app's own services and tasks.

A stream of grocery *train* photos is uploaded by a simulated appraiser who knows the truth
(accepts it when shown, else searches for it or rejects all); a simulated QA reviewer resolves
every bad case with the true SKU and a heuristic cause; a beat check every few photos starts
retraining with the app's own training settings; the gate decides; promotion swaps model and
index. Live Recall@1 / Top-4 is measured on the grocery *val* photos (never trained or selected
on) before and after each promotion: cold (catalogue images only), warm (catalogue + confirmed
photos) and 2-photo (consecutive val photos of a product fused, cold).

The results file is rewritten after every step, so a stopped simulation resumes where it was
(`resume=True`): the stream's order is fixed by the seed, and a run or promotion that was
interrupted is marked failed and triggered again by the next beat check.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image, ImageFilter

from webapp import ml_gateway
from webapp.accounts.roles import Role
from webapp.accounts.services import user_create_with_role
from webapp.catalog.bulk import catalogue_import_rows
from webapp.catalog.bundles import FolderSource
from webapp.catalog.importing import grocery_rows
from webapp.catalog.models import SKU
from webapp.learning.measure import LiveRecall, live_recall
from webapp.learning.models import ModelVersion, Promotion, TrainingRun
from webapp.learning.promotion import promotion_fail
from webapp.learning.retention import artifacts_prune
from webapp.learning.selectors import active_index_version
from webapp.learning.services import index_publish
from webapp.learning.tasks import check_retraining, sync_index
from webapp.learning.training import (
    new_resolved_bad_cases,
    training_run_fail,
    training_run_request,
)
from webapp.matching.decisions import decision_record
from webapp.matching.models import Decision, MatchRequest
from webapp.matching.requests import match_request_create
from webapp.review.models import BadCase
from webapp.review.services import bad_case_resolve

Log = Callable[[str], None]


@dataclass
class SimConfig:
    root: Path
    photos: int = 2640
    seed: int = 0
    retrain_min_bad_cases: int = 300
    check_every: int = 20  # photos between two beat checks
    search_probability: float = 0.7  # a miss is searched for (other SKU), else rejected
    gallery_policy: str = "corrections"
    max_minutes: float = 0.0  # 0: no budget (stop and resume instead)
    shuffled_demo: bool = True
    shuffled_options: dict[str, Any] = field(default_factory=lambda: {"epochs": 4})
    results: Path | None = None  # rewritten after every step; read back to resume
    resume: bool = False
    train: dict[str, Any] = field(default_factory=dict)


@dataclass
class Point:
    photos: int
    label: str
    model: str
    index: str
    cold_r1: float
    cold_r4: float
    warm_r1: float
    warm_r4: float
    gallery: int
    elapsed_s: float
    pair_r1: float = 0.0
    pair_r4: float = 0.0


@dataclass
class Outcome:
    points: list[Point] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    decisions: dict[str, int] = field(default_factory=dict)
    bad_cases: int = 0
    wall_s: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)
    photos_seen: int = 0
    finished: bool = False

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def reviewer_causes(image: Image.Image) -> list[str]:
    """The simulated reviewer's tags: what a glance at the photo suggests (heuristic)."""
    grey = image.convert("L").resize((128, 128))
    pixels = np.asarray(grey, dtype=np.float32)
    edges = np.asarray(grey.filter(ImageFilter.FIND_EDGES), dtype=np.float32)
    causes = []
    if pixels.mean() < 80 or pixels.mean() > 185:
        causes.append("lighting")
    if edges.var() < 150:
        causes.append("compression_blur")
    return causes or ["background"]  # grocery shelves: the usual suspect


class Simulation:
    def __init__(self, cfg: SimConfig, log: Log) -> None:
        self.cfg = cfg
        self.log = log
        self.started = time.perf_counter()
        self.outcome = Outcome(config=json.loads(json.dumps(asdict(cfg), default=str)))
        self.elapsed_before = 0.0  # wall time of earlier sittings (resumed simulation)
        self.seen = 0
        if cfg.resume and cfg.results is not None and cfg.results.is_file():
            self.outcome = read_json(cfg.results)
            self.seen = self.outcome.photos_seen
            self.elapsed_before = self.outcome.wall_s
        # The appraiser's choices come from their own generator, seeded by the position, so a
        # resumed simulation continues with the same kind of draws.
        self.rng = random.Random(f"{cfg.seed}/{self.seen}")
        self.truth: dict[int, int] = {}  # request id -> true SKU id
        self.sync_wanted = False

    # ----- set-up -------------------------------------------------------------------------

    def setup(self) -> None:
        resuming = self.cfg.resume and self.seen > 0
        if MatchRequest.objects.exists() and not resuming:
            raise RuntimeError("The database already holds matches: use a fresh SKULENS_VAR_DIR "
                               "(or --resume to continue the simulation that made them).")
        if resuming:
            self.appraiser = User.objects.get(username="sim-appraiser")
            self.qa = User.objects.get(username="sim-qa")
            streamed = MatchRequest.objects.filter(created_by=self.appraiser).count()
            if not self.seen <= streamed <= self.seen + self.cfg.check_every:
                raise RuntimeError(f"the results file says {self.seen} photos were streamed, "
                                   f"the database holds {streamed}: not the same simulation")
            if streamed > self.seen:  # stopped between two saves: those photos stay streamed
                self.log(f"{streamed - self.seen} photos were streamed after the last save; "
                         "they stay (their decisions are not in the tallies)")
                self.seen = streamed
                self.rng = random.Random(f"{self.cfg.seed}/{self.seen}")
            self.interrupted_work_fail()
        else:
            self.appraiser = user_create_with_role(
                username="sim-appraiser", password="sim-sim-sim", role=Role.APPRAISER)
            self.qa = user_create_with_role(username="sim-qa", password="sim-sim-sim",
                                            role=Role.QA)
        if not SKU.objects.filter(code__startswith="GROCERY-").exists():
            report = catalogue_import_rows(rows=list(grocery_rows(self.cfg.root)),
                                           source=FolderSource(self.cfg.root), actor=None)
            self.log(f"imported the grocery catalogue: {report}")
        if active_index_version() is None:
            index_publish()
        self.sku_of = {int(code.split("-")[1]): pk for pk, code in
                       SKU.objects.filter(code__startswith="GROCERY-").values_list("pk", "code")}
        val = ml_gateway.grocery_split(self.cfg.root, "val")
        self.val_images = [Image.open(path).convert("RGB") for path, _, _ in val]
        self.val_labels = [self.sku_of[product] for _, product, _ in val]
        train = ml_gateway.grocery_split(self.cfg.root, "train")
        self.stream = random.Random(self.cfg.seed).sample(train, min(self.cfg.photos, len(train)))
        # Requests were made in stream order: the truth of the ones streamed before a resume.
        done = MatchRequest.objects.filter(created_by=self.appraiser).order_by("pk")
        for request_id, (_path, product, _coarse) in zip(
            done.values_list("pk", flat=True), self.stream, strict=False
        ):
            self.truth[request_id] = self.sku_of[product]
        self.log(f"{len(self.stream)} train photos to stream ({self.seen} done), "
                 f"{len(self.val_images)} val photos")

    def interrupted_work_fail(self) -> None:
        """A run or promotion that was under way when the last sitting stopped."""
        runs = TrainingRun.objects.filter(
            status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING])
        promotions = Promotion.objects.filter(
            status__in=[Promotion.Status.QUEUED, Promotion.Status.RUNNING])
        for run_id in runs.values_list("pk", flat=True):
            training_run_fail(run_id=run_id, error="interrupted: the simulation was stopped")
            self.log(f"run #{run_id} was interrupted: marked failed")
        for promotion_id in promotions.values_list("pk", flat=True):
            promotion_fail(promotion_id=promotion_id,
                           error="interrupted: the simulation was stopped")
            self.log(f"promotion #{promotion_id} was interrupted: marked failed")

    def save(self) -> None:
        self.outcome.photos_seen = self.seen
        self.outcome.wall_s = round(self.elapsed(), 1)
        if self.cfg.results is not None:
            write_json(self.outcome, self.cfg.results)

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    # ----- measuring ----------------------------------------------------------------------

    def measure(self, label: str) -> Point:
        started = time.perf_counter()
        r: LiveRecall = live_recall(self.val_images, self.val_labels)
        point = Point(self.seen, label, r.model_version.split("|")[0], r.index_version,
                      r.cold_r1, r.cold_r4, r.warm_r1, r.warm_r4, r.gallery_total,
                      round(self.elapsed(), 1), r.pair_r1, r.pair_r4)
        self.outcome.points.append(point)
        self.log(f"[{point.photos:4d} photos] {label}: cold R@1 {r.cold_r1:.3f} Top-4 "
                 f"{r.cold_r4:.3f} | warm R@1 {r.warm_r1:.3f} Top-4 {r.warm_r4:.3f} | 2-photo "
                 f"R@1 {r.pair_r1:.3f} | gallery {r.gallery_total} | model {point.model} "
                 f"({time.perf_counter() - started:.0f} s)")
        self.save()
        return point

    # ----- the people ---------------------------------------------------------------------

    def appraise(self, path: Path, product: int) -> None:
        data = path.read_bytes()
        upload = SimpleUploadedFile(path.name, data, content_type="image/jpeg")
        request = match_request_create(user=self.appraiser, uploads=[upload])  # runs eagerly
        request.refresh_from_db()
        if request.status != MatchRequest.Status.DONE:
            raise RuntimeError(f"match {request.pk} {request.status}: {request.error}")
        truth = self.sku_of[product]
        self.truth[request.pk] = truth
        shown = request.candidates.filter(sku_id=truth).first()
        if shown is not None:
            outcome = Decision.Outcome.ACCEPT
            decision_record(request=request, user=self.appraiser, outcome=outcome,
                            candidate_id=shown.pk)
        elif self.rng.random() < self.cfg.search_probability:
            outcome = Decision.Outcome.OTHER_SKU
            decision_record(request=request, user=self.appraiser, outcome=outcome, sku_id=truth)
        else:
            outcome = Decision.Outcome.REJECT
            decision_record(request=request, user=self.appraiser, outcome=outcome)
        key = str(outcome.value) if shown is None or shown.rank > 1 else "accept_top1"
        self.outcome.decisions[key] = self.outcome.decisions.get(key, 0) + 1

    def review(self) -> None:
        for case in BadCase.objects.filter(status=BadCase.Status.OPEN).select_related("request"):
            photo = case.request.photos.first()
            assert photo is not None  # every match has its photos
            with photo.image.open("rb") as handle:
                image = Image.open(handle).convert("RGB")
            bad_case_resolve(bad_case=case, actor=self.qa, causes=reviewer_causes(image),
                             correct_sku=SKU.objects.get(pk=self.truth[case.request_id]))
            self.outcome.bad_cases += 1

    # ----- the loop -----------------------------------------------------------------------

    def beat(self) -> None:
        """What Celery beat does every few minutes; measured around a swap when one happens."""
        if new_resolved_bad_cases() < settings.RETRAIN_MIN_BAD_CASES:
            return
        promotions = Promotion.objects.filter(status=Promotion.Status.DONE).count()
        before = self.measure("before retraining")
        run_id = check_retraining.delay().get()  # eager: trains, gates and promotes now
        self.record_run(run_id)
        if Promotion.objects.filter(status=Promotion.Status.DONE).count() > promotions:
            self.measure(f"after promotion {promotions + 1}")
        else:
            self.log(f"no promotion (still {before.model})")
        self.prune_index_versions()

    def record_run(self, run_id: int) -> dict[str, Any]:
        run = TrainingRun.objects.get(pk=run_id)
        model = ModelVersion.objects.filter(training_run=run).first()
        row = {
            "run": run.pk, "status": run.status, "photos_seen": self.seen,
            "options": run.options, "data": run.data_snapshot, "error": run.error,
            "train_s": round(run.duration_s or 0, 1),
            "model": model.name if model else None,
            "gate": model.gate if model else None,
            "gate_reasons": model.gate_report.get("reasons") if model else None,
            "gate_figures": model.gate_report.get("figures") if model else None,
            "selection": (model.metrics.get("selection") if model else None),
        }
        self.outcome.runs.append(row)
        self.log(f"run #{run.pk} {run.status} in {row['train_s']} s: gate {row['gate']} "
                 f"{'; '.join(row['gate_reasons'] or []) or ''}")
        if run.status == TrainingRun.Status.FAILED:
            self.log(run.error)
        return row

    def prune_index_versions(self) -> None:
        """Every gallery addition publishes an index version: the retention policy runs."""
        artifacts_prune()

    def over_time(self) -> bool:
        return bool(self.cfg.max_minutes) and (
            time.perf_counter() - self.started) / 60 > self.cfg.max_minutes

    @contextmanager
    def coalesced_index_sync(self) -> Iterator[None]:
        """Gallery enrichment asks for an index sync after every confirmed photo; on this
        machine each publish costs seconds of fsync. Inside this block the requests are
        noted and `sync()` runs the same task once, as the hourly beat sync would."""
        # Gallery enrichment sends it with apply_async (webapp.enqueue), receivers with delay.
        original_delay, original_apply_async = sync_index.delay, sync_index.apply_async
        self.sync_wanted = False

        def note(*_args: object, **_kwargs: object) -> None:
            self.sync_wanted = True

        sync_index.delay = note  # type: ignore[method-assign]
        sync_index.apply_async = note  # type: ignore[method-assign]
        try:
            yield
        finally:
            sync_index.delay = original_delay  # type: ignore[method-assign]
            sync_index.apply_async = original_apply_async  # type: ignore[method-assign]

    def sync(self) -> None:
        if self.sync_wanted:
            sync_index()
            self.sync_wanted = False
            self.prune_index_versions()

    def run(self) -> Outcome:
        self.setup()
        if self.outcome.finished:
            self.log("this simulation is finished already")
            return self.outcome
        if not self.outcome.points:
            self.measure("start")
        with self.coalesced_index_sync():
            for path, product, _coarse in self.stream[self.seen :]:
                self.appraise(path, product)
                self.seen += 1
                self.review()
                if self.seen % self.cfg.check_every == 0:
                    self.sync()
                    self.beat()
                    self.save()
                    if self.over_time():
                        self.log("time budget reached: stopping here (resume to continue)")
                        return self.outcome
            self.sync()
        self.measure("end of stream")
        if self.cfg.shuffled_demo:
            self.log("training a deliberately broken model (shuffled labels) for the gate")
            run = training_run_request(trigger=TrainingRun.Trigger.MANUAL,
                                       options={"shuffle_labels": True,
                                                **self.cfg.shuffled_options})
            self.record_run(run.pk)
        self.outcome.finished = True
        self.save()
        return self.outcome


def plot_curve(outcome: Outcome, path: Path) -> None:
    """Recall on grocery val against photos streamed, with the promotions marked."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.2), dpi=110)
    ax = fig.add_subplot()
    points = outcome.points
    x = [p.photos for p in points]
    for key, label, style in (("cold_r1", "cold R@1", "-o"), ("cold_r4", "cold Top-4", "--o"),
                              ("warm_r1", "warm R@1", "-s"), ("warm_r4", "warm Top-4", "--s")):
        ax.plot(x, [getattr(p, key) for p in points], style, markersize=3, label=label)
    for p in points:
        if p.label.startswith("after promotion"):
            ax.axvline(p.photos, color="#7a4b2a", alpha=0.4, linestyle=":")
            ax.text(p.photos, 0.02, p.label.replace("after ", ""), rotation=90, fontsize=7,
                    color="#7a4b2a", va="bottom", ha="right")
    for run in outcome.runs:
        if run.get("gate") == "refused":
            shuffled = bool((run.get("options") or {}).get("shuffle_labels"))
            what = f"run {run['run']} refused" + (" (shuffled labels)" if shuffled else "")
            ax.axvline(run["photos_seen"], color="#b3261e", alpha=0.35, linestyle="--")
            ax.text(run["photos_seen"], 0.02, what, rotation=90, fontsize=7, color="#b3261e",
                    va="bottom", ha="left")  # promotions are labelled on the left
    ax.set_xlabel("appraisal photos streamed (grocery train)")
    ax.set_ylabel("grocery val (296 photos)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center right")
    ax.set_title("Learning loop: live model + index on grocery val", fontsize=10, loc="left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def write_json(outcome: Outcome, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(outcome.as_json(), indent=1, default=str))


def read_json(path: Path) -> Outcome:
    data = json.loads(path.read_text())
    return Outcome(points=[Point(**p) for p in data["points"]], runs=data["runs"],
                   decisions=data["decisions"], bad_cases=data["bad_cases"],
                   wall_s=data["wall_s"], config=data["config"],
                   photos_seen=data.get("photos_seen", 0), finished=data.get("finished", False))
