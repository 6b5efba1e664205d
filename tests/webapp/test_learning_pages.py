"""Models & training pages: the registry, a run's progress and log, the gate's figures, actions."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.webapp.conftest import logged_in
from tests.webapp.factories import ModelVersionFactory, TrainingRunFactory
from webapp.learning.models import ModelVersion, Promotion, TrainingRun

pytestmark = pytest.mark.django_db

REPORT = {
    "passed": False,
    "reasons": ["held-out Recall@1 0.500 -> 0.400 (-0.100); it must gain more than +0.000"],
    "checks": [{"name": "held-out Recall@1", "live": 0.5, "candidate": 0.4, "rule": "gain",
                "threshold": 0.0, "ok": False, "delta": -0.1}],
    "live_model_ref": "efficientnet_lite0", "live_name": "efficientnet_lite0-imagenet",
    "candidate_name": "run1-abc", "holdout_queries": 30, "replay_queries": 120,
    "gallery_images": 200, "seconds": 12.0,
    "figures": {"live": {"holdout_r1": 0.5, "replay_top1": 0.6, "holdout_cold_r1": 0.4,
                         "holdout_cold_r4": 0.7},
                "candidate": {"holdout_r1": 0.4, "replay_top1": 0.5, "holdout_cold_r1": 0.3,
                              "holdout_cold_r4": 0.6}},
}


@pytest.fixture
def run() -> TrainingRun:
    return TrainingRunFactory(
        status=TrainingRun.Status.RUNNING, started_at=timezone.now(), stage="training",
        epoch=2, epochs=8, step=17, steps_total=64, loss=0.4321, eta_s=125.0, progress=31.0,
        log="12:00:01 data: 81 catalogue images, 300 photos\n12:00:09 epoch 1 loss=0.61",
        # Without a selection hold-out the epochs have no val figures: shown as dashes.
        history=[{"epoch": 1, "step": 8, "loss": 0.61, "img_per_s": 21.5}],
    )


def test_home_lists_runs_models_and_offers_retraining(catalogue_admin, run) -> None:
    ModelVersionFactory(name="run1-abc", model_ref="/m/run1.pt", source="trained",
                        gate=ModelVersion.Gate.REFUSED, gate_report=REPORT)
    page = logged_in(catalogue_admin).get(reverse("learning:home"))
    assert page.status_code == 200
    body = page.content.decode()
    assert f'href="{reverse("learning:run", args=[run.pk])}"' in body
    assert "run1-abc" in body and "Refused" in body
    assert 'id="run-in-flight"' in body and 'id="retrain-now"' not in body


def test_run_page_shows_progress_log_and_cancels(catalogue_admin, run) -> None:
    client = logged_in(catalogue_admin)
    page = client.get(reverse("learning:run", args=[run.pk]))
    body = page.content.decode()
    assert "2 / 8" in body and "17 / 64" in body and "0.4321" in body and "0:02:05" in body
    assert "epoch 1 loss=0.61" in body and 'hx-trigger="every 1s"' in body
    partial = client.get(reverse("learning:run", args=[run.pk]), HTTP_HX_REQUEST="true")
    assert "<html" not in partial.content.decode()
    client.post(reverse("learning:run_cancel", args=[run.pk]))
    run.refresh_from_db()
    assert run.cancel_requested


def test_retrain_now_queues_a_run(catalogue_admin) -> None:
    response = logged_in(catalogue_admin).post(reverse("learning:run_create"))
    run = TrainingRun.objects.get()
    assert response["Location"] == reverse("learning:run", args=[run.pk])
    assert run.trigger == TrainingRun.Trigger.MANUAL and run.requested_by == catalogue_admin


def test_model_page_shows_the_gate_and_promotion_needs_a_pass(catalogue_admin) -> None:
    model = ModelVersionFactory(name="run1-abc", model_ref="/m/run1.pt", source="trained",
                                gate=ModelVersion.Gate.REFUSED, gate_report=REPORT)
    client = logged_in(catalogue_admin)
    page = client.get(reverse("learning:model", args=[model.pk]))
    body = page.content.decode()
    assert 'id="gate-checks"' in body and "50.0%" in body and "40.0%" in body
    assert "-10.0 pt" in body and "must gain more than" in body
    assert 'class="primary promote"' not in body
    response = client.post(reverse("learning:model_activate", args=[model.pk]), follow=True)
    assert b"has not passed the gate" in response.content
    assert not Promotion.objects.exists()
