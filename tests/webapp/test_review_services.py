"""The QA queue's services and selectors: open, tag, resolve, gaps, bulk, filters, order."""

from __future__ import annotations

import pytest

from tests.webapp.factories import decided_request
from webapp.catalog.models import SKU
from webapp.matching.models import Decision
from webapp.review.models import BadCase, CatalogueGap, FailureCause
from webapp.review.selectors import QueueFilters, bad_case_queue, next_open_case
from webapp.review.services import (
    BulkAction,
    ReviewError,
    bad_case_flag_gap,
    bad_case_reopen,
    bad_case_resolve,
    bad_case_tag,
    bad_cases_bulk,
    catalogue_gap_close,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def skus(db, demo_folder) -> list[SKU]:
    from webapp.catalog.bulk import catalogue_import
    from webapp.catalog.importing import read_catalogue_csv

    rows = [r for r in read_catalogue_csv(demo_folder / "catalogue.csv")][:6]
    assert not catalogue_import(rows=rows, image_root=demo_folder).errors
    return list(SKU.objects.order_by("code"))


def _reject(appraiser, skus, truth_index=0, scores=None) -> BadCase:
    shown = [s for i, s in enumerate(skus) if i != truth_index][:3]
    request = decided_request(appraiser=appraiser, truth=skus[truth_index], shown=shown,
                              outcome=Decision.Outcome.REJECT, scores=scores)
    return request.bad_case


def test_decisions_open_bad_cases_with_margin_and_category(appraiser, skus) -> None:
    case = _reject(appraiser, skus, scores=[0.8, 0.7, 0.6])
    assert case.status == BadCase.Status.OPEN
    assert case.margin == pytest.approx(0.1)
    assert case.correct_sku is None
    assert case.category_id == skus[1].series.brand.category_id  # the top candidate's
    # A confident accept is not a bad case; a doubtful one is.
    confident = decided_request(appraiser=appraiser, truth=skus[2], shown=skus[2:4],
                                outcome=Decision.Outcome.ACCEPT, scores=[0.99, 0.5])
    assert not BadCase.objects.filter(request=confident).exists()
    doubtful = decided_request(appraiser=appraiser, truth=skus[2], shown=skus[2:4],
                               outcome=Decision.Outcome.ACCEPT, scores=[0.6, 0.55])
    assert doubtful.bad_case.correct_sku == skus[2]


def test_resolve_needs_a_cause_and_a_sku_or_a_gap(appraiser, qa_user, skus) -> None:
    case = _reject(appraiser, skus)
    with pytest.raises(ReviewError, match="cause"):
        bad_case_resolve(bad_case=case, actor=qa_user, causes=[], correct_sku=skus[0])
    with pytest.raises(ReviewError, match="correct SKU"):
        bad_case_resolve(bad_case=case, actor=qa_user, causes=["lighting"], correct_sku=None)
    with pytest.raises(ReviewError, match="Unknown"):
        bad_case_resolve(bad_case=case, actor=qa_user, causes=["gremlins"], correct_sku=skus[0])
    resolved = bad_case_resolve(bad_case=case, actor=qa_user, causes=["angle", "lighting"],
                                correct_sku=skus[0], note="shot from above")
    assert resolved.status == BadCase.Status.RESOLVED
    assert resolved.causes == ["lighting", "angle"]  # taxonomy order
    assert resolved.correct_sku == skus[0] and resolved.resolved_by == qa_user
    assert resolved.category_id == skus[0].series.brand.category_id
    with pytest.raises(ReviewError, match="already resolved"):
        bad_case_resolve(bad_case=case, actor=qa_user, causes=["angle"], correct_sku=skus[0])


def test_gap_notifies_catalogue_admins_and_closing_it_labels_the_photo(
    appraiser, qa_user, catalogue_admin, skus
) -> None:
    case = bad_case_flag_gap(bad_case=_reject(appraiser, skus), actor=qa_user, note="new bag",
                             causes=["background"])
    assert case.causes == ["background", FailureCause.CATALOGUE_GAP]
    assert case.correct_sku is None
    gap = CatalogueGap.objects.get(bad_case=case)
    assert gap.status == CatalogueGap.Status.OPEN and gap.note == "new bag"
    catalogue_gap_close(gap=gap, actor=catalogue_admin, status=CatalogueGap.Status.ADDED,
                        sku=skus[5])
    case.refresh_from_db()
    assert case.correct_sku == skus[5]
    # Reopening a case removes an open gap notice only.
    other = bad_case_flag_gap(bad_case=_reject(appraiser, skus, 1), actor=qa_user)
    bad_case_reopen(bad_case=other, actor=qa_user)
    assert not CatalogueGap.objects.filter(bad_case=other).exists()
    assert BadCase.objects.get(pk=other.pk).status == BadCase.Status.OPEN


def test_tag_and_bulk_actions(appraiser, qa_user, skus) -> None:
    a, b, c = (_reject(appraiser, skus, i) for i in range(3))
    bad_case_tag(bad_case=a, causes=["occlusion"], actor=qa_user)
    result = bad_cases_bulk(ids=[a.pk, b.pk], action=BulkAction.TAG, cause="scribble",
                            actor=qa_user)
    assert result.done == 2 and not result.errors
    a.refresh_from_db()
    assert a.causes == ["occlusion", "scribble"]
    # Resolving "as attached" fails for a rejected case (no SKU attached) and says so.
    result = bad_cases_bulk(ids=[a.pk, c.pk], action=BulkAction.RESOLVE, actor=qa_user)
    assert result.done == 0 and len(result.errors) == 2
    result = bad_cases_bulk(ids=[a.pk, b.pk, c.pk, 999999], action=BulkAction.GAP,
                            cause="lighting", actor=qa_user)
    assert result.done == 3
    assert CatalogueGap.objects.count() == 3
    with pytest.raises(ReviewError):
        bad_cases_bulk(ids=[a.pk], action="explode", actor=qa_user)


def test_queue_low_margin_first_and_filters(appraiser, qa_user, skus) -> None:
    wide = _reject(appraiser, skus, 0, scores=[0.9, 0.5, 0.4])
    close = _reject(appraiser, skus, 1, scores=[0.8, 0.79, 0.4])
    middle = _reject(appraiser, skus, 2, scores=[0.8, 0.6, 0.4])
    assert list(bad_case_queue()) == [close, middle, wide]
    assert next_open_case(after=close) == middle
    bad_case_tag(bad_case=middle, causes=["angle"], actor=qa_user)
    assert list(bad_case_queue(filters=QueueFilters(cause="angle"))) == [middle]
    assert list(bad_case_queue(filters=QueueFilters(cause="none"))) == [close, wide]
    newest = bad_case_queue(filters=QueueFilters(sort="newest"))
    assert list(newest) == [middle, close, wide]
    category = close.category_id
    assert close in bad_case_queue(filters=QueueFilters(category=category))
    assert list(bad_case_queue(filters=QueueFilters(model_version="nope"))) == []
    assert list(bad_case_queue(filters=QueueFilters(age="old7"))) == []
    bad_case_resolve(bad_case=close, actor=qa_user, causes=["angle"], correct_sku=skus[1])
    assert close not in bad_case_queue()
    assert close in bad_case_queue(filters=QueueFilters(status="all"))
    # Unknown values from the query string fall back to the defaults.
    assert QueueFilters.from_query({"status": "x", "sort": "y", "cause": "z"}) == QueueFilters()
