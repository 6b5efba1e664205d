from __future__ import annotations

from django.db.models import QuerySet

from webapp import ml_gateway
from webapp.learning.models import IndexVersion, ModelVersion, Promotion, TrainingRun
from webapp.ml_gateway.sources import IndexFiles


def active_index_version() -> IndexVersion | None:
    return IndexVersion.objects.filter(is_active=True).first()


# ----- what the ml gateway loads (installed as its readers by webapp.learning.apps) -------


def _index_files(version: IndexVersion) -> IndexFiles:
    return IndexFiles(version.name, version.vector_count, version.model_ref,
                      version.model_version)


def active_index_files() -> IndexFiles | None:
    """The active index version's files, as the gateway loads them."""
    version = active_index_version()
    return _index_files(version) if version is not None else None


def earlier_index_files(name: str, *, limit: int = 5) -> list[IndexFiles]:
    """Ready versions of the same model as version `name`, older than it, newest first."""
    version = IndexVersion.objects.filter(name=name).first()
    if version is None:
        return []
    earlier = IndexVersion.objects.filter(
        status=IndexVersion.Status.READY,
        model_version=version.model_version,
        created_at__lt=version.created_at,
    ).order_by("-created_at")[:limit]
    return [_index_files(v) for v in earlier]


# ----- the learning loop ------------------------------------------------------------------


def live_model_ref() -> str:
    """What matching loads now: the active index's model (they always go live together)."""
    version = active_index_version()
    return version.model_ref if version and version.model_ref else ml_gateway.default_model_ref()


def live_model() -> ModelVersion | None:
    return ModelVersion.objects.filter(model_ref=live_model_ref()).first()


def training_run_in_flight() -> TrainingRun | None:
    return TrainingRun.objects.filter(
        status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING]
    ).first()


def promotion_in_flight() -> Promotion | None:
    return Promotion.objects.filter(
        status__in=[Promotion.Status.QUEUED, Promotion.Status.RUNNING]
    ).first()


def training_runs(*, limit: int = 50) -> QuerySet[TrainingRun]:
    return TrainingRun.objects.select_related("requested_by", "model")[:limit]


def model_versions() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.select_related("training_run")


def promotions(*, limit: int = 20) -> QuerySet[Promotion]:
    return Promotion.objects.select_related("model", "requested_by", "index_version")[:limit]
