"""What the browser test modules share beyond the ``browser`` fixture (tests/e2e/conftest.py):
importing this skips the importing module where chromium is missing (and fails under CI, where
it must be there), and ``shoot`` saves a screenshot to tests/e2e/screenshots/ (ignored by git)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page

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
