"""The OAuth install over real HTTP: /oauth/install, HighLevel's choose-location page, callback."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlencode

import httpx2

from castbridge.sandbox.ghl import GHLSandboxConfig
from castbridge.sandbox.stack import run_stack
from castbridge.store.models import Installation, OAuthState
from tests.web.support import (
    audit,
    callback_url,
    count,
    eventually,
    installation,
    installations,
    query_param,
    raw_installation,
)

AGENCY_LOCATIONS = ["sbxLocationAgency001", "sbxLocationAgency002", "sbxLocationAgency003"]
SETUP_STEPS = ("Settings → Phone Numbers → Advanced Settings", "SMS Provider", "castbridge")


async def test_location_install_stores_active_encrypted_tokens(tmp_path: Path) -> None:
    """A sub-account install leaves one active Location row whose tokens are stored encrypted."""
    async with run_stack(tmp_path) as stack:
        await stack.install()
        location_id = stack.ghl.default_location()
        info = await installation(stack, location_id)
        assert info is not None
        assert info.active
        assert info.user_type == "Location"
        assert info.company_id == stack.ghl.config.company_id
        assert info.has_access_token
        assert info.has_refresh_token
        row = await raw_installation(stack, "Location", location_id)
        access = next(iter(stack.ghl.access_tokens))
        refresh = next(iter(stack.ghl.refresh_tokens))
        assert row.access_token_enc
        assert row.refresh_token_enc
        assert access not in row.access_token_enc
        assert refresh not in row.refresh_token_enc
        box = stack.resources.secret_box
        assert box.decrypt(row.access_token_enc) == access
        assert box.decrypt(row.refresh_token_enc) == refresh
        assert [event.location_id for event in await audit(stack, "install")] == [location_id]


async def test_agency_install_mints_every_location(tmp_path: Path) -> None:
    """An agency (Company) install stores the Company token and mints one Location row each,
    in durable jobs; HighLevel pages of 2 (shorter than asked) are followed to `count`, where
    a short page used to end the listing and skip the rest."""
    config = GHLSandboxConfig(location_ids=AGENCY_LOCATIONS, installed_locations_page_cap=2)
    async with run_stack(tmp_path, ghl_config=config) as stack:
        await stack.install(agency=True)

        async def all_minted() -> bool:
            rows = await installations(stack)
            return sum(1 for row in rows if row.user_type == "Location" and row.active) == len(
                AGENCY_LOCATIONS
            )

        assert await eventually(all_minted, within=20)
        rows = await installations(stack)
        companies = [row for row in rows if row.user_type == "Company"]
        locations = [row for row in rows if row.user_type == "Location"]
        assert [row.resource_id for row in companies] == [config.company_id]
        assert companies[0].active
        assert companies[0].location_id is None
        assert sorted(row.location_id or "" for row in locations) == sorted(AGENCY_LOCATIONS)
        assert all(row.active and row.company_id == config.company_id for row in locations)


async def test_success_page_explains_the_sms_provider_step(tmp_path: Path) -> None:
    """The page after a successful install tells the user where to pick castbridge as provider."""
    async with run_stack(tmp_path) as stack, httpx2.AsyncClient(timeout=10) as http:
        done = await http.get(await callback_url(http, stack))
        assert done.status_code == 200
        assert done.headers["content-type"].startswith("text/html")
        for text in SETUP_STEPS:
            assert text in done.text
        assert "your sub-account" in done.text


async def test_agency_success_page_counts_sub_accounts(tmp_path: Path) -> None:
    """The agency success page says how many sub-accounts were connected."""
    config = GHLSandboxConfig(location_ids=AGENCY_LOCATIONS)
    async with (
        run_stack(tmp_path, ghl_config=config) as stack,
        httpx2.AsyncClient(timeout=10) as http,
    ):
        done = await http.get(await callback_url(http, stack, agency=True))
        assert done.status_code == 200
        assert "connected to your agency" in done.text
        assert "3 sub-account(s) are being connected now" in done.text
        assert SETUP_STEPS[0] in done.text


async def test_install_redirect_carries_state_and_scopes(tmp_path: Path) -> None:
    """/oauth/install redirects to the v2 choose-location page with client, scopes and a state."""
    async with run_stack(tmp_path) as stack, httpx2.AsyncClient(timeout=10) as http:
        start = await http.get(f"{stack.url}/oauth/install")
        assert start.status_code == 302
        target = start.headers["location"]
        assert target.startswith(f"{stack.ghl_url}/v2/oauth/chooselocation?")
        assert query_param(target, "client_id") == stack.settings.ghl_client_id
        assert query_param(target, "redirect_uri") == f"{stack.url}/oauth/callback"
        assert query_param(target, "scope") == stack.settings.ghl_scopes
        assert len(query_param(target, "state")) >= 32
        assert await count(stack, OAuthState) == 1


async def test_reused_callback_is_refused_and_stores_nothing(tmp_path: Path) -> None:
    """Opening the same callback URL twice: the second is a 400 page and changes nothing."""
    async with run_stack(tmp_path) as stack, httpx2.AsyncClient(timeout=10) as http:
        url = await callback_url(http, stack)
        assert (await http.get(url)).status_code == 200
        before = await raw_installation(stack, "Location", stack.ghl.default_location())
        again = await http.get(url)
        assert again.status_code == 400
        assert "expired or was already used" in again.text
        assert "/oauth/install" in again.text
        after = await raw_installation(stack, "Location", stack.ghl.default_location())
        assert after.token_version == before.token_version
        assert after.access_token_enc == before.access_token_enc
        assert await count(stack, Installation) == 1
        # The state was refused before the code went anywhere near HighLevel.
        assert stack.ghl.token_calls["authorization_code"] == 1


async def test_expired_state_is_refused(tmp_path: Path) -> None:
    """A callback arriving after the state's lifetime is a 400 page and installs nothing."""
    async with (
        run_stack(tmp_path, oauth_state_ttl_seconds=0.05) as stack,
        httpx2.AsyncClient(timeout=10) as http,
    ):
        url = await callback_url(http, stack)
        await asyncio.sleep(0.2)
        done = await http.get(url)
        assert done.status_code == 400
        assert "expired or was already used" in done.text
        assert await count(stack, Installation) == 0
        assert stack.ghl.token_calls["authorization_code"] == 0


async def test_unknown_state_is_refused(tmp_path: Path) -> None:
    """A state castbridge never issued (forged link) is a 400 page and installs nothing."""
    async with run_stack(tmp_path) as stack, httpx2.AsyncClient(timeout=10) as http:
        url = await callback_url(http, stack)
        forged = url.replace(query_param(url, "state"), "forged-state-value")
        done = await http.get(forged)
        assert done.status_code == 400
        assert await count(stack, Installation) == 0


async def test_bad_code_is_a_clear_400(tmp_path: Path) -> None:
    """A code HighLevel refuses is a 400 page saying so, with a link to start again."""
    async with run_stack(tmp_path) as stack, httpx2.AsyncClient(timeout=10) as http:
        start = await http.get(f"{stack.url}/oauth/install")
        state = query_param(start.headers["location"], "state")
        query = urlencode({"code": "not-a-real-code", "state": state})
        done = await http.get(f"{stack.url}/oauth/callback?{query}")
        assert done.status_code == 400
        assert "did not accept the authorization code" in done.text
        assert 'href="/oauth/install"' in done.text
        assert "not-a-real-code" not in done.text
        assert await count(stack, Installation) == 0


async def test_bad_code_without_state_is_a_clear_400(tmp_path: Path) -> None:
    """A Marketplace-started callback (no state) with a bad code is also a clear 400 page."""
    async with run_stack(tmp_path) as stack, httpx2.AsyncClient(timeout=10) as http:
        done = await http.get(f"{stack.url}/oauth/callback?code=nope")
        assert done.status_code == 400
        assert "did not accept the authorization code" in done.text


async def test_marketplace_install_without_state_succeeds(tmp_path: Path) -> None:
    """An install started from the HighLevel Marketplace comes back without state and works."""
    async with run_stack(tmp_path) as stack, httpx2.AsyncClient(timeout=10) as http:
        code = stack.ghl.issue_code(redirect_uri=f"{stack.url}/oauth/callback")
        done = await http.get(f"{stack.url}/oauth/callback?code={code}")
        assert done.status_code == 200
        info = await installation(stack, stack.ghl.default_location())
        assert info is not None
        assert info.active


async def test_missing_code_is_400(tmp_path: Path) -> None:
    """A callback without a code is a 400 page and does not use up the state."""
    async with run_stack(tmp_path) as stack, httpx2.AsyncClient(timeout=10) as http:
        start = await http.get(f"{stack.url}/oauth/install")
        state = query_param(start.headers["location"], "state")
        done = await http.get(f"{stack.url}/oauth/callback?state={state}")
        assert done.status_code == 400
        assert "no authorization code" in done.text
        assert await count(stack, Installation) == 0
        assert await count(stack, OAuthState) == 1


async def test_denied_install_shows_highlevel_error(tmp_path: Path) -> None:
    """A callback carrying HighLevel's `error` shows it (escaped) on a 400 page."""
    async with run_stack(tmp_path) as stack, httpx2.AsyncClient(timeout=10) as http:
        done = await http.get(f"{stack.url}/oauth/callback?error=<b>access_denied</b>")
        assert done.status_code == 400
        assert "&lt;b&gt;access_denied&lt;/b&gt;" in done.text
        assert "<b>access_denied</b>" not in done.text


async def test_install_without_client_id_is_503(tmp_path: Path) -> None:
    """/oauth/install without GHL_CLIENT_ID is a 503 page naming the missing setting."""
    async with (
        run_stack(tmp_path, ghl_client_id=None) as stack,
        httpx2.AsyncClient(timeout=10) as http,
    ):
        start = await http.get(f"{stack.url}/oauth/install")
        assert start.status_code == 503
        assert start.headers["content-type"].startswith("text/html")
        assert "GHL_CLIENT_ID" in start.text
        assert await count(stack, OAuthState) == 0


async def test_install_without_public_url_is_503(tmp_path: Path) -> None:
    """/oauth/install without CASTBRIDGE_PUBLIC_URL is a 503 page naming the missing setting."""
    async with (
        run_stack(tmp_path, public_url=None) as stack,
        httpx2.AsyncClient(timeout=10) as http,
    ):
        start = await http.get(f"{stack.url}/oauth/install")
        assert start.status_code == 503
        assert "CASTBRIDGE_PUBLIC_URL" in start.text
        assert await count(stack, OAuthState) == 0


async def test_overlong_parameters_get_the_html_error_page(tmp_path: Path) -> None:
    """An overlong code, state or error in the callback link is a 400 HTML page, not JSON."""
    async with run_stack(tmp_path) as stack, httpx2.AsyncClient(timeout=10) as http:
        for query in (
            {"code": "c" * 5000},
            {"code": "good", "state": "s" * 600},
            {"error": "e" * 5000},
        ):
            done = await http.get(f"{stack.url}/oauth/callback?{urlencode(query)}")
            assert done.status_code == 400, query
            assert done.headers["content-type"].startswith("text/html")
            assert "Install did not complete" in done.text
            assert "e" * 201 not in done.text
        assert stack.ghl.token_calls["authorization_code"] == 0


async def test_highlevel_unreachable_during_exchange_is_a_503_page(tmp_path: Path) -> None:
    """If HighLevel does not answer the code exchange in time, the page says to retry later."""
    config = GHLSandboxConfig(token_latency=1.0)
    async with (
        run_stack(tmp_path, ghl_config=config, ghl_timeout_seconds=0.2) as stack,
        httpx2.AsyncClient(timeout=10) as http,
    ):
        done = await http.get(await callback_url(http, stack))
        assert done.status_code == 503
        assert done.headers["content-type"].startswith("text/html")
        assert "could not be reached" in done.text
        assert "did not accept the authorization code" not in done.text
        assert await count(stack, Installation) == 0


async def test_agency_install_when_highlevel_fails_listing_locations(tmp_path: Path) -> None:
    """An agency install whose location listing fails still completes: the page says castbridge
    keeps trying, and a durable job lists and mints every location once HighLevel answers. It
    used to need a person to install again."""
    config = GHLSandboxConfig(location_ids=AGENCY_LOCATIONS)
    async with (
        run_stack(
            tmp_path, ghl_config=config, retry_base_seconds=0.2, retry_cap_seconds=0.5
        ) as stack,
        httpx2.AsyncClient(timeout=10) as http,
    ):
        url = await callback_url(http, stack, agency=True)
        stack.ghl.fault_rate = 1.0  # HighLevel's API answers 503 (the token endpoint still works)
        done = await http.get(url)
        assert done.status_code == 200
        assert done.headers["content-type"].startswith("text/html")
        assert "keeps trying" in done.text
        rows = await installations(stack)
        assert [row.user_type for row in rows] == ["Company"]
        stack.ghl.fault_rate = 0.0

        async def all_minted() -> bool:
            rows = await installations(stack)
            return sorted(r.location_id for r in rows if r.location_id and r.active) == sorted(
                AGENCY_LOCATIONS
            )

        assert await eventually(all_minted, within=20)
