"""POST /app/session: HighLevel's encrypted context in, castbridge's own session out, or one 401."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import httpx2

from castbridge.sandbox.stack import run_stack
from castbridge.store import installations
from tests.settings_page.support import OTHER_COMPANY, OTHER_LOCATION, PageClient, payload_for
from tests.support.sso import context_payload, openssl_encrypt

BAD = "castbridge could not verify your HighLevel user details"


async def test_a_valid_payload_gets_a_session_and_nothing_of_the_context(tmp_path: Path) -> None:
    """The answer names the user and role for display; never the ids, email or company."""
    async with run_stack(tmp_path) as stack:
        await stack.install()
        async with httpx2.AsyncClient(base_url=stack.url) as http:
            page = PageClient(http)
            response = await page.login(payload_for(stack))
            assert response.status_code == 200
            body = response.json()
            assert body["session"] == {
                "userName": "Ada Admin",
                "role": "admin",
                "readOnly": False,
                "view": "location",
                "locationId": stack.ghl.default_location(),
                "fromAgency": False,
            }
            assert 0 < body["expiresIn"] <= 900
            for leaked in (
                "sbxUserAdmin00000001",
                "ada.admin@sandbox.test",
                stack.ghl.config.company_id,
            ):
                assert leaked not in response.text
            # The token is opaque: nothing of the context can be read out of it.
            token = body["token"]
            assert "sbxUserAdmin" not in base64.urlsafe_b64decode(token + "==").decode("latin-1")
            cookie = response.headers["set-cookie"]
            for part in ("HttpOnly", "Secure", "SameSite=none", "Path=/app"):
                assert part.lower() in cookie.lower()
            assert response.headers["cache-control"] == "no-store"
            # The encrypted blob itself is not a credential for the API.
            blob = await page.call(
                "GET", "/app/api/view", headers={"Authorization": f"Bearer {payload_for(stack)}"}
            )
            assert blob.status_code == 401


async def test_every_refusal_is_one_clear_401(tmp_path: Path) -> None:
    """Wrong secret, tampered, missing fields, not JSON, other company, not installed,
    uninstalled: 401, and the payload problems all share one body."""
    async with run_stack(tmp_path) as stack:
        await stack.install()
        stack.ghl.add_location(OTHER_LOCATION, company_id=OTHER_COMPANY)
        await stack.install(OTHER_LOCATION)
        stack.ghl.add_location("sbxGoneLocation00001")
        await stack.install("sbxGoneLocation00001")
        async with stack.resources.store.write() as session:
            await installations.uninstall_location(session, "sbxGoneLocation00001")
        secret = stack.ghl.config.sso_key
        good = payload_for(stack)
        raw = bytearray(base64.b64decode(good))
        raw[-20] ^= 0x40
        tampered = base64.b64encode(bytes(raw)).decode()
        no_company = context_payload(secret, userId="u", role="admin", activeLocation="x")
        payload_problems = {
            "wrong secret": context_payload(
                "not-the-secret", userId="u", companyId="c", role="admin"
            ),
            "tampered": tampered,
            "missing companyId": no_company,
            "not JSON inside": openssl_encrypt("hello", secret),
            "unknown role": payload_for(stack, role="superuser"),
            "garbage": "U2FsdGVkX1garbage",
        }
        async with httpx2.AsyncClient(base_url=stack.url) as http:
            page = PageClient(http)
            bodies = set()
            for why, payload in payload_problems.items():
                response = await page.login(payload)
                assert response.status_code == 401, why
                bodies.add(response.text)
            for why, raw_body in {
                "not JSON": b"{nope",
                "no field": b"{}",
                "payload not a string": b'{"encryptedData": 5}',
                "empty": b"",
            }.items():
                response = await http.post(
                    "/app/session", content=raw_body, headers={"Content-Type": "application/json"}
                )
                assert response.status_code == 401, why
                bodies.add(response.text)
            assert len(bodies) == 1
            assert BAD in bodies.pop()
            for why, payload in {
                "location of another company": payload_for(stack, location=OTHER_LOCATION),
                "location never installed": payload_for(stack, location="sbxNeverInstalled001"),
                "location uninstalled": payload_for(stack, location="sbxGoneLocation00001"),
                "agency without any install": payload_for(
                    stack, location=None, companyId="sbxNoSuchCompany0001"
                ),
            }.items():
                response = await page.login(payload)
                assert response.status_code == 401, why
                assert "not installed" in response.json()["error"], why
                assert "token" not in response.json()
            # The template's field name works too.
            response = await http.post("/app/session", json={"key": payload_for(stack)})
            assert response.status_code == 200


async def test_no_shared_secret_configured_is_a_clear_501(tmp_path: Path) -> None:
    async with run_stack(tmp_path, ghl_sso_key=None) as stack:
        await stack.install()
        async with httpx2.AsyncClient(base_url=stack.url) as http:
            response = await http.post("/app/session", json={"encryptedData": payload_for(stack)})
            assert response.status_code == 501
            assert "SSO not configured" in response.json()["error"]


async def test_sessions_expire_and_the_cookie_needs_the_custom_header(tmp_path: Path) -> None:
    """An expired, altered or foreign token is refused; the cookie alone never authorises
    (a cross-site request carries it but cannot add the header)."""
    async with run_stack(tmp_path, settings_session_seconds=1.5) as stack:
        await stack.install()
        async with httpx2.AsyncClient(base_url=stack.url) as http:
            page = PageClient(http)
            assert (await page.login(payload_for(stack))).status_code == 200
            token = page.token
            assert token is not None
            assert (await page.call("GET", "/app/api/view")).status_code == 200
            no_bearer = PageClient(http)
            http.cookies.set("castbridge_settings", token)
            assert (await no_bearer.call("GET", "/app/api/view")).status_code == 401
            with_header = await no_bearer.call(
                "GET", "/app/api/view", headers={"X-Castbridge-Cookie-Session": "1"}
            )
            assert with_header.status_code == 200
            http.cookies.clear()
            altered = token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")
            for bad in (altered, "nonsense", "x" * 5000):
                response = await page.call(
                    "GET", "/app/api/view", headers={"Authorization": f"Bearer {bad}"}
                )
                assert response.status_code == 401
            await asyncio.sleep(1.7)
            expired = await page.call("GET", "/app/api/view")
            assert expired.status_code == 401
            assert expired.headers["www-authenticate"] == "Bearer"
            assert "session ended" in expired.json()["error"]


async def test_a_session_from_another_database_is_refused(tmp_path: Path) -> None:
    """Tokens are sealed under a key of each castbridge's own keyring."""
    async with run_stack(tmp_path / "a") as first:
        await first.install()
        async with httpx2.AsyncClient(base_url=first.url) as http:
            page = PageClient(http)
            await page.login(payload_for(first))
            token = page.token
    async with run_stack(tmp_path / "b") as second:
        await second.install()
        async with httpx2.AsyncClient(base_url=second.url) as http:
            response = await http.get("/app/api/view", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 401


async def test_the_api_and_the_session_exchange_are_rate_limited(tmp_path: Path) -> None:
    async with run_stack(tmp_path, settings_rate_limit_per_minute=4) as stack:
        await stack.install()
        async with httpx2.AsyncClient(base_url=stack.url) as http:
            page = PageClient(http)
            assert (await page.login(payload_for(stack))).status_code == 200
            codes = [(await page.call("POST", "/app/api/resume", {})).status_code for _ in range(4)]
            assert codes[-1] == 429
            limited = page.answers[-1]
            assert "too many requests" in json.loads(limited[2])["error"]
            logins = [(await page.login(payload_for(stack))).status_code for _ in range(4)]
            assert 429 in logins
