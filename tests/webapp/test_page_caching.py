"""What spares the server work on repeated page views (issue 14's page latency): the result
partial's ETag, the cached calibration thresholds and the QA queue's pages."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.webapp.conftest import logged_in
from tests.webapp.test_page_queries import _bad_cases, _finished_request
from tests.webapp.test_review_services import skus  # noqa: F401 - fixture
from webapp.catalog.models import SKU
from webapp.matching.calibration import confident_threshold
from webapp.matching.decisions import decision_record
from webapp.matching.models import Decision, FusionWeights, ScoreThreshold

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def _partial(client, url: str, **headers: str):
    return client.get(url, **HTMX, **headers)


def test_result_partial_answers_a_repeat_with_304(appraiser, skus, settings) -> None:  # noqa: F811
    client = logged_in(appraiser)
    match = _finished_request(appraiser, skus, candidates=4)
    url = reverse("matching:detail", args=[match.pk])
    first = _partial(client, url)
    assert first.status_code == 200 and 'class="candidate' in first.content.decode()
    etag = first["ETag"]
    assert "private" in first["Cache-Control"] and "no-cache" in first["Cache-Control"]
    assert "HX-Request" in first["Vary"]
    with CaptureQueriesContext(connection) as captured:
        again = _partial(client, url, HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304 and again.content == b""
    assert again["ETag"] == etag
    # No rendering and no candidate reads: session, user, roles and the one state query.
    assert len(captured.captured_queries) <= 4

    # What changes the page changes the tag: a decision, a calibration refit, an SKU edit.
    decision_record(request=match, user=appraiser, outcome=Decision.Outcome.REJECT)
    decided = _partial(client, url, HTTP_IF_NONE_MATCH=etag)
    assert decided.status_code == 200 and decided["ETag"] != etag
    etag = decided["ETag"]
    ScoreThreshold.objects.create(category=skus[0].series.brand.category, threshold=0.42,
                                  target_precision=0.95, precision=0.96, coverage=0.5,
                                  support=40, decisions=40)
    refit = _partial(client, url, HTTP_IF_NONE_MATCH=etag)
    assert refit.status_code == 200 and refit["ETag"] != etag
    etag = refit["ETag"]
    sku = SKU.objects.get(pk=match.candidates.first().sku_id)
    sku.name = "Renamed by the catalogue admin"
    sku.save()
    renamed = _partial(client, url, HTTP_IF_NONE_MATCH=etag)
    assert renamed.status_code == 200
    assert "Renamed by the catalogue admin" in renamed.content.decode()


def test_the_undo_window_closing_changes_the_tag(appraiser, skus, settings) -> None:  # noqa: F811
    settings.UNDO_WINDOW_S = 600
    client = logged_in(appraiser)
    match = _finished_request(appraiser, skus, candidates=2)
    decision_record(request=match, user=appraiser, outcome=Decision.Outcome.REJECT)
    url = reverse("matching:detail", args=[match.pk])
    open_window = _partial(client, url)
    assert 'id="undo"' in open_window.content.decode()
    Decision.objects.filter(request=match).update(
        decided_at=match.decision.decided_at - timedelta(seconds=601))
    closed = _partial(client, url, HTTP_IF_NONE_MATCH=open_window["ETag"])
    assert closed.status_code == 200 and 'id="undo"' not in closed.content.decode()


def test_tags_are_per_user_and_leak_nothing(appraiser, skus) -> None:  # noqa: F811
    from tests.webapp.factories import RoleUserFactory
    from webapp.accounts.roles import Role

    match = _finished_request(appraiser, skus, candidates=2)
    url = reverse("matching:detail", args=[match.pk])
    etag = _partial(logged_in(appraiser), url)["ETag"]
    other = RoleUserFactory(role=Role.APPRAISER, username="another-appraiser")
    # Another appraiser gets the same 404 with or without the owner's tag.
    assert _partial(logged_in(other), url, HTTP_IF_NONE_MATCH=etag).status_code == 404
    assert _partial(logged_in(other), url).status_code == 404
    full = logged_in(appraiser).get(url)  # the full page (flash messages) is never cached
    assert full.status_code == 200 and not full.has_header("ETag")


def test_calibration_thresholds_are_read_once_and_refits_seen(skus) -> None:  # noqa: F811
    category = skus[0].series.brand.category
    confident_threshold(category)
    with CaptureQueriesContext(connection) as captured:
        default = confident_threshold(category)
    assert len(captured.captured_queries) == 0
    row = ScoreThreshold.objects.create(category=category, threshold=0.61, target_precision=0.95,
                                        precision=0.96, coverage=0.5, support=40, decisions=40)
    assert confident_threshold(category) == 0.61 != default
    row.threshold = 0.63
    row.save()
    assert confident_threshold(category) == 0.63
    row.delete()
    assert confident_threshold(category) == default


def test_fusion_refit_clears_the_cached_threshold(skus, settings) -> None:  # noqa: F811
    settings.RERANK = True
    category = skus[0].series.brand.category
    before = confident_threshold(category)
    FusionWeights.objects.create(weights={"visual": 1.0}, intercept=0.0, threshold=0.37,
                                 source="decisions:60", decisions=60, metrics={})
    assert confident_threshold(category) == 0.37 != before


def test_qa_queue_is_paged(appraiser, qa_user, skus) -> None:  # noqa: F811
    _bad_cases(appraiser, skus, 55)
    client = logged_in(qa_user)
    url = reverse("review:queue")
    first = client.get(url, {"sort": "newest"}).content.decode()
    assert first.count('class="case-row') == 50
    assert "Cases 1–50 of 55" in first and 'rel="next"' in first and 'rel="prev"' not in first
    assert "sort=newest&amp;page=2" in first  # the filters stay on the page links
    second = client.get(url, {"sort": "newest", "page": "2"}, **HTMX).content.decode()
    assert second.count('class="case-row') == 5 and 'rel="prev"' in second
    ids = {line for line in (first + second).split() if line.startswith('id="case-')}
    assert len(ids) == 55  # every case on exactly one page
    for hostile in ("0", "-3", "999", "x", "1e9"):
        response = client.get(url, {"page": hostile})
        rows = response.content.decode().count('class="case-row')
        assert response.status_code == 200 and rows in (50, 5)


def _queue(client, **headers: str):
    return client.get(reverse("review:queue"), {"sort": "newest"}, **headers)


@pytest.mark.parametrize("htmx", [True, False], ids=["htmx partial", "full page"])
def test_qa_queue_answers_an_unchanged_reload_with_304(
        appraiser, qa_user, skus, htmx) -> None:  # noqa: F811
    from webapp.review.models import BadCase
    from webapp.review.services import bad_case_tag

    headers = HTMX if htmx else {}
    _bad_cases(appraiser, skus, 3)
    client = logged_in(qa_user)
    first = _queue(client, **headers)
    assert first.status_code == 200 and first.content.decode().count('class="case-row') == 3
    etag = first["ETag"]
    assert "private" in first["Cache-Control"] and "HX-Request" in first["Vary"]
    with CaptureQueriesContext(connection) as captured:
        again = _queue(client, HTTP_IF_NONE_MATCH=etag, **headers)
    assert again.status_code == 304 and again.content == b"" and again["ETag"] == etag
    assert len(captured.captured_queries) <= 9  # no rows built, nothing rendered

    # Whatever a row shows changes the tag: a cause tagged, the shown SKU's code, a new case.
    case = BadCase.objects.order_by("-created_at").first()
    bad_case_tag(bad_case=case, causes=["angle"], actor=qa_user)
    tagged = _queue(client, HTTP_IF_NONE_MATCH=etag, **headers)
    assert tagged.status_code == 200 and tagged["ETag"] != etag
    etag = tagged["ETag"]
    sku = SKU.objects.get(pk=case.decision.sku_id)
    sku.code = "RECODED-1"
    sku.save()
    recoded = _queue(client, HTTP_IF_NONE_MATCH=etag, **headers)
    assert recoded.status_code == 200 and "RECODED-1" in recoded.content.decode()
    etag = recoded["ETag"]
    _bad_cases(appraiser, skus, 1)
    grown = _queue(client, HTTP_IF_NONE_MATCH=etag, **headers)
    assert grown.status_code == 200 and grown.content.decode().count('class="case-row') == 4


def test_qa_queue_tag_depends_on_the_page_the_viewer_and_the_ages_shown(
        appraiser, qa_user, skus, monkeypatch) -> None:  # noqa: F811
    import webapp.review.views as review_views
    from tests.webapp.factories import RoleUserFactory
    from webapp.accounts.roles import Role

    _bad_cases(appraiser, skus, 55)
    client = logged_in(qa_user)
    url = reverse("review:queue")
    etag = client.get(url)["ETag"]
    assert client.get(url, {"page": "2"}, HTTP_IF_NONE_MATCH=etag).status_code == 200
    assert client.get(url, {"sort": "oldest"}, HTTP_IF_NONE_MATCH=etag).status_code == 200
    other = RoleUserFactory(role=Role.QA, username="another-reviewer")
    assert logged_in(other).get(url, HTTP_IF_NONE_MATCH=etag).status_code == 200
    # The tag holds while every row's "opened ... ago" reads the same, and not once one moves.
    assert client.get(url, HTTP_IF_NONE_MATCH=etag).status_code == 304
    now = review_views.timezone.now()
    monkeypatch.setattr(review_views.timezone, "now", lambda: now + timedelta(minutes=2))
    assert client.get(url, HTTP_IF_NONE_MATCH=etag).status_code == 200


def _rows(response) -> str:
    return re.search(r"<tbody>(.*)</tbody>", response.content.decode(), re.S).group(1)


def test_qa_queue_rows_are_rendered_once_for_every_reviewer(
        appraiser, qa_user, skus) -> None:  # noqa: F811
    from tests.webapp.factories import RoleUserFactory
    from webapp.accounts.roles import Role
    from webapp.catalog.models import Category
    from webapp.review.models import BadCase
    from webapp.review.services import bad_case_tag

    _bad_cases(appraiser, skus, 5)
    with CaptureQueriesContext(connection) as rendered:
        first = _queue(logged_in(qa_user))
    other = logged_in(RoleUserFactory(role=Role.QA, username="another-reviewer"))
    with CaptureQueriesContext(connection) as reused:
        second = _queue(other)
    assert second.status_code == 200 and _rows(second) == _rows(first)
    assert _rows(first).count('class="case-row') == 5
    # The rows' own reads (the cases with their request and decision, the top candidates,
    # the SKUs, the categories) are skipped.
    assert len(rendered.captured_queries) - len(reused.captured_queries) >= 4

    # Whatever a row shows renders the rows anew, for every reviewer.
    case = BadCase.objects.order_by("-created_at").first()
    bad_case_tag(bad_case=case, causes=["angle"], actor=qa_user)
    row = re.search(rf'id="case-{case.pk}".*?</tr>', _rows(_queue(other)), re.S).group(0)
    assert "Angle" in row and "untagged" not in row
    category = Category.objects.get(pk=case.category_id)
    category.name = "Renamed category"
    category.save()
    assert _rows(_queue(other)).count("<td>Renamed category</td>") == BadCase.objects.filter(
        category=category).count()


def test_qa_queue_shows_waiting_messages_instead_of_a_304(
        appraiser, qa_user, skus) -> None:  # noqa: F811
    _bad_cases(appraiser, skus, 2)
    client = logged_in(qa_user)
    etag = _queue(client)["ETag"]
    # A bulk action with nothing selected changes no case, and sends the reviewer back with
    # an error that the reload must show.
    back = client.post(reverse("review:bulk"), {"action": "tag", "back": "sort=newest"})
    assert back.status_code == 302
    shown = _queue(client, HTTP_IF_NONE_MATCH=etag)
    assert shown.status_code == 200 and "Select at least one case." in shown.content.decode()
    assert not shown.has_header("ETag")
    assert _queue(client, HTTP_IF_NONE_MATCH=etag).status_code == 304  # shown once, then cached


def test_queue_model_versions_are_cached_until_a_case_opens(appraiser, skus) -> None:  # noqa: F811
    from webapp.review.selectors import queue_model_versions

    _bad_cases(appraiser, skus, 2)  # model-0 and model-1
    assert queue_model_versions() == ["model-0|detector|grabcut", "model-1|detector|grabcut"]
    with CaptureQueriesContext(connection) as captured:
        queue_model_versions()
    assert len(captured.captured_queries) == 0
    _bad_cases(appraiser, skus, 3)  # the third case is served by model-2
    assert "model-2|detector|grabcut" in queue_model_versions()
