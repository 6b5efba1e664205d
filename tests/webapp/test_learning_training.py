"""Retraining: the trigger, a tiny real run end to end (data, progress, registry, gate), cancel."""

from __future__ import annotations

import pytest

from tests.webapp.factories import SKUFactory, decided_request
from tests.webapp.loop_models import (  # noqa: F401 - fixtures
    checkpoints,
    fast_isolation,
    loop_dirs,
    small_catalogue,
)
from webapp.catalog.models import SKU
from webapp.learning import tasks
from webapp.learning.models import ModelVersion, TrainingRun
from webapp.learning.selectors import live_model_ref
from webapp.learning.training import (
    RunReporter,
    TrainingError,
    new_resolved_bad_cases,
    training_run_cancel,
    training_run_execute,
    training_run_request,
)
from webapp.matching.models import Decision
from webapp.review.services import bad_case_flag_gap, bad_case_resolve

pytestmark = pytest.mark.django_db


@pytest.fixture
def tiny_training(settings, monkeypatch) -> None:
    settings.TRAIN_EPOCHS = 1
    settings.TRAIN_IMAGE_SIZE = 64
    settings.TRAIN_EMBEDDING_DIM = 16
    settings.TRAIN_CACHED_VIEWS = 1
    settings.TRAIN_OPTIONS = {"catalogue_views": 1, "batches_per_epoch": 2, "holdout": 0.0,
                              "classes_per_batch": 3, "samples_per_class": 2, "threads": 2}
    settings.AUTO_PROMOTE = False
    settings.GATE_MIN_HOLDOUT = 1
    # Request ids divisible by 3 are held out for the gate, whatever the database hands out.
    split = lambda rid, percent=None: rid % 3 == 0  # noqa: E731
    monkeypatch.setattr("webapp.learning.dataset.is_holdout", split)
    monkeypatch.setattr("webapp.learning.gate.is_holdout", split)


@pytest.fixture
def history(small_catalogue, appraiser, qa_user) -> dict[str, object]:  # noqa: F811
    """Six confirmations, a resolved reject (two hard negatives), an open case and a gap."""
    skus = list(SKU.objects.order_by("code"))
    for i, sku in enumerate(skus):
        decided_request(appraiser=appraiser, truth=sku, shown=[sku, skus[(i + 1) % 6]],
                        outcome=Decision.Outcome.ACCEPT, scores=[0.99, 0.4], seed=20 + i)
    rejected = decided_request(appraiser=appraiser, truth=skus[0], shown=skus[1:3],
                               outcome=Decision.Outcome.REJECT, seed=30)
    bad_case_resolve(bad_case=rejected.bad_case, actor=qa_user, causes=["occlusion"],
                     correct_sku=skus[0])
    decided_request(appraiser=appraiser, truth=skus[1], shown=skus[2:4],
                    outcome=Decision.Outcome.REJECT, seed=31)  # stays open: no label yet
    gap = decided_request(appraiser=appraiser, truth=skus[2], shown=skus[3:5],
                          outcome=Decision.Outcome.REJECT, seed=32)
    bad_case_flag_gap(bad_case=gap.bad_case, actor=qa_user)
    return {"rejected": rejected}


def test_trigger_counts_new_resolved_bad_cases(settings, appraiser, qa_user) -> None:
    from tests.webapp.test_review_services import _reject

    settings.RETRAIN_MIN_BAD_CASES = 2
    skus = _skus_for_trigger()
    first, second = _reject(appraiser, skus, 0), _reject(appraiser, skus, 1)
    bad_case_resolve(bad_case=first, actor=qa_user, causes=["angle"], correct_sku=skus[0])
    assert tasks.check_retraining() is None
    bad_case_resolve(bad_case=second, actor=qa_user, causes=["angle"], correct_sku=skus[1])
    assert new_resolved_bad_cases() == 2
    run = TrainingRun.objects.get(pk=tasks.check_retraining())
    assert run.status == TrainingRun.Status.QUEUED and run.trigger == TrainingRun.Trigger.AUTO
    assert tasks.check_retraining() is None  # one run in flight at a time
    with pytest.raises(TrainingError, match="already"):
        training_run_request(trigger=TrainingRun.Trigger.MANUAL)
    with pytest.raises(TrainingError, match="Unknown"):
        training_run_request(trigger=TrainingRun.Trigger.MANUAL, options={"warp": 9})
    # A run consumes what was resolved before its cutoff.
    from django.utils import timezone

    # A run that failed (a worker killed mid-run) trained on nothing: the cases still count.
    TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.FAILED,
                                                 data_cutoff=timezone.now())
    assert new_resolved_bad_cases() == 2
    TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.SUCCEEDED)
    assert new_resolved_bad_cases() == 0
    assert training_run_cancel(run=run).status == TrainingRun.Status.SUCCEEDED  # too late


def _skus_for_trigger() -> list[SKU]:
    from tests.webapp.conftest import demo_skus
    from webapp.catalog.services import hierarchy_resolve

    series = hierarchy_resolve(category="Bags", brand="Demo", series="One", actor=None)
    return [SKUFactory(code=s.code, name=s.code, series=series) for s in demo_skus()[:4]]


@pytest.mark.slow
def test_a_tiny_run_end_to_end(tiny_training, history) -> None:
    run = training_run_request(trigger=TrainingRun.Trigger.MANUAL)
    assert training_run_execute(run_id=run.pk) is True
    assert training_run_execute(run_id=run.pk) is False  # a redelivery finds it finished
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    snapshot = run.data_snapshot
    assert snapshot["catalogue_images"] == 12
    # 6 confirmations + 1 resolved reject are labelled; the open case and the gap are not.
    assert snapshot["requests"] + snapshot["holdout_requests"] == 7
    rejected_id = history["rejected"].pk
    if rejected_id % 3:
        assert snapshot["from_bad_cases"] == 1 and snapshot["hard_negatives"] == 2
    assert run.cause_weights == {"occlusion": 1}
    assert run.config["augment"]["occlusion"] == pytest.approx(0.8)
    assert run.progress == 100 and run.epoch == 1 and run.steps_total == 2
    assert run.loss is not None and "data: 12 catalogue images" in run.log
    assert len(run.history) == 1
    model = ModelVersion.objects.get(training_run=run)
    assert model.source == ModelVersion.Source.TRAINED
    assert model.model_ref.startswith(str(tiny_training_dir(run)))
    assert model.gate in (ModelVersion.Gate.PASSED, ModelVersion.Gate.REFUSED)
    assert {"holdout_r1", "replay_top1"} <= set(model.gate_report["figures"]["candidate"])
    assert model.data_snapshot["csv_sha256"] == snapshot["csv_sha256"]


def tiny_training_dir(run: TrainingRun) -> object:
    from django.conf import settings

    return settings.MODELS_DIR


def test_cancel_stops_a_running_run(tiny_training, history, monkeypatch) -> None:
    original = RunReporter.__call__

    def cancel_on_first_step(self: RunReporter, info: dict) -> bool:
        TrainingRun.objects.filter(pk=self.run_id).update(cancel_requested=True)
        self.interval_s = 0.0
        return original(self, info)

    monkeypatch.setattr(RunReporter, "__call__", cancel_on_first_step)
    run = training_run_request(trigger=TrainingRun.Trigger.MANUAL)
    training_run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.CANCELLED
    assert not ModelVersion.objects.filter(training_run=run).exists()
    # A queued run is cancelled at once and never claimed.
    queued = training_run_request(trigger=TrainingRun.Trigger.MANUAL)
    assert training_run_cancel(run=queued).status == TrainingRun.Status.CANCELLED
    assert training_run_execute(run_id=queued.pk) is False


def test_beat_checks_for_retraining(settings) -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["retraining-check"]
    assert entry["task"] == "learning.check_retraining"
    assert entry["schedule"] == settings.RETRAIN_CHECK_S
    assert settings.CELERY_TASK_ROUTES["learning.*"]["queue"] == "gpu"


# The command runs the enqueued task on commit: it needs real commits.
@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_retrain_wait_runs_gates_and_reports(tiny_training, history, settings) -> None:
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("retrain", "--wait", stdout=out)
    text = out.getvalue()
    run = TrainingRun.objects.get()
    assert run.status == TrainingRun.Status.SUCCEEDED
    model = ModelVersion.objects.get(training_run=run)
    assert f"training run #{run.pk}: succeeded" in text
    assert f"model {model.name}: gate {model.gate}" in text
    assert "live model: " in text
    live = StringIO()
    call_command("live_model", stdout=live)
    assert live.getvalue().strip() == live_model_ref()


@pytest.mark.django_db(transaction=True)
def test_retrain_wait_fails_loudly(tiny_training, history) -> None:
    from django.core.management import call_command
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="failed"):
        call_command("retrain", "--wait", "--options", '{"loss": "no-such-loss"}')
    assert TrainingRun.objects.get().status == TrainingRun.Status.FAILED
    with pytest.raises(CommandError, match="Unknown training option"):
        call_command("retrain", "--options", '{"no_such_field": 1}')
    with pytest.raises(CommandError, match="JSON"):
        call_command("retrain", "--options", "{nope")


@pytest.mark.slow
def test_a_run_warm_starts_from_the_live_model_when_it_fits(
    tiny_training, history, settings
) -> None:
    first = training_run_request(trigger=TrainingRun.Trigger.MANUAL)
    training_run_execute(run_id=first.pk)
    first_model = ModelVersion.objects.get(training_run=first)
    assert first.pk and "pretrained" in TrainingRun.objects.get(pk=first.pk).log
    # Make it live (its index goes with it), as a promotion would.
    from webapp.learning.services import index_publish

    index_publish(full_rebuild=True, model_ref=first_model.model_ref)
    assert live_model_ref() == first_model.model_ref

    second = training_run_request(trigger=TrainingRun.Trigger.MANUAL)
    training_run_execute(run_id=second.pk)
    second.refresh_from_db()
    assert second.status == TrainingRun.Status.SUCCEEDED, second.error
    assert second.config["warm_start"] == first_model.model_ref
    assert f"starting from {first_model.model_ref}" in second.log

    # Another input size does not fit: the run starts from the pretrained backbone.
    settings.TRAIN_IMAGE_SIZE = 72
    third = training_run_request(trigger=TrainingRun.Trigger.MANUAL)
    training_run_execute(run_id=third.pk)
    third.refresh_from_db()
    assert third.status == TrainingRun.Status.SUCCEEDED, third.error
    assert "starting from efficientnet_lite0 (pretrained)" in third.log
