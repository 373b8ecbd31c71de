"""The payload has no MAC or expiry: where the install granted `users.readonly`, HighLevel's
own user record (`GET /users/{userId}`) decides whether the user reaches the sub-account and
may edit."""

from __future__ import annotations

from pathlib import Path

import httpx2

from castbridge.config import DEFAULT_GHL_SCOPES
from castbridge.sandbox.ghl.custom_page import USERS
from castbridge.sandbox.stack import run_stack
from tests.settings_page.support import PageClient, payload_for

ADMIN_ID = USERS["admin"][0]


async def test_highlevel_decides_access_and_the_right_to_edit(tmp_path: Path) -> None:
    async with run_stack(tmp_path) as stack:
        await stack.install()
        location = stack.ghl.default_location()
        async with httpx2.AsyncClient(base_url=stack.url, timeout=30) as http:
            page = PageClient(http)
            answer = await page.login(payload_for(stack))
            assert answer.json()["session"]["readOnly"] is False
            assert stack.ghl.requests[location] >= 1  # it asked HighLevel
            # HighLevel says this user is a plain user without settings rights: read-only,
            # whatever the payload claims.
            stack.ghl.user_overrides[ADMIN_ID] = {
                "roles": {"role": "user"},
                "permissions": {"settingsEnabled": False},
            }
            answer = await page.login(payload_for(stack))
            assert answer.status_code == 200
            assert answer.json()["session"]["readOnly"] is True
            assert (await page.call("POST", "/app/api/resume", {})).status_code == 403
            # A sub-account user whose locations do not include this one: no session.
            stack.ghl.user_overrides[ADMIN_ID] = {"roles": {"type": "account", "locationIds": []}}
            refused = await page.login(payload_for(stack))
            assert refused.status_code == 401
            assert "HighLevel does not confirm" in refused.json()["error"]
            # A user HighLevel does not know at all (a forged or stale payload).
            stack.ghl.user_overrides.clear()
            unknown = await page.login(payload_for(stack, userId="sbxUserForged0000001"))
            assert unknown.status_code == 401
            # HighLevel cannot answer: fail closed with a 503 the page can show.
            stack.ghl.fault_rate = 1.0
            down = await page.login(payload_for(stack))
            assert down.status_code == 503
            assert "token" not in down.json()


async def test_an_agency_admin_opening_a_sub_account_is_confirmed_too(tmp_path: Path) -> None:
    async with run_stack(tmp_path) as stack:
        await stack.install()
        async with httpx2.AsyncClient(base_url=stack.url, timeout=30) as http:
            page = PageClient(http)
            assert (await page.login(payload_for(stack, location=None))).status_code == 200
            stack.ghl.user_overrides[ADMIN_ID] = {"roles": {"type": "account"}}
            opened = await page.call(
                "POST", "/app/api/open", {"location_id": stack.ghl.default_location()}
            )
            assert opened.status_code == 403
            stack.ghl.user_overrides.clear()
            opened = await page.call(
                "POST", "/app/api/open", {"location_id": stack.ghl.default_location()}
            )
            assert opened.status_code == 200


async def test_without_the_scope_the_payload_role_stands(tmp_path: Path) -> None:
    """Installs made before `users.readonly` was requested keep working on the payload alone."""
    scopes = DEFAULT_GHL_SCOPES.replace(" users.readonly", "")
    async with run_stack(tmp_path, ghl_scopes=scopes) as stack:
        await stack.install()
        async with httpx2.AsyncClient(base_url=stack.url, timeout=30) as http:
            page = PageClient(http)
            answer = await page.login(payload_for(stack, userId="sbxUserNotInHighLevel"))
            assert answer.status_code == 200
            assert answer.json()["session"]["readOnly"] is False
