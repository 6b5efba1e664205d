"""The appraiser's flow in Debian's Chromium through Playwright."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.webapp.conftest import PASSWORD
from webapp.matching.models import Decision
from webapp.review.models import BadCase

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not shutil.which(CHROMIUM):
        message = f"{CHROMIUM} not installed (make test installs Debian's chromium)"
        if os.environ.get("SKULENS_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, live_server) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=live_server.url)
    page = context.new_page()
    messages: list[str] = []
    # A refused upload answers 422 on purpose; Chromium logs that as a console error.
    expected = "the server responded with a status of 422"
    page.on(
        "console",
        lambda m: messages.append(m.text) if m.type == "error" and expected not in m.text else None,
    )
    yield page
    context.close()
    assert not messages, f"browser console errors: {messages}"


def _log_in(page, username: str) -> None:
    page.goto("/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")


def _upload(page, files: list[Path]) -> None:
    page.set_input_files("#photos", [str(f) for f in files])
    page.click("#submit-photos")
    page.wait_for_selector("#candidates li.candidate", timeout=60_000)


def test_appraiser_uploads_sees_candidates_and_confirms(page, appraiser, catalogue, demo_folder):
    ARTIFACTS.mkdir(exist_ok=True)
    _log_in(page, appraiser.username)
    page.wait_for_url("**/match/")
    page.screenshot(path=str(ARTIFACTS / "upload.png"), full_page=True)

    photos = sorted((demo_folder / "photos").glob("DEMO-MAI-LUN-01-*.jpg"))
    _upload(page, photos)
    cards = page.locator("#candidates li.candidate")
    assert cards.count() >= 3
    first = cards.first
    assert first.locator(".score").inner_text().endswith("%")
    assert first.locator("img[alt^='reference for']").count() == 1
    assert first.locator("img[alt=query]").count() == 1
    page.screenshot(path=str(ARTIFACTS / "candidates.png"), full_page=True)

    chosen_code = first.locator(".code").inner_text()
    page.keyboard.press("1")
    page.wait_for_selector(".pill.decided")
    assert chosen_code in page.locator(".pill.decided").inner_text()
    decision = Decision.objects.get()
    assert decision.outcome == Decision.Outcome.ACCEPT
    assert decision.sku.code == chosen_code
    page.screenshot(path=str(ARTIFACTS / "confirmed.png"), full_page=True)


def test_appraiser_rejects_with_r_and_can_attach_another_sku(
    page, appraiser, catalogue, demo_folder
):
    _log_in(page, appraiser.username)
    page.wait_for_url("**/match/")
    _upload(page, [demo_folder / "photos" / "DEMO-KIR-SUM-01-photo0.jpg"])
    page.keyboard.press("r")
    page.wait_for_selector(".pill.decided")
    assert BadCase.objects.count() == 1

    page.goto("/match/")
    _upload(page, [demo_folder / "photos" / "DEMO-VEL-MER-01-photo0.jpg"])
    page.keyboard.press("/")
    page.keyboard.type("Summit")
    page.wait_for_selector(".sku-results button.attach")
    page.locator(".sku-results button.attach").first.click()
    page.wait_for_selector(".pill.decided")
    assert Decision.objects.filter(outcome=Decision.Outcome.OTHER_SKU).count() == 1


def test_a_bad_file_shows_a_clear_error(page, appraiser, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not a photo")
    _log_in(page, appraiser.username)
    page.wait_for_url("**/match/")
    page.set_input_files("#photos", [str(bad)])
    page.click("#submit-photos")
    page.wait_for_selector("#upload-errors .errors")
    assert "not a supported image" in page.locator("#upload-errors").inner_text()
