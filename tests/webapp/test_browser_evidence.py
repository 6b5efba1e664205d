"""The re-ranking evidence on the result page, in Debian's Chromium (screenshot kept)."""

from __future__ import annotations

import pytest

from tests.webapp.test_browser import ARTIFACTS, _log_in, _upload, browser, page  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_first_candidate_shows_why(page, appraiser, catalogue, demo_folder, settings):  # noqa: F811
    # Read text on every query (the drawn bags carry none: the OCR path is tested on a real
    # package photo in tests/ml/test_rerank_text.py).
    settings.RERANK_OCR_MARGIN = 1.0
    ARTIFACTS.mkdir(exist_ok=True)
    _log_in(page, appraiser.username)
    page.wait_for_url("**/match/")
    _upload(page, sorted((demo_folder / "photos").glob("DEMO-MAI-LUN-01-*.jpg")))

    first = page.locator("#candidates li.candidate").first
    why = first.locator("details.why")
    assert why.get_attribute("open") is not None  # open on the first candidate
    view = why.locator("svg.evidence-view")
    view.wait_for()
    lines = view.locator("line.match")
    assert lines.count() >= 8
    assert view.locator("rect.key-part").count() >= 2  # on the crop and on the reference
    box = view.bounding_box()
    assert box is not None and box["width"] > 200 and box["height"] > 80
    # Both images drawn: the crop of the query photo and the catalogue image.
    assert view.locator("image").count() == 2
    summary = why.locator(".evidence-summary").inner_text()
    assert "keypoints agree in position" in summary
    bars = why.locator(".contributions dt")
    labels = [bars.nth(i).inner_text() for i in range(bars.count())]
    assert "Visual similarity" in labels and "Matched keypoints" in labels
    first.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "evidence.png"), full_page=True)
    first.screenshot(path=str(ARTIFACTS / "evidence-first-candidate.png"))

    # Other candidates keep theirs folded away until asked.
    second = page.locator("#candidates li.candidate").nth(1).locator("details.why")
    assert second.get_attribute("open") is None
    second.locator("summary").click()
    assert second.locator(".contributions").is_visible()
