"""The settings page and its API: framing, assets, roles, configuring a gateway, the test SMS,
health and diagnosis, the agency view, and that nothing secret ever reaches the browser."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx2

from castbridge.sandbox.cast import DEFAULT_API_KEY, DEFAULT_SENDER_ID
from castbridge.sandbox.ghl import GHLSandboxConfig
from castbridge.sandbox.stack import Stack, run_stack
from tests.settings_page.support import OTHER_COMPANY, OTHER_LOCATION, PageClient, payload_for

AGENCY = ["sbxLocationAgency001", "sbxLocationAgency002"]


async def test_only_the_settings_routes_may_be_framed(tmp_path: Path) -> None:
    """Default `frame-ancestors 'self' https:` and no X-Frame-Options on /app/...; every other
    route keeps denying framing."""
    async with (
        run_stack(tmp_path, settings_frame_ancestors=None) as stack,
        httpx2.AsyncClient(base_url=stack.url) as http,
    ):
        page = await http.get("/app/settings")
        assert page.status_code == 200
        assert "x-frame-options" not in page.headers
        policies = page.headers.get_list("content-security-policy")
        assert "frame-ancestors 'self' https:" in policies
        assert not any("frame-ancestors 'none'" in p for p in policies)
        session = await http.post("/app/session", json={"encryptedData": "x"})
        assert "x-frame-options" not in session.headers
        for path in ("/healthz", "/oauth/install", "/metrics"):
            other = await http.get(path)
            assert other.headers["x-frame-options"] == "DENY", path
            assert other.headers["content-security-policy"] == "frame-ancestors 'none'", path


async def test_the_frame_ancestors_setting_replaces_the_default(tmp_path: Path) -> None:
    allowed = "'self' https://app.gohighlevel.com https://*.leadconnectorhq.com"
    async with (
        run_stack(tmp_path, settings_frame_ancestors=allowed) as stack,
        httpx2.AsyncClient(base_url=stack.url) as http,
    ):
        page = await http.get("/app/settings")
        assert f"frame-ancestors {allowed}" in page.headers.get_list("content-security-policy")


async def test_the_page_and_its_hashed_assets(tmp_path: Path) -> None:
    """The shell has no tenant data; its assets are content-hashed and cached for a year."""
    async with run_stack(tmp_path) as stack, httpx2.AsyncClient(base_url=stack.url) as http:
        page = await http.get("/app/settings")
        assert page.headers["cache-control"] == "no-store"
        assert "script-src 'self'" in page.headers.get_list("content-security-policy")[0]
        urls = re.findall(r'(?:src|href)="(/app/static/[^"]+)"', page.text)
        assert len(urls) == 2
        for url in urls:
            assert re.search(r"\.[0-9a-f]{12}\.(js|css)$", url)
            asset = await http.get(url)
            assert asset.status_code == 200
            assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
            assert "http" not in re.sub(r"https?://www\.w3\.org", "", asset.text)  # no CDN
        assert (await http.get("/app/static/settings.000000000000.js")).status_code == 404
        assert (await http.get("/app/static/..%2Fservice.py")).status_code == 404


async def _logged_in(
    stack: Stack, http: httpx2.AsyncClient, role: str = "admin", **kw: Any
) -> PageClient:
    page = PageClient(http)
    response = await page.login(payload_for(stack, role=role, **kw))
    assert response.status_code == 200, response.text
    return page


def _labels(html: str) -> set[str]:
    return set(re.findall(r"<label for=\"[^\"]+\">([^<]+)</label>", html))


async def test_an_admin_configures_a_key_checked_live_and_sends_a_test_sms(tmp_path: Path) -> None:
    async with run_stack(tmp_path) as stack:
        await stack.install()
        async with httpx2.AsyncClient(base_url=stack.url, timeout=30) as http:
            page = await _logged_in(stack, http)
            view = (await page.call("GET", "/app/api/view")).json()["html"]
            assert {
                "Gateway",
                "API key",
                "Sender ID",
                "Channel",
                "Country",
                "Test number",
            } <= _labels(view)
            assert ">Save</button>" in view
            assert ">Send test SMS</button>" in view
            refused = await page.call(
                "POST", "/app/api/config", {"gateway": "cast", "api_key": "cast_" + "0" * 64}
            )
            assert refused.status_code == 422
            assert refused.json()["error"].startswith("Cast.ph refused the key")
            unknown = await page.call(
                "POST", "/app/api/config", {"gateway": "nope", "api_key": "k"}
            )
            assert unknown.status_code == 422
            bad_country = await page.call("POST", "/app/api/config", {"country": "PHL"})
            assert bad_country.status_code == 422
            on_default = (await page.call("GET", "/app/api/view")).json()["html"]
            assert 'id="balance">managed by your agency' in on_default
            saved = await page.call(
                "POST",
                "/app/api/config",
                {
                    "gateway": "cast",
                    "api_key": DEFAULT_API_KEY,
                    "sender_id": DEFAULT_SENDER_ID,
                    "channel": "sms",
                    "country": "ph",
                },
            )
            assert saved.status_code == 200, saved.text
            view = (await page.call("GET", "/app/api/view")).json()["html"]
            assert DEFAULT_API_KEY not in view
            assert "saved (hidden)" in view
            assert f'value="{DEFAULT_SENDER_ID}"' in view
            assert 'id="balance">1,000 credits' in view
            assert "One-way" in view
            sent = await page.call("POST", "/app/api/test-sms", {"to": "09171234567"})
            assert sent.status_code == 200
            assert sent.json()["status"] == "accepted"
            handle = sent.json()["handle"]
            seen = []
            for _ in range(40):
                status = (
                    await page.call("POST", "/app/api/test-sms/status", {"handle": handle})
                ).json()
                seen.append(status["status"])
                if status["final"]:
                    break
                await asyncio.sleep(0.5)
            assert seen[-1] == "delivered"
            failed = await page.call("POST", "/app/api/test-sms", {"to": "09170000404"})
            handle = failed.json()["handle"]
            for _ in range(40):
                status = (
                    await page.call("POST", "/app/api/test-sms/status", {"handle": handle})
                ).json()
                if status["final"]:
                    break
                await asyncio.sleep(0.5)
            assert status["status"] == "failed"
            assert status["reason"]
            invalid = await page.call("POST", "/app/api/test-sms", {"to": "12"})
            assert invalid.status_code == 422
            assert invalid.json()["error"].startswith("Test number:")
            forged = await page.call("POST", "/app/api/test-sms/status", {"handle": "forged"})
            assert forged.status_code == 404
            # Test messages spend the sub-account's credits: a few a minute, then 429.
            for _ in range(5):
                again = await page.call("POST", "/app/api/test-sms", {"to": "09171234567"})
                if again.status_code == 429:
                    break
            assert again.status_code == 429
            assert int(again.headers["retry-after"]) >= 1


async def test_a_test_sms_to_an_opted_out_number_is_refused(tmp_path: Path) -> None:
    """The test SMS honours STOP like every other message: a number that opted out of this
    sub-account gets nothing, and the page says why."""
    from tests.support.cli import cli

    async with run_stack(tmp_path) as stack:
        await stack.install()
        location = stack.ghl.default_location()
        numbers = tmp_path / "optouts.txt"
        numbers.write_text("+639171234567\n")
        imported = await cli(
            stack.settings, "optouts", "import", str(numbers), "--location", location
        )
        assert imported.exit_code == 0, imported.output
        async with httpx2.AsyncClient(base_url=stack.url, timeout=30) as http:
            page = await _logged_in(stack, http)
            saved = await page.call(
                "POST",
                "/app/api/config",
                {"gateway": "cast", "api_key": DEFAULT_API_KEY, "sender_id": DEFAULT_SENDER_ID},
            )
            assert saved.status_code == 200, saved.text
            refused = await page.call("POST", "/app/api/test-sms", {"to": "0917 123 4567"})
            assert refused.status_code == 409
            assert "opted out" in refused.json()["error"]
        assert stack.cast.messages == {}


async def test_a_user_sees_the_page_read_only(tmp_path: Path) -> None:
    async with run_stack(tmp_path) as stack:
        await stack.install()
        await stack.use_gateway(stack.ghl.default_location(), "castbrick")
        async with httpx2.AsyncClient(base_url=stack.url, timeout=30) as http:
            page = await _logged_in(stack, http, role="user")
            view = (await page.call("GET", "/app/api/view")).json()
            assert view["session"]["readOnly"] is True
            assert "Read-only" in view["html"]
            assert view["html"].count("<fieldset disabled>") == 2
            assert "/webhooks/gateways/" not in view["html"]  # the webhook URL is for editors
            for path, body in (
                ("/app/api/config", {"sender_id": "X"}),
                ("/app/api/test-sms", {"to": "+244923123456"}),
                ("/app/api/resume", {}),
            ):
                response = await page.call("POST", path, body)
                assert response.status_code == 403, path
            admin = await _logged_in(stack, http)
            html = (await admin.call("GET", "/app/api/view")).json()["html"]
            assert "castbridge registered its webhook with CastBrick" in html


async def test_the_diagnosis_explains_a_paused_account_and_resume_works(tmp_path: Path) -> None:
    async with run_stack(tmp_path) as stack:
        await stack.install()
        location = stack.ghl.default_location()
        account_id = await stack.use_gateway(location, "cast")
        from castbridge import accounts
        from castbridge.gateways.base import CredentialsError

        async with stack.resources.store.write() as session:
            await accounts.pause(
                session, stack.settings, account_id, CredentialsError("key revoked", code="AUTH")
            )
        async with httpx2.AsyncClient(base_url=stack.url, timeout=30) as http:
            page = await _logged_in(stack, http)
            html = (await page.call("GET", "/app/api/view")).json()["html"]
            assert "Sending is paused (key revoked)" in html
            assert 'id="resume"' in html
            assert (await page.call("POST", "/app/api/resume", {})).status_code == 200
            html = (await page.call("GET", "/app/api/view")).json()["html"]
            assert "Sending is not paused." in html
            assert (await page.call("POST", "/app/api/resume", {})).status_code == 409


async def test_health_counts_and_the_last_messages_are_masked(tmp_path: Path) -> None:
    async with run_stack(tmp_path) as stack:
        await stack.install()
        await stack.use_gateway(stack.ghl.default_location(), "cast")
        await stack.ghl.send_delivery_webhook(
            stack.delivery_url, phone="+639171234567", message="hi"
        )
        await stack.ghl.send_delivery_webhook(
            stack.delivery_url, phone="+639170000404", message="x"
        )
        async with httpx2.AsyncClient(base_url=stack.url, timeout=30) as http:
            page = await _logged_in(stack, http)
            for _ in range(60):
                html = (await page.call("GET", "/app/api/view")).json()["html"]
                if "1 delivered, 1 failed, 0 pending" in html:
                    break
                await asyncio.sleep(0.5)
            assert "1 delivered, 1 failed, 0 pending" in html
            assert 'id="delivery-rate">50 %' in html
            assert "<svg" in html
            assert 'data-kind="delivered"' in html
            assert 'data-kind="failed"' in html
            assert "+63917****567" in html
            assert "9171234567" not in html
            assert "Error rate</strong>: 50%" in html


async def test_the_agency_view_lists_and_opens_only_its_own_sub_accounts(tmp_path: Path) -> None:
    config = GHLSandboxConfig(location_ids=AGENCY)
    async with run_stack(tmp_path, ghl_config=config) as stack:
        await stack.install(agency=True)
        for _ in range(100):
            page = PageClient(httpx2.AsyncClient(base_url=stack.url))
            async with page.http:
                if (await page.login(payload_for(stack, location=AGENCY[1]))).status_code == 200:
                    break
            await asyncio.sleep(0.1)
        await stack.use_gateway(AGENCY[0], "cast")
        stack.ghl.add_location(OTHER_LOCATION, company_id=OTHER_COMPANY)
        await stack.install(OTHER_LOCATION)
        async with httpx2.AsyncClient(base_url=stack.url, timeout=30) as http:
            agency = await _logged_in(stack, http, location=None)
            view = (await agency.call("GET", "/app/api/view")).json()
            assert view["session"]["view"] == "agency"
            html = view["html"]
            for location in AGENCY:
                assert location in html
            assert OTHER_LOCATION not in html
            assert "<td>Cast.ph</td>" in html
            assert "<td>Cast.ph (default account)</td>" in html
            other = await agency.call("POST", "/app/api/open", {"location_id": OTHER_LOCATION})
            assert other.status_code == 404
            opened = await agency.call("POST", "/app/api/open", {"location_id": AGENCY[0]})
            assert opened.status_code == 200
            assert opened.json()["session"]["fromAgency"] is True
            agency.token = opened.json()["token"]
            html = (await agency.call("GET", "/app/api/view")).json()["html"]
            assert 'id="back-to-agency"' in html
            assert "Cast.ph" in html
            user = await _logged_in(stack, http, role="user", location=None)
            html = (await user.call("GET", "/app/api/view")).json()["html"]
            assert "open-location" not in html
            refused = await user.call("POST", "/app/api/open", {"location_id": AGENCY[0]})
            assert refused.status_code == 403


async def test_nothing_secret_reaches_the_browser(tmp_path: Path) -> None:
    """Every JSON answer the page receives in a full session: no gateway key, no OAuth token,
    no Shared Secret, none of the decrypted context's ids or email; the session token only in
    the answers that hand it out."""
    async with run_stack(tmp_path) as stack:
        await stack.install()
        await stack.use_gateway(stack.ghl.default_location(), "castbrick")
        async with httpx2.AsyncClient(base_url=stack.url, timeout=30) as http:
            page = await _logged_in(stack, http)
            await page.call("GET", "/app/api/view")
            await page.call(
                "POST", "/app/api/config", {"gateway": "cast", "api_key": "cast_" + "1" * 64}
            )
            await page.call(
                "POST", "/app/api/config", {"gateway": "cast", "api_key": DEFAULT_API_KEY}
            )
            await page.call("POST", "/app/api/config", {"sender_id": DEFAULT_SENDER_ID})
            await page.call("GET", "/app/api/view")
            sent = await page.call("POST", "/app/api/test-sms", {"to": "09171234567"})
            await page.call("POST", "/app/api/test-sms/status", {"handle": sent.json()["handle"]})
            await page.call("POST", "/app/api/resume", {})
            agency = await _logged_in(stack, http, location=None)
            await agency.call("GET", "/app/api/view")
            await agency.call(
                "POST", "/app/api/open", {"location_id": stack.ghl.default_location()}
            )
        secrets = {
            DEFAULT_API_KEY,
            "cast_" + "1" * 64,
            *(stack.gateway_keys or {}).values(),
            stack.ghl.config.sso_key,
            stack.ghl.config.client_secret,
            *stack.ghl.access_tokens,
            *stack.ghl.refresh_tokens,
            "sbxUserAdmin00000001",
            "ada.admin@sandbox.test",
            stack.ghl.config.company_id,
        }
        assert stack.settings.secret_keys is not None
        secrets |= set(stack.settings.secret_keys.get_secret_value().split(","))
        tokens = {page.token, agency.token}
        answers = page.answers + agency.answers
        assert len(answers) >= 12
        for path, _status, text in answers:
            for secret in secrets:
                assert secret not in text, (path, secret[:12])
            if path not in ("/app/session", "/app/api/open"):
                for token in tokens:
                    assert token is not None
                    assert token not in text, path
