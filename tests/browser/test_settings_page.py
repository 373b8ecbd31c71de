"""The settings page in a real browser, framed by the HighLevel sandbox's Custom Page host: the
real postMessage handshake, configuring a gateway key, a test SMS seen delivered, the read-only
view for a `user`, the agency view, and the message shown when HighLevel never answers."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from urllib.parse import urlencode

from playwright.async_api import Browser, FrameLocator, Page, Response, expect

from castbridge.sandbox.cast import DEFAULT_API_KEY, DEFAULT_SENDER_ID
from castbridge.sandbox.ghl import GHLSandboxConfig
from castbridge.sandbox.ghl.custom_page import USERS
from castbridge.sandbox.stack import Stack, run_stack

DOCS = Path(__file__).resolve().parents[2] / "docs"
AGENCY = ["sbxLocationAgency001", "sbxLocationAgency002"]


async def _open(
    browser: Browser,
    stack: Stack,
    *,
    height: int = 1900,
    answers: list[Response] | None = None,
    **query: str,
) -> tuple[Page, FrameLocator]:
    page = await browser.new_page(viewport={"width": 1100, "height": height})
    if answers is not None:
        keep = answers

        def remember(response: Response) -> None:
            keep.append(response)

        page.on("response", remember)
    await page.goto(f"{stack.custom_page_url}/view?{urlencode(query)}")
    return page, page.frame_locator("#custom-page")


async def _screenshot(page: Page, tmp_path: Path, name: str) -> None:
    """Kept with the test run; copied into docs/ when CASTBRIDGE_UPDATE_SCREENSHOTS=1."""
    target = tmp_path / name
    await page.screenshot(path=str(target))
    assert target.stat().st_size > 10_000
    if os.environ.get("CASTBRIDGE_UPDATE_SCREENSHOTS") == "1":
        shutil.copy(target, DOCS / name)


async def test_an_admin_configures_a_gateway_and_sees_the_test_sms_delivered(
    browser: Browser, tmp_path: Path
) -> None:
    async with run_stack(tmp_path / "stack") as stack:
        await stack.install()
        location = stack.ghl.default_location()
        await stack.ghl.send_delivery_webhook(
            stack.delivery_url, phone="+639171234567", message="a"
        )
        answers: list[Response] = []
        page, frame = await _open(
            browser, stack, answers=answers, role="admin", context="location", location=location
        )
        await expect(frame.get_by_text("Ada Admin · admin")).to_be_visible(timeout=15_000)
        await frame.get_by_label("Gateway", exact=True).select_option(label="Cast.ph")
        await frame.get_by_label("API key", exact=True).fill("cast_" + "0" * 64)
        await frame.get_by_role("button", name="Save", exact=True).click()
        await expect(frame.locator("#config-result")).to_contain_text(
            "Cast.ph refused the key", timeout=15_000
        )
        await frame.get_by_label("API key", exact=True).fill(DEFAULT_API_KEY)
        await frame.get_by_label("Sender ID", exact=True).fill(DEFAULT_SENDER_ID)
        await frame.get_by_label("Channel", exact=True).select_option("sms")
        await frame.get_by_label("Country", exact=True).fill("PH")
        await frame.get_by_role("button", name="Save", exact=True).click()
        await expect(frame.locator("#config-result")).to_contain_text(
            "Saved. The key was checked", timeout=15_000
        )
        await expect(frame.get_by_label("API key", exact=True)).to_have_value("")
        await expect(frame.get_by_label("API key", exact=True)).to_have_attribute(
            "placeholder", "saved (hidden); paste a new key to replace it"
        )
        await frame.get_by_label("Test number", exact=True).fill("09171234567")
        await frame.get_by_role("button", name="Send test SMS", exact=True).click()
        status = frame.locator("#test-status")
        await expect(status).to_have_attribute("data-status", "accepted", timeout=15_000)
        await expect(status).to_have_text("Test SMS: delivered", timeout=30_000)
        content = await page.content() + await frame.locator("body").inner_html()
        assert DEFAULT_API_KEY not in content
        await expect(frame.locator("#balance")).to_contain_text("credits")
        await _screenshot(page, tmp_path, "settings-location.png")
        await _nothing_secret(stack, answers)


async def _nothing_secret(stack: Stack, answers: list[Response]) -> None:
    """Every JSON answer castbridge gave the page: no key, token, secret or context id."""
    user_id, _name, email = USERS["admin"]
    secrets = {
        DEFAULT_API_KEY,
        *(stack.gateway_keys or {}).values(),
        stack.ghl.config.sso_key,
        *stack.ghl.access_tokens,
        *stack.ghl.refresh_tokens,
        user_id,
        email,
        stack.ghl.config.company_id,
    }
    checked = 0
    for answer in answers:
        content_type = answer.headers.get("content-type", "")
        if not answer.url.startswith(stack.url) or "json" not in content_type:
            continue
        text = await answer.text()
        checked += 1
        for secret in secrets:
            assert secret not in text, (answer.url, secret[:10])
    assert checked >= 6


async def test_a_user_gets_the_read_only_view(browser: Browser, tmp_path: Path) -> None:
    async with run_stack(tmp_path / "stack") as stack:
        await stack.install()
        location = stack.ghl.default_location()
        await stack.use_gateway(location, "cast")
        page, frame = await _open(
            browser, stack, role="user", context="location", location=location
        )
        await expect(frame.locator("#readonly-note")).to_be_visible(timeout=15_000)
        await expect(frame.get_by_text("Uma User · user (read-only)")).to_be_visible()
        for label in ("Gateway", "API key", "Sender ID", "Channel", "Country", "Test number"):
            await expect(frame.get_by_label(label, exact=True)).to_be_disabled()
        await expect(frame.get_by_role("button", name="Save", exact=True)).to_be_disabled()
        await expect(frame.get_by_role("button", name="Send test SMS", exact=True)).to_be_disabled()
        await page.close()


async def test_the_agency_view_opens_a_sub_account(browser: Browser, tmp_path: Path) -> None:
    async with run_stack(
        tmp_path / "stack", ghl_config=GHLSandboxConfig(location_ids=AGENCY)
    ) as stack:
        await stack.install(agency=True)
        from tests.web.support import eventually

        async def minted() -> bool:
            from castbridge.store.installations import get_installation

            async with stack.resources.store.read() as session:
                infos = [await get_installation(session, loc) for loc in AGENCY]
            return all(info is not None and info.active for info in infos)

        assert await eventually(minted, within=20)
        await stack.use_gateway(AGENCY[0], "cast")
        page, frame = await _open(browser, stack, height=520, role="admin", context="agency")
        await expect(
            frame.get_by_role("heading", name="Sub-accounts using castbridge")
        ).to_be_visible(timeout=15_000)
        await expect(frame.get_by_role("cell", name=AGENCY[1], exact=True)).to_be_visible()
        await _screenshot(page, tmp_path, "settings-agency.png")
        await frame.get_by_role("button", name=f"Open {AGENCY[0]}").click()
        await expect(frame.get_by_label("Gateway", exact=True)).to_have_value(
            "cast", timeout=15_000
        )
        await frame.get_by_role("button", name="← All sub-accounts").click()
        await expect(frame.get_by_role("cell", name=AGENCY[1], exact=True)).to_be_visible(
            timeout=15_000
        )
        await page.close()


async def test_without_an_answer_from_highlevel_the_page_says_why(
    browser: Browser, tmp_path: Path
) -> None:
    """No Shared Secret yet (HighLevel stays silent) or opened outside HighLevel: a clear
    message, no spinner forever."""
    async with run_stack(tmp_path / "stack") as stack:
        await stack.install()
        page, frame = await _open(browser, stack, role="admin", silent="1")
        await expect(frame.locator("#status")).to_contain_text(
            "could not get your HighLevel user details", timeout=15_000
        )
        await expect(frame.locator("#status")).to_contain_text("Shared Secret")
        direct = await browser.new_page()
        await direct.goto(f"{stack.url}/app/settings")
        await expect(direct.locator("#status")).to_contain_text(
            "Open this page from the castbridge"
        )
        await page.close()
        await direct.close()


async def test_an_expired_session_is_renewed_by_a_new_handshake(
    browser: Browser, tmp_path: Path
) -> None:
    """On a 401 the page asks HighLevel again once and retries: the user never sees it."""
    async with run_stack(tmp_path / "stack", settings_session_seconds=2) as stack:
        await stack.install()
        location = stack.ghl.default_location()
        await stack.use_gateway(location, "cast")
        answers: list[Response] = []
        page, frame = await _open(
            browser, stack, answers=answers, role="admin", context="location", location=location
        )
        await expect(frame.get_by_label("Sender ID", exact=True)).to_be_enabled(timeout=15_000)
        await asyncio.sleep(2.5)
        await frame.get_by_label("Sender ID", exact=True).fill("CASTBRIDGE")
        await frame.get_by_role("button", name="Save", exact=True).click()
        await expect(frame.locator("#config-result")).to_have_text("Saved.", timeout=15_000)
        statuses = [(a.url.split("/app/", 1)[-1], a.status) for a in answers if "/app/" in a.url]
        assert ("api/config", 401) in statuses
        assert statuses.count(("session", 200)) == 2
        assert ("api/config", 200) in statuses
        await page.close()
