"""The settings page on PostgreSQL: the session key in the keyring, the shared rate limit."""

from __future__ import annotations

from pathlib import Path

import httpx2

from castbridge.sandbox.cast import DEFAULT_API_KEY
from castbridge.sandbox.stack import run_stack
from tests.settings_page.support import PageClient, payload_for
from tests.support.postgres import fresh_database, skip_without_postgres


async def test_sessions_configuring_and_limits_on_postgres(tmp_path: Path) -> None:
    skip_without_postgres()
    async with (
        fresh_database() as url,
        run_stack(tmp_path, database_url=url, settings_rate_limit_per_minute=6) as stack,
    ):
        await stack.install()
        async with httpx2.AsyncClient(base_url=stack.url, timeout=30) as http:
            page = PageClient(http)
            assert (await page.login(payload_for(stack))).status_code == 200
            saved = await page.call(
                "POST", "/app/api/config", {"gateway": "cast", "api_key": DEFAULT_API_KEY}
            )
            assert saved.status_code == 200, saved.text
            view = await page.call("GET", "/app/api/view")
            assert view.status_code == 200
            assert "saved (hidden)" in view.json()["html"]
            codes = [(await page.call("POST", "/app/api/resume", {})).status_code for _ in range(4)]
            assert 429 in codes
