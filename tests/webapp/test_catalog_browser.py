"""In Chromium: an admin adds a SKU with images, and an appraiser then finds it by photo."""

from __future__ import annotations

import time

import pytest

from tests.webapp.test_browser import (  # noqa: F401 - pytest fixtures, used by name
    ARTIFACTS,
    _log_in,
    browser,
    page,
)
from webapp.catalog.demo import demo_skus, render_reference
from webapp.catalog.models import SKU
from webapp.learning.models import IndexVersion

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

NEW = "DEMO-KIR-HAR-01"  # a demo tote that the `catalogue` fixture leaves out


def test_admin_adds_a_sku_that_an_appraiser_then_finds_by_photo(
    page, catalogue, catalogue_admin, appraiser, tmp_path  # noqa: F811
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    drawn = next(s for s in demo_skus() if s.code == NEW)
    files = []
    for view in (0, 1):
        path = tmp_path / f"harbour-{view}.png"
        render_reference(drawn, view).save(path)
        files.append(path)

    _log_in(page, catalogue_admin.username)
    page.wait_for_url("**/catalog/")
    page.click("text=New SKU")
    page.fill("input[name=code]", "HAR-CREAM-01")
    page.fill("input[name=name]", "Kirin & Co Harbour Cream")
    page.fill("input[name=category]", "Totes")
    page.fill("input[name=brand]", "Kirin & Co")
    page.fill("input[name=series]", "Harbour")
    page.fill("input[name=colour]", "cream")
    page.fill("textarea[name=attributes]", "hardware: gold\npattern: solid")
    page.set_input_files("#images", [str(f) for f in files])
    page.screenshot(path=str(ARTIFACTS / "catalog-new-sku.png"), full_page=True)
    saved = time.perf_counter()
    page.click("#create-sku")
    page.wait_for_url("**/catalog/skus/*/")
    sku = SKU.objects.get(code="HAR-CREAM-01")
    assert page.locator("#images li").count() == 2
    assert sku.series.name == "Harbour" and sku.attributes["hardware"] == "gold"

    # The index sync runs on commit (eagerly here); the page's index pill reports it.
    wanted = set(sku.images.values_list("id", flat=True))
    page.wait_for_selector("#index-status.done", timeout=60_000)
    active = IndexVersion.objects.get(is_active=True)
    assert active != catalogue and active.vector_count == catalogue.vector_count + len(wanted)
    findable_s = time.perf_counter() - saved
    page.screenshot(path=str(ARTIFACTS / "catalog-sku-detail.png"), full_page=True)

    page.click("button:has-text('Log out')")
    _log_in(page, appraiser.username)
    page.wait_for_url("**/match/")
    page.set_input_files("#photos", [str(files[1])])
    page.click("#submit-photos")
    page.wait_for_selector("#candidates li.candidate", timeout=60_000)
    assert page.locator("#candidates li.candidate").first.locator(".code").inner_text() == (
        "HAR-CREAM-01")
    page.screenshot(path=str(ARTIFACTS / "catalog-new-sku-found.png"), full_page=True)
    print(f"\n[findability] browser, eager: save -> index in sync in {findable_s:.2f} s")
