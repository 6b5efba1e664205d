"""Retention: old index versions and checkpoints are pruned, the ones that matter are kept.

Kept, always: the active index and the live model; the latest rollback target (the model that
was live most recently before the live one) with its latest index version, so a rollback stays
one quick action; anything a queued or running promotion needs. Beyond those, the newest
`SKULENS_RETENTION_INDEX_VERSIONS` index versions and `SKULENS_RETENTION_MODELS` trained models
stay. Pruned rows stay in the database (the history keeps its names) with their files gone.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from webapp import ml_gateway
from webapp.learning import artifacts
from webapp.learning.models import IndexVersion, ModelVersion, Promotion, TrainingRun
from webapp.learning.selectors import active_index_version, live_model_ref

logger = logging.getLogger(__name__)


@dataclass
class PruneReport:
    index_versions: list[str] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)
    run_folders: list[str] = field(default_factory=list)


def rollback_target() -> ModelVersion | None:
    """The model a rollback would bring back: the most recently live one that is not live."""
    return (
        ModelVersion.objects.exclude(model_ref=live_model_ref())
        .exclude(promoted_at=None).order_by("-promoted_at").first()
    )


def _latest_index_of(model_ref: str) -> IndexVersion | None:
    return (
        IndexVersion.objects.filter(model_ref=model_ref, status=IndexVersion.Status.READY)
        .order_by("-created_at").first()
    )


def artifacts_prune(
    *, keep_index_versions: int | None = None, keep_models: int | None = None
) -> PruneReport:
    """Delete the files of index versions and checkpoints nobody needs any more."""
    keep_index_versions = (
        settings.RETENTION_INDEX_VERSIONS if keep_index_versions is None else keep_index_versions
    )
    keep_models = settings.RETENTION_MODELS if keep_models is None else keep_models
    report = PruneReport()
    in_flight = Promotion.objects.filter(
        status__in=[Promotion.Status.QUEUED, Promotion.Status.RUNNING]
    )
    protected_refs = {live_model_ref(), *in_flight.values_list("model__model_ref", flat=True)}
    target = rollback_target()
    if target is not None:
        protected_refs.add(target.model_ref)

    keep_versions = {
        v.pk for v in IndexVersion.objects.filter(status=IndexVersion.Status.READY)
        .order_by("-created_at")[: max(0, keep_index_versions)]
    }
    active = active_index_version()
    if active is not None:
        keep_versions.add(active.pk)
    for ref in protected_refs:
        latest = _latest_index_of(ref)
        if latest is not None:
            keep_versions.add(latest.pk)
    for version in IndexVersion.objects.filter(status=IndexVersion.Status.READY).exclude(
        pk__in=keep_versions
    ):
        shutil.rmtree(ml_gateway.index_path(version.name), ignore_errors=True)
        artifacts.index_artifact_delete(name=version.name)  # the replicas' copy too
        IndexVersion.objects.filter(pk=version.pk).update(
            status=IndexVersion.Status.PRUNED, pruned_at=timezone.now()
        )
        report.index_versions.append(version.name)

    trained = ModelVersion.objects.filter(source=ModelVersion.Source.TRAINED, pruned_at=None)
    keep_model_ids = set(trained.order_by("-created_at").values_list("pk", flat=True)[
        : max(0, keep_models)
    ])
    for model in trained.exclude(pk__in=keep_model_ids).exclude(model_ref__in=protected_refs):
        checkpoint = Path(model.model_ref)
        checkpoint.unlink(missing_ok=True)
        # Runtime exports cached beside it (`<checkpoint>.<key>.onnx` and their sidecars).
        for export in checkpoint.parent.glob(f"{checkpoint.name}.*"):
            export.unlink(missing_ok=True)
        artifacts.checkpoint_artifact_delete(model_ref=model.model_ref)
        if checkpoint.parent.is_dir() and not any(checkpoint.parent.iterdir()):
            checkpoint.parent.rmdir()
        ModelVersion.objects.filter(pk=model.pk).update(pruned_at=timezone.now())
        report.checkpoints.append(model.name)

    # A run's folder holds its training CSV and the trainer's output; the registry keeps the
    # checkpoint itself. Folders of all but the newest runs go.
    recent_runs = set(TrainingRun.objects.order_by("-created_at").values_list("pk", flat=True)[
        : max(1, keep_models)
    ])
    finished = TrainingRun.objects.filter(
        Q(status=TrainingRun.Status.SUCCEEDED) | Q(status=TrainingRun.Status.FAILED)
        | Q(status=TrainingRun.Status.CANCELLED)
    ).exclude(pk__in=recent_runs)
    for run_id in finished.values_list("pk", flat=True):
        folder = Path(settings.TRAINING_DIR) / f"run-{run_id}"
        if folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
            report.run_folders.append(folder.name)
    if report.index_versions or report.checkpoints or report.run_folders:
        logger.info("pruned %d index versions, %d checkpoints, %d run folders",
                    len(report.index_versions), len(report.checkpoints), len(report.run_folders))
    return report
