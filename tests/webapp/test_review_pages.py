"""QA pages through the test client: queue, case, crop, resolve, bulk, gaps, statistics."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.webapp.conftest import logged_in
from tests.webapp.factories import decided_request
from tests.webapp.test_review_services import skus  # noqa: F401 - fixture
from webapp.matching.models import Decision
from webapp.review.models import BadCase, CatalogueGap

pytestmark = pytest.mark.django_db


@pytest.fixture
def cases(appraiser, skus) -> list[BadCase]:  # noqa: F811
    out = []
    for i, scores in enumerate(([0.8, 0.78, 0.5], [0.9, 0.5, 0.4])):
        shown = [s for j, s in enumerate(skus) if j != i][:3]
        request = decided_request(appraiser=appraiser, truth=skus[i], shown=shown,
                                  outcome=Decision.Outcome.REJECT, scores=scores)
        out.append(request.bad_case)
    return out


def test_queue_page_lists_cases_and_filters_with_htmx(qa_user, cases) -> None:
    client = logged_in(qa_user)
    page = client.get(reverse("review:queue"))
    assert page.status_code == 200
    body = page.content.decode()
    assert body.index(f'id="case-{cases[0].pk}"') < body.index(f'id="case-{cases[1].pk}"')
    assert 'id="queue-filters"' in body and "review-qa.js" in body
    partial = client.get(reverse("review:queue") + "?cause=none&sort=newest",
                         HTTP_HX_REQUEST="true")
    assert partial.status_code == 200
    assert "<html" not in partial.content.decode()
    assert f'id="case-{cases[1].pk}"' in partial.content.decode()


def test_case_page_shows_photo_crop_candidates_and_resolves_to_the_next(
    qa_user, cases, skus  # noqa: F811
) -> None:
    client = logged_in(qa_user)
    case = cases[0]
    page = client.get(reverse("review:detail", args=[case.pk]))
    assert page.status_code == 200
    body = page.content.decode()
    assert reverse("review:crop", args=[case.pk, 0]) in body
    assert body.count('<li class="qa-candidate') == 3
    assert 'data-key="a"' in body and 'data-key="1"' in body
    crop = client.get(reverse("review:crop", args=[case.pk, 0]))
    assert crop.status_code == 200 and crop["Content-Type"] == "image/jpeg"
    assert crop.content[:2] == b"\xff\xd8"

    response = client.post(reverse("review:resolve", args=[case.pk]), {
        "action": "resolve", "causes": ["lighting", "angle"], "correct_sku": skus[0].pk,
    })
    assert response.status_code == 302
    assert response["Location"] == reverse("review:detail", args=[cases[1].pk])
    case.refresh_from_db()
    assert case.status == BadCase.Status.RESOLVED and case.correct_sku == skus[0]

    gap = client.post(reverse("review:resolve", args=[cases[1].pk]),
                      {"action": "gap", "note": "not in the catalogue"}, HTTP_HX_REQUEST="true")
    assert gap.status_code == 200 and gap["HX-Redirect"] == reverse("review:queue")
    assert CatalogueGap.objects.filter(bad_case=cases[1]).exists()
    resolved = client.get(reverse("review:detail", args=[cases[1].pk]))
    assert b"Reopen" in resolved.content


def test_resolve_errors_are_shown_and_nothing_changes(qa_user, cases) -> None:
    client = logged_in(qa_user)
    response = client.post(reverse("review:resolve", args=[cases[0].pk]),
                           {"action": "resolve", "causes": ["lighting"]}, follow=True)
    assert b"Set the correct SKU, or flag a catalogue gap." in response.content
    assert BadCase.objects.get(pk=cases[0].pk).status == BadCase.Status.OPEN


def test_bulk_tag_from_the_queue(qa_user, cases) -> None:
    client = logged_in(qa_user)
    response = client.post(reverse("review:bulk"), {
        "ids": [c.pk for c in cases], "action": "tag", "cause": "occlusion", "back": "sort=newest",
    })
    assert response.status_code == 302 and response["Location"].endswith("?sort=newest")
    assert all(BadCase.objects.get(pk=c.pk).causes == ["occlusion"] for c in cases)


def test_gap_list_for_admins(qa_user, catalogue_admin, cases, skus) -> None:  # noqa: F811
    logged_in(qa_user).post(reverse("review:resolve", args=[cases[0].pk]), {"action": "gap"})
    admin = logged_in(catalogue_admin)
    page = admin.get(reverse("review:gaps"))
    assert page.status_code == 200 and b"SKU added" in page.content
    gap = CatalogueGap.objects.get()
    admin.post(reverse("review:gap_close", args=[gap.pk]),
               {"status": "added", "sku": skus[4].code})
    gap.refresh_from_db()
    assert gap.status == CatalogueGap.Status.ADDED and gap.sku == skus[4]


def test_statistics_page_and_plots(qa_user, catalogue_admin, cases) -> None:
    for user in (qa_user, catalogue_admin):
        client = logged_in(user)
        page = client.get(reverse("review:stats") + "?days=7")
        assert page.status_code == 200
        assert b'id="plot-causes"' in page.content and b'id="versions"' in page.content
        for name in ("causes", "categories", "acceptance", "topk", "latency"):
            plot = client.get(reverse("review:plot", args=[name]) + "?days=7")
            assert plot.status_code == 200, name
            assert plot["Content-Type"] == "image/svg+xml"
            assert b"<svg" in plot.content[:400]
    assert logged_in(qa_user).get(reverse("review:plot", args=["nope"])).status_code == 404


def test_statistics_numbers(appraiser, qa_user, skus) -> None:  # noqa: F811
    from webapp.review import stats

    # Two decisions with the right SKU first, one found fourth, one rejected with the right
    # SKU never shown (QA then names it): Top-1 2/4, Top-4 3/4.
    decided_request(appraiser=appraiser, truth=skus[0], shown=skus[:3],
                    outcome=Decision.Outcome.ACCEPT, scores=[0.99, 0.5, 0.4])
    decided_request(appraiser=appraiser, truth=skus[1], shown=skus[1:3],
                    outcome=Decision.Outcome.ACCEPT, scores=[0.99, 0.5])
    decided_request(appraiser=appraiser, truth=skus[3], shown=skus[:4],
                    outcome=Decision.Outcome.ACCEPT, scores=[0.9, 0.8, 0.7, 0.6])
    rejected = decided_request(appraiser=appraiser, truth=skus[5], shown=skus[:3],
                               outcome=Decision.Outcome.REJECT)
    from webapp.review.services import bad_case_resolve

    bad_case_resolve(bad_case=rejected.bad_case, actor=qa_user, causes=["angle"],
                     correct_sku=skus[5])
    window = stats.Window.last(7)
    [row] = stats.accuracy_by_model_version(window)
    assert (row.decisions, row.top1, row.top4) == (4, 0.5, 0.75)
    acceptance = stats.acceptance(window)
    assert sum(acceptance.lines["decisions"]) == 4
    assert stats.bad_cases_by_cause(window).totals()["Angle"] == 1
    assert stats.summary(window)["acceptance"] == 0.75
