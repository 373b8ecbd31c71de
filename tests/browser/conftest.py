"""A real headless Chromium (the system package) driven by Playwright, for the settings page.

Skipped with a reason only when Chromium is missing outside CI; in CI
(`CASTBRIDGE_TEST_POSTGRES_REQUIRED=1`, set by .ci/run, which installs Chromium) a missing
browser is an error.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

CHROMIUM = os.environ.get("CASTBRIDGE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
IN_CI = os.environ.get("CASTBRIDGE_TEST_POSTGRES_REQUIRED", "") == "1"
HAVE_CHROMIUM = Path(CHROMIUM).exists()

if TYPE_CHECKING:
    from playwright.async_api import Browser


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not HAVE_CHROMIUM:
        if IN_CI:
            pytest.fail(f"Chromium not found at {CHROMIUM}; .ci/run installs it (apt chromium)")
        pytest.skip("Chromium is not installed (apt-get install -y chromium chromium-driver)")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            await launched.close()
