"""The app-events URL over real HTTP: INSTALL, UNINSTALL, other types, other apps, replays."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest

from castbridge.sandbox.ghl import GHLSandboxConfig
from castbridge.sandbox.stack import Stack, run_stack
from castbridge.store import repository as repo
from castbridge.store.models import (
    AuditEvent,
    Installation,
    LocationSettings,
    Message,
    SeenWebhook,
)
from tests.web.support import (
    audit,
    body_of,
    count,
    eventually,
    foreign_signature,
    installation,
    installations,
    jobs_of,
    message_row,
    payload,
    post_signed,
    raw_installation,
)

AGENCY_LOCATIONS = ["sbxLocationAgency001", "sbxLocationAgency002", "sbxLocationAgency003"]
SIGNATURES = {"ed25519": {"ed25519": True}, "legacy-rsa": {"ed25519": False, "rsa": True}}


async def _give_location_settings(stack: Stack, location_id: str) -> None:
    async with stack.resources.sessions.begin() as session:
        await repo.upsert_location_settings(
            session,
            location_id,
            api_key_enc=stack.resources.secret_box.encrypt("cast-key-of-this-location"),
            sender_id="MYBRAND",
        )


@pytest.mark.parametrize("scheme", list(SIGNATURES), ids=str)
async def test_install_event_is_accepted(tmp_path: Path, scheme: str) -> None:
    """A signed INSTALL (Ed25519, or legacy RSA on this URL) is 200 and audited."""
    async with run_stack(tmp_path) as stack, httpx2.AsyncClient(timeout=10) as http:
        event = stack.ghl.install_payload(location_id="sbxLocationNew000001")
        response = await stack.ghl.send_event(
            stack.events_url, event, http=http, **SIGNATURES[scheme]
        )
        assert response.status_code == 200, response.text
        assert response.json()["handled"] is True
        rows = await audit(stack, "install_event")
        assert [row.location_id for row in rows] == ["sbxLocationNew000001"]


@pytest.mark.parametrize("scheme", list(SIGNATURES), ids=str)
async def test_uninstall_event_is_accepted(tmp_path: Path, scheme: str) -> None:
    """A signed UNINSTALL (Ed25519, or legacy RSA on this URL) is 200 and uninstalls."""
    async with run_stack(tmp_path) as stack, httpx2.AsyncClient(timeout=10) as http:
        await stack.install()
        location_id = stack.ghl.default_location()
        event = stack.ghl.uninstall_payload(location_id=location_id)
        response = await stack.ghl.send_event(
            stack.events_url, event, http=http, **SIGNATURES[scheme]
        )
        assert response.status_code == 200, response.text
        assert response.json()["handled"] is True
        info = await installation(stack, location_id)
        assert info is not None
        assert info.state == "uninstalled"


async def test_legacy_rsa_refused_on_events_when_disabled(tmp_path: Path) -> None:
    """With GHL_ACCEPT_LEGACY_RSA=false an RSA-only UNINSTALL is 401 and changes nothing."""
    async with (
        run_stack(tmp_path, ghl_accept_legacy_rsa=False) as stack,
        httpx2.AsyncClient(timeout=10) as http,
    ):
        await stack.install()
        location_id = stack.ghl.default_location()
        event = stack.ghl.uninstall_payload(location_id=location_id)
        response = await stack.ghl.send_event(
            stack.events_url, event, http=http, ed25519=False, rsa=True
        )
        assert response.status_code == 401
        info = await installation(stack, location_id)
        assert info is not None
        assert info.active


@pytest.mark.parametrize("how", ["unsigned", "wrong-key", "tampered"])
async def test_unverifiable_event_is_401_and_changes_nothing(tmp_path: Path, how: str) -> None:
    """An UNINSTALL that is unsigned, signed by another key or altered is 401 and ignored."""
    async with run_stack(tmp_path) as stack, httpx2.AsyncClient(timeout=10) as http:
        await stack.install()
        location_id = stack.ghl.default_location()
        body = body_of(stack.ghl.uninstall_payload(location_id=location_id))
        headers = {"Content-Type": "application/json"}
        if how == "wrong-key":
            headers["X-GHL-Signature"] = foreign_signature(body)
        elif how == "tampered":
            headers.update(stack.ghl.sign(body))
            body = body.replace(b"UNINSTALL", b"UNINSTALX")
        response = await http.post(stack.events_url, content=body, headers=headers)
        assert response.status_code == 401
        info = await installation(stack, location_id)
        assert info is not None
        assert info.active
        assert await audit(stack, "uninstall") == []


@pytest.mark.parametrize("kind", ["OutboundMessage", "LocationUpdate", "PLAN_CHANGE"])
async def test_unknown_event_types_are_acknowledged_and_ignored(tmp_path: Path, kind: str) -> None:
    """Event types castbridge does not use are 200, not handled, and change nothing."""
    async with run_stack(tmp_path) as stack, httpx2.AsyncClient(timeout=10) as http:
        event = {**stack.ghl.uninstall_payload(location_id="sbxLocation000000001"), "type": kind}
        response = await stack.ghl.send_event(stack.events_url, event, http=http)
        assert response.status_code == 200
        assert response.json()["handled"] is False
        assert "ignored" in response.json()["detail"]
        assert await count(stack, AuditEvent) == 0


async def test_events_for_another_app_are_ignored(tmp_path: Path) -> None:
    """An UNINSTALL naming another app's appId is 200 and leaves our installation alone."""
    async with run_stack(tmp_path) as stack, httpx2.AsyncClient(timeout=10) as http:
        await stack.install()
        location_id = stack.ghl.default_location()
        event = {**stack.ghl.uninstall_payload(location_id=location_id), "appId": "someOtherApp01"}
        response = await stack.ghl.send_event(stack.events_url, event, http=http)
        assert response.status_code == 200
        assert response.json() == {
            "ok": True,
            "handled": False,
            "detail": "event for another app; ignored",
        }
        info = await installation(stack, location_id)
        assert info is not None
        assert info.active


async def test_event_without_type_is_422(tmp_path: Path) -> None:
    """A signed event body without `type` is 422 naming the field."""
    async with run_stack(tmp_path) as stack, httpx2.AsyncClient(timeout=10) as http:
        event = stack.ghl.uninstall_payload(location_id="sbxLocation000000001")
        del event["type"]
        response = await stack.ghl.send_event(stack.events_url, event, http=http)
        assert response.status_code == 422
        assert [problem["field"] for problem in response.json()["errors"]] == ["type"]


async def test_stale_event_is_401(tmp_path: Path) -> None:
    """A signed UNINSTALL whose timestamp is 10 minutes old (a replay) is 401 and ignored."""
    async with run_stack(tmp_path) as stack, httpx2.AsyncClient(timeout=10) as http:
        await stack.install()
        location_id = stack.ghl.default_location()
        event = {
            **stack.ghl.uninstall_payload(location_id=location_id),
            "timestamp": "2020-01-01T00:00:00.000Z",
        }
        response = await stack.ghl.send_event(stack.events_url, event, http=http)
        assert response.status_code == 401
        info = await installation(stack, location_id)
        assert info is not None
        assert info.active


async def test_replayed_event_webhook_id_is_ignored(tmp_path: Path) -> None:
    """The same signed UNINSTALL posted twice is handled once; the replay is 200 duplicate."""
    async with run_stack(tmp_path) as stack, httpx2.AsyncClient(timeout=10) as http:
        await stack.install()
        body = body_of(stack.ghl.uninstall_payload(location_id=stack.ghl.default_location()))
        first = await post_signed(http, stack, stack.events_url, body)
        second = await post_signed(http, stack, stack.events_url, body)
        assert first.status_code == second.status_code == 200
        assert first.json()["handled"] is True
        assert second.json() == {"ok": True, "handled": False, "detail": "duplicate webhookId"}
        assert len(await audit(stack, "uninstall")) == 1


async def test_location_uninstall_shreds_tokens_and_settings(tmp_path: Path) -> None:
    """UNINSTALL for a location nulls its tokens, drops its settings and keeps an audit row."""
    async with run_stack(tmp_path) as stack, httpx2.AsyncClient(timeout=10) as http:
        await stack.install()
        location_id = stack.ghl.default_location()
        await _give_location_settings(stack, location_id)
        before = await raw_installation(stack, "Location", location_id)
        event = stack.ghl.uninstall_payload(location_id=location_id)
        response = await stack.ghl.send_event(stack.events_url, event, http=http)
        assert response.status_code == 200
        row = await raw_installation(stack, "Location", location_id)
        assert row.access_token_enc is None
        assert row.refresh_token_enc is None
        assert row.state == "uninstalled"
        assert row.token_version > before.token_version
        assert await count(stack, LocationSettings) == 0
        (entry,) = await audit(stack, "uninstall")
        assert entry.location_id == location_id
        assert entry.detail == {"installations": 1, "settings_removed": 1}
        # The install's own audit row stays too.
        assert [row.location_id for row in await audit(stack, "install")] == [location_id]


async def test_delivery_after_uninstall_is_stored_failed_and_never_sent(tmp_path: Path) -> None:
    """After UNINSTALL a delivery is 200 but stored failed NOT_INSTALLED and never sent to Cast.

    Its report to HighLevel cannot be made (the token is gone): the report job ends dead with
    a clear reason instead of retrying forever.
    """
    config = GHLSandboxConfig(not_downstreamed_seconds=0.2)
    async with (
        run_stack(tmp_path, ghl_config=config, report_initial_delay_seconds=0.3) as stack,
        httpx2.AsyncClient(timeout=10) as http,
    ):
        await stack.install()
        location_id = stack.ghl.default_location()
        event = stack.ghl.uninstall_payload(location_id=location_id)
        assert (await stack.ghl.send_event(stack.events_url, event, http=http)).status_code == 200
        result = await stack.ghl.send_delivery_webhook(
            stack.delivery_url, phone="+639171234567", message="after uninstall", http=http
        )
        assert result.status_code == 200
        row = await message_row(stack, result.message_id)
        assert row is not None
        assert row.status == "failed"
        assert row.error_code == "NOT_INSTALLED"
        assert row.error_message is not None
        assert "uninstalled" in row.error_message
        assert "Reinstall" in row.error_message

        async def report_settled() -> bool:
            jobs = await jobs_of(stack, result.message_id)
            return bool(jobs) and jobs[0].state in ("dead", "done")

        assert await eventually(report_settled, within=10)
        (job,) = await jobs_of(stack, result.message_id)
        assert job.kind == "report"
        assert job.state == "dead"
        assert job.attempts == 1
        assert job.last_error is not None
        assert "not installed" in job.last_error
        assert location_id in job.last_error
        assert not stack.cast.messages
        assert stack.ghl.statuses(result.message_id) == []


async def test_delivery_for_never_installed_location_is_refused(tmp_path: Path) -> None:
    """A delivery for a location castbridge never installed is 200, stored failed, not sent."""
    async with (
        run_stack(tmp_path, run_worker=False) as stack,
        httpx2.AsyncClient(timeout=10) as http,
    ):
        sent = payload(stack, location_id="sbxLocationStranger1")
        response = await post_signed(http, stack, stack.delivery_url, body_of(sent))
        assert response.status_code == 200
        assert response.json()["status"] == "failed"
        assert "is not installed" in response.json()["error"]
        row = await message_row(stack, sent["messageId"])
        assert row is not None
        assert row.error_code == "NOT_INSTALLED"
        assert [job.kind for job in await jobs_of(stack, sent["messageId"])] == ["report"]


async def test_company_uninstall_disables_all_its_locations(tmp_path: Path) -> None:
    """UNINSTALL for an agency shreds the Company token and every one of its location tokens."""
    config = GHLSandboxConfig(location_ids=AGENCY_LOCATIONS)
    async with (
        run_stack(tmp_path, ghl_config=config) as stack,
        httpx2.AsyncClient(timeout=10) as http,
    ):
        await stack.install(agency=True)
        for location_id in AGENCY_LOCATIONS:
            await _give_location_settings(stack, location_id)
        event = stack.ghl.uninstall_payload(company_id=config.company_id)
        response = await stack.ghl.send_event(stack.events_url, event, http=http)
        assert response.status_code == 200
        assert response.json()["detail"] == "uninstalled (4 installation(s))"
        rows = await installations(stack)
        assert len(rows) == 4
        for info in rows:
            assert info.state == "uninstalled"
            assert not info.has_access_token
            assert not info.has_refresh_token
        assert await count(stack, LocationSettings) == 0
        (entry,) = await audit(stack, "uninstall")
        assert entry.company_id == config.company_id
        sent = payload(stack, location_id=AGENCY_LOCATIONS[1])
        refused = await post_signed(http, stack, stack.delivery_url, body_of(sent))
        assert refused.json()["status"] == "failed"


async def test_install_event_mints_a_location_token_from_the_agency_token(
    tmp_path: Path,
) -> None:
    """INSTALL for a new location of an agency whose Company token we hold mints its token."""
    config = GHLSandboxConfig(location_ids=AGENCY_LOCATIONS[:2])
    async with (
        run_stack(tmp_path, ghl_config=config) as stack,
        httpx2.AsyncClient(timeout=10) as http,
    ):
        await stack.install(agency=True)
        assert await count(stack, Installation) == 3
        stack.ghl.install(AGENCY_LOCATIONS[2])  # HighLevel: the agency adds a sub-account
        event = stack.ghl.install_payload(
            location_id=AGENCY_LOCATIONS[2], company_id=config.company_id
        )
        response = await stack.ghl.send_event(stack.events_url, event, http=http)
        assert response.status_code == 200
        assert response.json()["detail"] == "minted 1 location token(s) from the agency token"
        info = await installation(stack, AGENCY_LOCATIONS[2])
        assert info is not None
        assert info.active
        assert info.company_id == config.company_id
        row = await raw_installation(stack, "Location", AGENCY_LOCATIONS[2])
        assert row.access_token_enc is not None
        assert stack.ghl.grant_for(stack.resources.secret_box.decrypt(row.access_token_enc))
        assert await count(stack, Installation) == 4


async def test_install_event_for_installed_location_changes_nothing(tmp_path: Path) -> None:
    """INSTALL arriving after the OAuth callback finds the location installed and keeps it."""
    async with run_stack(tmp_path) as stack, httpx2.AsyncClient(timeout=10) as http:
        await stack.install()
        location_id = stack.ghl.default_location()
        before = await raw_installation(stack, "Location", location_id)
        event = stack.ghl.install_payload(location_id=location_id)
        response = await stack.ghl.send_event(stack.events_url, event, http=http)
        assert response.json()["detail"] == "location already installed"
        after = await raw_installation(stack, "Location", location_id)
        assert after.token_version == before.token_version


async def test_failed_mint_is_retryable(tmp_path: Path) -> None:
    """If HighLevel fails while minting on INSTALL, castbridge answers 5xx and the retry mints."""
    config = GHLSandboxConfig(location_ids=AGENCY_LOCATIONS[:1])
    async with (
        run_stack(tmp_path, ghl_config=config) as stack,
        httpx2.AsyncClient(timeout=10) as http,
    ):
        await stack.install(agency=True)
        stack.ghl.install(AGENCY_LOCATIONS[1])
        body = body_of(
            stack.ghl.install_payload(location_id=AGENCY_LOCATIONS[1], company_id=config.company_id)
        )
        stack.ghl.fault_rate = 1.0  # every HighLevel API call answers 503 for now
        failed = await post_signed(http, stack, stack.events_url, body)
        assert failed.status_code == 503
        assert "retry" in failed.json()["error"]
        assert await installation(stack, AGENCY_LOCATIONS[1]) is None
        assert await count(stack, SeenWebhook) == 0
        stack.ghl.fault_rate = 0.0
        retried = await post_signed(http, stack, stack.events_url, body)  # HighLevel's retry
        assert retried.status_code == 200, retried.text
        assert retried.json()["handled"] is True
        info = await installation(stack, AGENCY_LOCATIONS[1])
        assert info is not None
        assert info.active


async def test_uninstall_then_reinstall_reactivates(tmp_path: Path) -> None:
    """After UNINSTALL a new OAuth install makes the location active again and sends work."""
    async with (
        run_stack(tmp_path, run_worker=False) as stack,
        httpx2.AsyncClient(timeout=10) as http,
    ):
        await stack.install()
        location_id = stack.ghl.default_location()
        event = stack.ghl.uninstall_payload(location_id=location_id)
        await stack.ghl.send_event(stack.events_url, event, http=http)
        await stack.install()
        info = await installation(stack, location_id)
        assert info is not None
        assert info.active
        sent = payload(stack)
        response = await post_signed(http, stack, stack.delivery_url, body_of(sent))
        assert response.json()["status"] == "queued"
        assert await count(stack, Message) == 1


async def test_install_event_after_location_uninstall_mints_again(tmp_path: Path) -> None:
    """A location uninstalled and then re-added under an installed agency gets a fresh token."""
    config = GHLSandboxConfig(location_ids=AGENCY_LOCATIONS[:2])
    async with (
        run_stack(tmp_path, ghl_config=config) as stack,
        httpx2.AsyncClient(timeout=10) as http,
    ):
        await stack.install(agency=True)
        location_id = AGENCY_LOCATIONS[0]
        uninstall = stack.ghl.uninstall_payload(location_id=location_id)
        assert (await stack.ghl.send_event(stack.events_url, uninstall, http=http)).is_success
        install = stack.ghl.install_payload(location_id=location_id, company_id=config.company_id)
        response = await stack.ghl.send_event(stack.events_url, install, http=http)
        assert response.json()["detail"] == "minted 1 location token(s) from the agency token"
        info = await installation(stack, location_id)
        assert info is not None
        assert info.active


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(b"", "empty"), (b"[]", "JSON object"), (b"\xff", "UTF-8"), (b"{", "not valid JSON")],
    ids=["empty", "array", "not-utf8", "invalid-json"],
)
async def test_malformed_event_body_is_400(tmp_path: Path, raw: bytes, expected: str) -> None:
    """A signed app-event body that is not a UTF-8 JSON object is 400 with a JSON error."""
    async with run_stack(tmp_path) as stack, httpx2.AsyncClient(timeout=10) as http:
        response = await post_signed(http, stack, stack.events_url, raw)
        assert response.status_code == 400
        assert expected in response.json()["error"]
        assert await count(stack, AuditEvent) == 0
