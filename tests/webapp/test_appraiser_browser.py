"""The appraiser's tools in Chromium: words, the crop, undo with u, new SKU with n, history."""

from __future__ import annotations

import pytest

from tests.webapp.test_browser import ARTIFACTS, _log_in, _upload, browser, page  # noqa: F401
from webapp.matching.models import Decision, MatchRequest
from webapp.review.models import BadCase, CatalogueGap

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_undo_then_new_sku_then_find_it_in_the_history(page, appraiser, catalogue,  # noqa: F811
                                                       demo_folder) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.set_default_timeout(90_000)  # the 2-core machine is shared; a slow page is not a bug
    _log_in(page, appraiser.username)
    page.wait_for_url("**/match/")
    page.fill("#query-text", "green quilted Lune, gold chain")
    page.select_option("select[name=attr_key]", "colour")
    page.fill("input[name=attr_value]", "green")
    page.click("#add-attribute")
    page.locator("select[name=attr_key]").nth(1).select_option("hardware")
    page.locator("input[name=attr_value]").nth(1).fill("gold")
    page.screenshot(path=str(ARTIFACTS / "describe-item.png"), full_page=True)
    _upload(page, [demo_folder / "photos" / "DEMO-MAI-LUN-01-photo0.jpg"])
    assert "green quilted Lune" in page.locator("#query-words").inner_text()
    match = MatchRequest.objects.get()
    assert match.soft_attributes == {"colour": "green", "hardware": "gold"}
    # The words are evidence: the first candidate's "why" shows the typed words it matched
    # and the stated attributes, agreeing (gold) or not (green against black).
    why = page.locator("#candidates li.candidate").first.locator("details.why")
    assert "lune" in why.locator("mark.word.typed").all_inner_texts()
    assert why.locator(".agrees", has_text="hardware gold").count() == 1
    assert why.locator(".disagrees", has_text="colour green").count() == 1
    assert "weighed as evidence" in page.locator("#query-words").inner_text()
    page.screenshot(path=str(ARTIFACTS / "words-as-evidence.png"), full_page=True)

    # The crop, as the network saw it, beside the reference; the full photo one click away.
    crop = page.locator("#candidates li.candidate").first.locator("img.crop")
    crop.wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=crop.element_handle())
    assert page.locator("#candidates a.full-photo").first.get_attribute("href").endswith(".jpg")

    page.keyboard.press("r")
    page.wait_for_selector("#undo")
    assert BadCase.objects.count() == 1
    page.screenshot(path=str(ARTIFACTS / "rejected-with-undo.png"), full_page=True)

    page.keyboard.press("u")
    page.wait_for_selector("#reject-all")
    assert "Decision undone" in page.locator(".flash").inner_text()
    assert not Decision.objects.exists() and not BadCase.objects.exists()

    page.fill("#new-sku-form input[name=note]", "Lune in green, not in the catalogue")
    page.locator("#new-sku-form input[name=note]").evaluate("field => field.blur()")
    page.keyboard.press("n")
    page.wait_for_selector("#gap-opened")
    assert "Lune in green" in page.locator("#gap-opened").inner_text()
    gap = CatalogueGap.objects.get()
    assert gap.status == CatalogueGap.Status.OPEN and gap.reported_by == appraiser
    assert Decision.objects.get().outcome == Decision.Outcome.NEW_SKU
    page.screenshot(path=str(ARTIFACTS / "new-sku-gap.png"), full_page=True)

    page.goto("/match/")
    page.click("#all-items")
    page.wait_for_selector("#history-table")
    page.keyboard.press("/")
    page.keyboard.type("quilted")
    page.wait_for_function(
        "() => document.querySelector('#history-count').innerText.includes('quilted')")
    rows = page.locator("#history-table tr[data-item]")
    assert rows.count() == 1
    assert "New SKU" in rows.first.inner_text()
    page.screenshot(path=str(ARTIFACTS / "history.png"), full_page=True)
