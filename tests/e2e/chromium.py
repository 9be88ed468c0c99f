"""What the browser test modules share beyond the ``browser`` fixture (tests/e2e/conftest.py):
importing this skips the importing module where chromium is missing (and fails under CI, where
it must be there), ``signed_in`` opens a signed-in page, and ``shoot`` saves a screenshot to
tests/e2e/screenshots/ (ignored by git)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, Dialog, Page, expect

from tests.conftest import IN_CI
from tests.e2e.conftest import CHROMIUM

SCREENSHOTS = Path(__file__).parent / "screenshots"

if not Path(CHROMIUM).exists():
    if IN_CI:
        raise RuntimeError(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium for these tests")
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)", allow_module_level=True)


def shoot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def signed_in(browser: Browser, base_url: str, email: str, password: str, width: int = 1280) -> Page:
    """A new browser context at ``width`` px, signed in to the UI; close its ``context`` after."""
    context = browser.new_context(viewport={"width": width, "height": 900}, base_url=base_url, accept_downloads=True)
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Overview")
    return page


def confirming(page: Page, asked: list[str]) -> None:
    """Accept the next confirmation, keeping its question to check what it said."""

    def accept(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)


def push_succeeded(page: Page, tries: int) -> None:
    """Reload the invoice page (every 250 ms, ``tries`` times at most) until its push SUCCEEDED."""
    for _ in range(tries):
        if page.locator("#push-status").inner_text() == "SUCCEEDED":
            break
        page.wait_for_timeout(250)
        page.reload()
    expect(page.locator("#push-status")).to_have_text("SUCCEEDED")
