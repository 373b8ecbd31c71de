"""The app-events URL over real HTTP: INSTALL, UNINSTALL, other types, other apps, replays."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx2
import pytest

from castbridge.sandbox.ghl import GHLSandboxConfig
from castbridge.sandbox.stack import Stack, run_stack, wait_for
from castbridge.store.models import (
    AuditEvent,
    GatewayAccount,
    Installation,
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
    """The location's own Cast account (a second sandbox key)."""
    from castbridge.accounts import configure_location

    await configure_location(
        stack.resources.store,
        stack.resources.gateways,
        stack.settings,
        stack.resources.box,
        location_id,
        gateway="cast",
        api_key="cast_" + "0a" * 32,
        sender_id="MYBRAND",
        verify=False,
    )


async def _active(stack: Stack, location_id: str) -> bool:
    info = await installation(stack, location_id)
    return info is not None and info.active


@pytest.mark.parametrize("scheme", list(SIGNATURES), ids=str)
async def test_install_event_is_accepted(tmp_path: Path, scheme: str) -> None:
    """A signed INSTALL (Ed25519, or legacy RSA where enabled) is 200 and audited."""
    async with (
        run_stack(tmp_path, ghl_accept_legacy_rsa=True) as stack,
        httpx2.AsyncClient(timeout=10) as http,
    ):
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
    """A signed UNINSTALL (Ed25519, or legacy RSA where enabled) is 200 and uninstalls."""
    async with (
        run_stack(tmp_path, ghl_accept_legacy_rsa=True) as stack,
        httpx2.AsyncClient(timeout=10) as http,
    ):
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


async def test_legacy_rsa_refused_on_events_by_default(tmp_path: Path) -> None:
    """X-WH-Signature's sunset (2026-09-01) has passed: by default an RSA-only UNINSTALL is 401
    and changes nothing (it used to be accepted unless turned off)."""
    async with run_stack(tmp_path) as stack, httpx2.AsyncClient(timeout=10) as http:
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


async def test_event_without_type_is_400(tmp_path: Path) -> None:
    """A signed event body without `type` can never succeed: 400 saying so."""
    async with run_stack(tmp_path) as stack, httpx2.AsyncClient(timeout=10) as http:
        event = stack.ghl.uninstall_payload(location_id="sbxLocation000000001")
        del event["type"]
        response = await stack.ghl.send_event(stack.events_url, event, http=http)
        assert response.status_code == 400
        assert "type" in response.json()["error"]


async def test_late_uninstall_retry_does_not_wipe_a_fresh_reinstall(tmp_path: Path) -> None:
    """An UNINSTALL sent before the current grant (HighLevel's retry of an event from before a
    quick reinstall, same bytes) is 200 and ignored; it used to be refused 401 for its age,
    and without the age check it would have uninstalled the fresh install."""
    async with run_stack(tmp_path) as stack, httpx2.AsyncClient(timeout=10) as http:
        await stack.install()
        location_id = stack.ghl.default_location()
        event = {
            **stack.ghl.uninstall_payload(location_id=location_id),
            "timestamp": "2020-01-01T00:00:00.000Z",
        }
        response = await stack.ghl.send_event(stack.events_url, event, http=http)
        assert response.status_code == 200
        assert response.json()["handled"] is False
        assert "older than the current install" in response.json()["detail"]
        assert await _active(stack, location_id)


async def test_uninstall_without_our_app_id_is_ignored(tmp_path: Path) -> None:
    """An UNINSTALL must carry our appId (ghl.md §5); one without it changes nothing."""
    async with run_stack(tmp_path) as stack, httpx2.AsyncClient(timeout=10) as http:
        await stack.install()
        location_id = stack.ghl.default_location()
        event = stack.ghl.uninstall_payload(location_id=location_id)
        del event["appId"]
        response = await stack.ghl.send_event(stack.events_url, event, http=http)
        assert response.status_code == 200
        assert response.json()["handled"] is False
        assert await _active(stack, location_id)


async def test_uninstall_without_timestamp_on_a_young_grant_disables_only(tmp_path: Path) -> None:
    """No timestamp and a grant younger than HighLevel's retry window: maybe a late retry, so
    the installation is disabled with its tokens kept instead of being wiped (ghl.md §4)."""
    async with run_stack(tmp_path) as stack, httpx2.AsyncClient(timeout=10) as http:
        await stack.install()
        location_id = stack.ghl.default_location()
        event = stack.ghl.uninstall_payload(location_id=location_id)
        del event["timestamp"]
        response = await stack.ghl.send_event(stack.events_url, event, http=http)
        assert response.status_code == 200
        row = await raw_installation(stack, "Location", location_id)
        assert row.state == "disabled"
        assert row.access_token_enc is not None


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
    """UNINSTALL for a location nulls its tokens, shreds its own gateway key (the account is
    retired) and keeps an audit row."""
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
        assert (
            await count(
                stack,
                GatewayAccount,
                GatewayAccount.api_key_enc != "",
                GatewayAccount.origin == "location",
            )
            == 0
        )
        (entry,) = await audit(stack, "uninstall")
        assert entry.location_id == location_id
        assert entry.detail == {"installations": 1, "accounts_retired": 1, "sends_cancelled": 0}
        # The install's own audit row stays too.
        assert [row.location_id for row in await audit(stack, "install")] == [location_id]


async def test_delivery_after_uninstall_is_stored_failed_and_never_sent(tmp_path: Path) -> None:
    """After UNINSTALL a delivery is 200 but stored failed NOT_INSTALLED and never sent to Cast.

    Its report to HighLevel cannot be made (the token is gone), so none is queued: it used to
    be queued and go dead (ghl.md §2 step 3: never queue a report that cannot succeed).
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

        assert await jobs_of(stack, result.message_id) == []
        assert not stack.cast.messages
        assert stack.ghl.statuses(result.message_id) == []


async def test_delivery_for_a_location_not_installed_yet_is_held_then_failed(
    tmp_path: Path,
) -> None:
    """A delivery for a location whose install has not finished (its OAuth callback still
    running) is held for CASTBRIDGE_INSTALL_WAIT_SECONDS, then failed locally without a report
    (there is no token to report with); it used to be failed at once."""
    async with (
        run_stack(tmp_path, install_wait_seconds=2.0) as stack,
        httpx2.AsyncClient(timeout=10) as http,
    ):
        sent = payload(stack, location_id="sbxLocationStranger1")
        response = await post_signed(http, stack, stack.delivery_url, body_of(sent))
        assert response.status_code == 200
        assert response.json()["status"] == "held"

        async def failed() -> bool:
            row = await message_row(stack, sent["messageId"])
            return row is not None and row.status == "failed"

        assert await eventually(failed, within=15)
        row = await message_row(stack, sent["messageId"])
        assert row is not None
        assert row.error_code == "NOT_INSTALLED"
        assert [job.kind for job in await jobs_of(stack, sent["messageId"])] == ["send"]
        assert not stack.cast.messages


async def test_held_delivery_goes_out_when_the_install_finishes(tmp_path: Path) -> None:
    """The same held delivery is sent as soon as the location's install completes."""
    async with run_stack(tmp_path) as stack, httpx2.AsyncClient(timeout=10) as http:
        location_id = stack.ghl.default_location()
        sent = payload(stack, location_id=location_id)
        response = await post_signed(http, stack, stack.delivery_url, body_of(sent))
        assert response.json()["status"] == "held"
        await stack.install()
        assert await wait_for(
            lambda: stack.ghl.statuses(sent["messageId"]) == ["delivered"], within=20
        )


async def test_company_uninstall_disables_all_its_locations(tmp_path: Path) -> None:
    """UNINSTALL for an agency shreds the Company token and every one of its location tokens."""
    config = GHLSandboxConfig(location_ids=AGENCY_LOCATIONS)
    async with (
        run_stack(tmp_path, ghl_config=config) as stack,
        httpx2.AsyncClient(timeout=10) as http,
    ):
        await stack.install(agency=True)
        for location_id in AGENCY_LOCATIONS:
            assert await eventually(lambda lid=location_id: _active(stack, lid), within=15)
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
        assert (
            await count(
                stack,
                GatewayAccount,
                GatewayAccount.api_key_enc != "",
                GatewayAccount.origin == "location",
            )
            == 0
        )
        (entry,) = await audit(stack, "uninstall")
        assert entry.company_id == config.company_id
        sent = payload(stack, location_id=AGENCY_LOCATIONS[1])
        refused = await post_signed(http, stack, stack.delivery_url, body_of(sent))
        assert refused.json()["status"] == "failed"


async def test_install_event_mints_a_location_token_from_the_agency_token(
    tmp_path: Path,
) -> None:
    """INSTALL for a new location of an agency whose Company token we hold mints its token
    (in a durable job)."""
    config = GHLSandboxConfig(location_ids=AGENCY_LOCATIONS[:2])
    async with (
        run_stack(tmp_path, ghl_config=config) as stack,
        httpx2.AsyncClient(timeout=10) as http,
    ):
        await stack.install(agency=True)
        for location_id in AGENCY_LOCATIONS[:2]:
            assert await eventually(lambda lid=location_id: _active(stack, lid), within=15)
        assert await count(stack, Installation) == 3
        stack.ghl.install(AGENCY_LOCATIONS[2])  # HighLevel: the agency adds a sub-account
        event = stack.ghl.install_payload(
            location_id=AGENCY_LOCATIONS[2], company_id=config.company_id
        )
        response = await stack.ghl.send_event(stack.events_url, event, http=http)
        assert response.status_code == 200
        assert "queued for minting" in response.json()["detail"]
        assert await eventually(lambda: _active(stack, AGENCY_LOCATIONS[2]), within=15)
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


async def test_failed_mint_is_retried_by_its_job(tmp_path: Path) -> None:
    """If HighLevel fails while minting on INSTALL, the event is still acknowledged (a 5xx is
    final for HighLevel's retries, ghl.md §2) and the mint job retries until it works."""
    config = GHLSandboxConfig(location_ids=AGENCY_LOCATIONS[:1])
    async with (
        run_stack(tmp_path, ghl_config=config) as stack,
        httpx2.AsyncClient(timeout=10) as http,
    ):
        await stack.install(agency=True)
        assert await eventually(lambda: _active(stack, AGENCY_LOCATIONS[0]), within=15)
        stack.ghl.install(AGENCY_LOCATIONS[1])
        body = body_of(
            stack.ghl.install_payload(location_id=AGENCY_LOCATIONS[1], company_id=config.company_id)
        )
        stack.ghl.fault_rate = 1.0  # every HighLevel API call answers 503 for now
        answered = await post_signed(http, stack, stack.events_url, body)
        assert answered.status_code == 200
        assert await count(stack, SeenWebhook) == 1
        await asyncio.sleep(1.5)
        assert not await _active(stack, AGENCY_LOCATIONS[1])
        stack.ghl.fault_rate = 0.0
        assert await eventually(lambda: _active(stack, AGENCY_LOCATIONS[1]), within=20)


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
        assert await eventually(lambda: _active(stack, location_id), within=15)
        uninstall = stack.ghl.uninstall_payload(location_id=location_id)
        assert (await stack.ghl.send_event(stack.events_url, uninstall, http=http)).is_success
        install = stack.ghl.install_payload(location_id=location_id, company_id=config.company_id)
        response = await stack.ghl.send_event(stack.events_url, install, http=http)
        assert "queued for minting" in response.json()["detail"]
        assert await eventually(lambda: _active(stack, location_id), within=15)


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


@pytest.mark.parametrize("kind", ["InboundMessage", "OutboundMessage"])
async def test_events_about_messages_castbridge_added_are_never_acted_on(
    tmp_path: Path, kind: str
) -> None:
    """Loop guard (ghl.md §14): HighLevel echoing a message castbridge itself added, as an
    InboundMessage or OutboundMessage event with our conversationProviderId, is acknowledged,
    counted as our own, and stores or sends nothing."""
    from castbridge import metrics

    async with run_stack(tmp_path) as stack, httpx2.AsyncClient(timeout=10) as http:
        await stack.install()
        provider_id = stack.settings.ghl_conversation_provider_id
        assert provider_id
        own = metrics.WEBHOOKS.labels("events", "own_message")
        before = own._value.get()
        event = {
            **stack.ghl.uninstall_payload(location_id=stack.ghl.default_location()),
            "type": kind,
            "conversationProviderId": provider_id,
            "messageType": "SMS",
            "direction": "inbound" if kind == "InboundMessage" else "outbound",
            "body": "Yes, 3pm works",
            "phone": "+639171234567",
        }
        response = await stack.ghl.send_event(stack.events_url, event, http=http)
        assert response.status_code == 200
        assert response.json()["handled"] is False
        assert "castbridge added itself" in response.json()["detail"]
        assert own._value.get() == before + 1
        assert await count(stack, Message) == 0
        assert stack.cast.messages == {}
