"""Promotion and rollback swap model and index atomically: matching never fails meanwhile."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from django.db import connection

from ml.types import Box
from tests.webapp.factories import PromotionFactory
from tests.webapp.loop_models import (  # noqa: F401 - fixtures
    checkpoints,
    fast_isolation,
    loop_dirs,
    small_catalogue,
)
from webapp import ml_gateway
from webapp.catalog.demo import demo_skus, render_photo
from webapp.learning.models import IndexVersion, ModelVersion, Promotion
from webapp.learning.promotion import PromotionError, promotion_request
from webapp.learning.registry import model_version_register
from webapp.learning.selectors import live_model_ref


def _matcher(stop: threading.Event, seen: list[tuple[str, str]], errors: list[str]) -> None:
    """Match continuously, as a worker would, while the main thread swaps models."""
    photo = render_photo(demo_skus()[0], 3)
    full = [Box(0.0, 0.0, float(photo.width), float(photo.height))]
    try:
        while not stop.is_set():
            try:
                result = ml_gateway.match([photo], allowed_reference_ids=None, top_k=4,
                                          corrected_boxes=full)
            except Exception as exc:  # noqa: BLE001 - any failure is what the test looks for
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            assert result.candidates
            seen.append((result.model_version, result.index_version))
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_promotion_and_rollback_never_interrupt_matching(
    small_catalogue, checkpoints, qa_user  # noqa: F811
) -> None:
    first = small_catalogue
    candidate = model_version_register(model_ref=checkpoints["useless"],
                                       source=ModelVersion.Source.TRAINED)
    with pytest.raises(PromotionError, match="gate"):
        promotion_request(model=candidate)
    # The gate is exercised in test_learning_gate; here it has said yes, against this live model.
    ModelVersion.objects.filter(pk=candidate.pk).update(
        gate=ModelVersion.Gate.PASSED, gate_report={"live_model_ref": live_model_ref()}
    )
    candidate.refresh_from_db()

    stop, seen, errors = threading.Event(), [], []
    thread = threading.Thread(target=_matcher, args=(stop, seen, errors))
    thread.start()
    try:
        while len(seen) < 2 and not errors:
            stop.wait(0.05)
        promotion = promotion_request(model=candidate)  # eager: runs on commit
        promotion.refresh_from_db()
        assert promotion.status == Promotion.Status.DONE, promotion.error
        assert promotion.kind == Promotion.Kind.PROMOTE
        assert live_model_ref() == checkpoints["useless"]
        after_promotion = len(seen)
        while len(seen) < after_promotion + 2 and not errors:
            stop.wait(0.05)

        baseline = ModelVersion.objects.get(model_ref=checkpoints["good"])
        assert baseline.promoted_at is not None  # registered when it was replaced
        rollback = promotion_request(model=baseline)
        rollback.refresh_from_db()
        assert rollback.kind == Promotion.Kind.ROLLBACK
        assert rollback.status == Promotion.Status.DONE, rollback.error
        after_rollback = len(seen)
        while len(seen) < after_rollback + 2 and not errors:
            stop.wait(0.05)
    finally:
        stop.set()
        thread.join(timeout=60)

    assert not errors, errors[:3]
    # Every match used a model and an index that were live together.
    versions = dict(IndexVersion.objects.values_list("name", "model_version"))
    assert all(versions[index] == model for model, index in seen), set(seen)
    models_seen = [model for model, _ in seen]
    good, useless = first.model_version, versions[promotion.index_version.name]
    assert models_seen[0] == good and useless in models_seen and models_seen[-1] == good
    # Rollback re-activated the old model's kept index (nothing re-embedded: see
    # test_learning_rollback); the promoted model's index stays on disk for a later rollback.
    assert rollback.index_version.name == first.name
    assert Path(ml_gateway.index_path(promotion.index_version.name)).is_dir()
    assert IndexVersion.objects.get(is_active=True) == rollback.index_version


@pytest.mark.django_db
def test_a_second_promotion_is_refused_while_one_is_in_flight(
    small_catalogue, checkpoints, settings  # noqa: F811
) -> None:
    model = model_version_register(model_ref=checkpoints["useless"],
                                   source=ModelVersion.Source.TRAINED)
    ModelVersion.objects.filter(pk=model.pk).update(gate=ModelVersion.Gate.PASSED)
    model.refresh_from_db()
    PromotionFactory(kind=Promotion.Kind.PROMOTE, model=model)  # queued, not run
    with pytest.raises(PromotionError, match="under way"):
        promotion_request(model=model)
    live = model_version_register(model_ref=live_model_ref(), source=ModelVersion.Source.TRAINED)
    with pytest.raises(PromotionError, match="already live"):
        promotion_request(model=live)
