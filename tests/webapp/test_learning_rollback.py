"""Rollback in seconds (the kept index comes back, nothing is re-embedded) and retention."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.utils import timezone

from tests.webapp.factories import IndexVersionFactory, ModelVersionFactory, SKUImageFactory
from tests.webapp.loop_models import (  # noqa: F401 - fixtures
    checkpoints,
    fast_isolation,
    loop_dirs,
    small_catalogue,
)
from webapp import ml_gateway
from webapp.catalog.demo import demo_skus, render_reference
from webapp.catalog.models import SKU, SKUImage
from webapp.learning.models import IndexVersion, ModelVersion, Promotion
from webapp.learning.promotion import PromotionError, promotion_request
from webapp.learning.registry import model_version_register
from webapp.learning.retention import artifacts_prune, rollback_target
from webapp.learning.selectors import live_model_ref
from webapp.learning.services import index_publish

from .conftest import jpeg_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def embedded(monkeypatch) -> list[int]:
    """Counts every image the gateway embeds for the index (reference images)."""
    calls: list[int] = []
    original = ml_gateway.embed_crops

    def counting(crops, **kwargs):
        calls.append(len(crops))
        return original(crops, **kwargs)

    monkeypatch.setattr(ml_gateway, "embed_crops", counting)
    return calls


@pytest.fixture
def on_commit(django_capture_on_commit_callbacks):
    """Runs the on-commit task enqueues (eager Celery) inside the test's transaction."""

    def run(action):
        with django_capture_on_commit_callbacks(execute=True):
            return action()

    return run


def _promote(model_ref: str, on_commit) -> Promotion:
    model = model_version_register(model_ref=model_ref, source=ModelVersion.Source.TRAINED)
    ModelVersion.objects.filter(pk=model.pk).update(
        gate=ModelVersion.Gate.PASSED, gate_report={"live_model_ref": live_model_ref()}
    )
    model.refresh_from_db()
    promotion = on_commit(lambda: promotion_request(model=model))
    promotion.refresh_from_db()
    assert promotion.status == Promotion.Status.DONE, promotion.error
    return promotion


def test_rollback_reactivates_the_kept_index_and_embeds_nothing(
    small_catalogue, checkpoints, embedded, on_commit  # noqa: F811
) -> None:
    first = small_catalogue
    good_version = first.model_version
    _promote(checkpoints["useless"], on_commit)
    assert embedded, "a new model re-embeds the catalogue"
    assert set(SKUImage.objects.values_list("embedding_model", flat=True)) != {good_version}
    embedded.clear()

    baseline = ModelVersion.objects.get(model_ref=checkpoints["good"])
    assert rollback_target() == baseline
    rollback = on_commit(lambda: promotion_request(model=baseline))
    rollback.refresh_from_db()
    assert rollback.kind == Promotion.Kind.ROLLBACK
    assert rollback.status == Promotion.Status.DONE, rollback.error
    assert embedded == []  # nothing re-embedded
    assert rollback.index_version == first
    assert IndexVersion.objects.get(is_active=True) == first
    assert live_model_ref() == checkpoints["good"]
    # The database embeddings are the kept index's again, so later syncs stay incremental.
    assert set(SKUImage.objects.values_list("embedding_model", flat=True)) == {good_version}
    stored = SKUImage.objects.order_by("pk").first()
    index = ml_gateway.active_index.get()[1]
    assert np.allclose(np.frombuffer(bytes(stored.embedding), dtype=np.float32),
                       index.reconstruct(np.asarray([stored.pk]))[0])
    result = ml_gateway.match([render_reference(demo_skus()[0], 0)], allowed_reference_ids=None,
                              top_k=3)
    assert result.index_version == first.name and result.candidates


def test_rollback_after_a_catalogue_change_embeds_only_the_new_image(
    small_catalogue, checkpoints, embedded, on_commit  # noqa: F811
) -> None:
    _promote(checkpoints["useless"], on_commit)
    sku = SKU.objects.order_by("code").first()
    spec = next(s for s in demo_skus() if s.code == sku.code)
    SKUImageFactory(sku=sku, source=SKUImage.Source.CATALOGUE, position=5,
                    image=ContentFile(jpeg_bytes(render_reference(spec, 3)), name="extra.jpg"))
    index_publish()  # the sync task: the new image joins the live (useless) model's index
    embedded.clear()

    good = ModelVersion.objects.get(model_ref=checkpoints["good"])
    rollback = on_commit(lambda: promotion_request(model=good))
    rollback.refresh_from_db()
    assert rollback.status == Promotion.Status.DONE, rollback.error
    assert sum(embedded) == 1  # only the image added since the kept index was built
    active = IndexVersion.objects.get(is_active=True)
    assert active.parent == small_catalogue and active.added == 1
    assert active.vector_count == small_catalogue.vector_count + 1


def test_retention_keeps_live_rollback_target_and_newest(
    small_catalogue, checkpoints, settings, tmp_path: Path, on_commit  # noqa: F811
) -> None:
    settings.RETENTION_INDEX_VERSIONS = 1
    settings.RETENTION_MODELS = 1
    _promote(checkpoints["useless"], on_commit)
    useless_index = IndexVersion.objects.get(is_active=True)
    # Three more trained checkpoints that were never live, oldest first.
    extra = []
    for n in range(3):
        path = tmp_path / f"extra{n}" / f"run{n}.pt"
        path.parent.mkdir()
        path.write_bytes(Path(checkpoints["useless"]).read_bytes())
        (path.parent / f"{path.name}.abc123.onnx").write_bytes(b"export")  # a cached export
        extra.append(ModelVersionFactory(
            name=f"extra-{n}", model_ref=str(path), source=ModelVersion.Source.TRAINED
        ))
    # Stale index versions of the live model: incremental publishes that are now history.
    stale = [
        IndexVersionFactory(name=f"idx-old-{n}", model_version="x", model_ref="x",
                            status=IndexVersion.Status.READY)
        for n in range(2)
    ]
    long_ago = timezone.now() - timedelta(days=30)
    for version in stale:
        IndexVersion.objects.filter(pk=version.pk).update(created_at=long_ago)
        ml_gateway.index_path(version.name).mkdir(parents=True)

    report = artifacts_prune()
    # Kept: the live model's index, the rollback target's (the baseline's first index).
    assert IndexVersion.objects.get(pk=useless_index.pk).status == IndexVersion.Status.READY
    assert IndexVersion.objects.get(pk=small_catalogue.pk).status == IndexVersion.Status.READY
    assert ml_gateway.index_path(small_catalogue.name).is_dir()
    for version in stale:
        version.refresh_from_db()
        assert version.status == IndexVersion.Status.PRUNED and version.pruned_at
        assert not ml_gateway.index_path(version.name).exists()
    assert sorted(report.index_versions) == sorted(v.name for v in stale)
    # Kept: the live checkpoint, the rollback target, the newest trained one.
    assert Path(checkpoints["useless"]).is_file() and Path(checkpoints["good"]).is_file()
    assert Path(extra[-1].model_ref).is_file()
    for model in extra[:-1]:
        model.refresh_from_db()
        assert model.pruned_at is not None and not Path(model.model_ref).exists()
        assert not Path(model.model_ref).parent.exists()  # its cached export went too
    assert sorted(report.checkpoints) == ["extra-0", "extra-1"]
    # A pruned model cannot be promoted any more: its checkpoint is gone.
    ModelVersion.objects.filter(pk=extra[0].pk).update(gate=ModelVersion.Gate.PASSED)
    extra[0].refresh_from_db()
    with pytest.raises(PromotionError, match="missing"):
        promotion_request(model=extra[0])


def test_beat_prunes_daily(settings) -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["artifacts-prune-daily"]
    assert entry == {"task": "learning.prune_artifacts", "schedule": 86400.0}
