"""QA resolves a bad case in Chromium, by keyboard; admins look at statistics and models."""

from __future__ import annotations

import pytest
from django.utils import timezone

from tests.webapp.factories import ModelVersionFactory, TrainingRunFactory, decided_request
from tests.webapp.test_browser import ARTIFACTS, _log_in, browser, page  # noqa: F401 - fixtures
from tests.webapp.test_review_services import skus  # noqa: F401 - fixture
from webapp.learning.models import ModelVersion, TrainingRun
from webapp.matching.models import Decision
from webapp.review.models import BadCase

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_qa_resolves_a_bad_case_with_the_keyboard(page, qa_user, appraiser, skus) -> None:  # noqa: F811
    ARTIFACTS.mkdir(exist_ok=True)
    request = decided_request(appraiser=appraiser, truth=skus[0], shown=skus[1:4],
                              outcome=Decision.Outcome.REJECT, scores=[0.81, 0.80, 0.6])
    case = request.bad_case
    _log_in(page, qa_user.username)
    page.wait_for_url("**/review/")
    page.wait_for_selector(f"#case-{case.pk}")
    page.screenshot(path=str(ARTIFACTS / "qa-queue.png"), full_page=True)

    page.keyboard.press("j")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/review/{case.pk}/")
    assert page.locator("img[alt^='crop 1']").evaluate("img => img.naturalWidth") > 0
    assert page.locator("#qa-candidates li.qa-candidate").count() == 3
    page.keyboard.press("2")  # lighting
    page.keyboard.press("3")  # angle
    page.keyboard.press("/")
    page.keyboard.type(skus[0].code)
    page.wait_for_selector("#qa-sku-results button.use-sku")
    page.locator("#qa-sku-results button.use-sku").first.click()
    assert skus[0].code in page.locator("#correct-sku-label").inner_text()
    page.screenshot(path=str(ARTIFACTS / "qa-case.png"), full_page=True)
    page.locator("#qa-sku-search").blur()
    page.keyboard.press("Enter")
    page.wait_for_url("**/review/")  # no other open case: back to the queue
    page.screenshot(path=str(ARTIFACTS / "qa-resolved.png"), full_page=True)

    case.refresh_from_db()
    assert case.status == BadCase.Status.RESOLVED
    assert case.causes == ["lighting", "angle"]
    assert case.correct_sku == skus[0] and case.resolved_by == qa_user


def test_admin_sees_statistics_and_a_running_training(page, catalogue_admin, appraiser,  # noqa: F811
                                                      skus) -> None:  # noqa: F811
    decided_request(appraiser=appraiser, truth=skus[0], shown=skus[:3],
                    outcome=Decision.Outcome.ACCEPT, scores=[0.97, 0.5, 0.4])
    decided_request(appraiser=appraiser, truth=skus[1], shown=skus[2:5],
                    outcome=Decision.Outcome.REJECT)
    run = TrainingRunFactory(
        status=TrainingRun.Status.RUNNING, started_at=timezone.now(), heartbeat_at=timezone.now(),
        stage="training", epoch=3, epochs=8, step=30, steps_total=80, loss=0.3124, eta_s=312,
        progress=40.0, log="16:02:11 data: 81 catalogue images, 412 photos\n16:04:40 epoch 2",
    )
    ModelVersionFactory(
        name="run7-0a1b2c3d4e5f", model_ref="/models/0a1b2c3d4e5f/run7.pt", source="trained",
        gate=ModelVersion.Gate.REFUSED,
        gate_report={"passed": False, "reasons": ["held-out Recall@1 0.52 -> 0.31"],
                     "figures": {"live": {"holdout_r1": 0.52, "replay_top1": 0.7},
                                 "candidate": {"holdout_r1": 0.31, "replay_top1": 0.4}}},
    )
    _log_in(page, catalogue_admin.username)
    page.goto("/review/stats/")
    page.wait_for_selector("#plot-topk")
    page.wait_for_function("document.querySelector('#plot-latency').naturalWidth > 0")
    page.screenshot(path=str(ARTIFACTS / "stats.png"), full_page=True)
    page.goto("/learning/")
    page.wait_for_selector("#run-in-flight")
    page.screenshot(path=str(ARTIFACTS / "models.png"), full_page=True)
    page.goto(f"/learning/runs/{run.pk}/")
    page.wait_for_selector("#run-log")
    assert "0.3124" in page.locator("#run-figures").inner_text()
    page.screenshot(path=str(ARTIFACTS / "training-run.png"), full_page=True)
    page.locator("#cancel-run").click()
    page.wait_for_selector("#cancel-run[disabled]")
    run.refresh_from_db()
    assert run.cancel_requested
