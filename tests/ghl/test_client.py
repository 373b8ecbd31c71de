"""GHLClient against the HighLevel sandbox over loopback; every request is checked by the spec."""

from __future__ import annotations

import asyncio
import socket
import time
from datetime import UTC, datetime

import httpx2
import pytest

from castbridge.ghl import errors
from castbridge.ghl.auth import TokenProvider
from castbridge.ghl.client import GHLClient, app_id_from_client_id
from castbridge.ghl.models import StatusErrorDetail
from castbridge.limits import BlockingPacer, Limit, LocalPacer, Throttled
from castbridge.store import installations
from tests.ghl.conftest import EXPIRED, REDIRECT_URI, GHLStack, StackStarter
from tests.openapi_check import OpenAPIChecker

PHONE = "+639171234567"


async def test_exchange_location_code(ghl: GHLStack) -> None:
    """A location install's code exchanges for a Location token pair that is stored encrypted."""
    tokens = await ghl.install()
    assert tokens.user_type == "Location"
    assert tokens.location_id == ghl.location_id
    assert tokens.company_id == ghl.sandbox.config.company_id
    assert tokens.refresh_token
    info = await ghl.grant()
    assert info.state == "active"
    assert info.has_refresh_token
    assert info.token_version == 1


async def test_code_is_single_use(ghl: GHLStack) -> None:
    """Exchanging the same code twice fails the second time (not a reinstall case)."""
    code = ghl.sandbox.issue_code(redirect_uri=REDIRECT_URI, location_id=ghl.location_id)
    await ghl.client.exchange_code(code, REDIRECT_URI)
    with pytest.raises(errors.PermanentRequestError) as caught:
        await ghl.client.exchange_code(code, REDIRECT_URI)
    assert caught.value.status_code == 400
    assert caught.value.trace_id


async def test_wrong_client_secret_is_refused(ghl: GHLStack) -> None:
    """Bad client credentials are a PermanentRequestError, never a token leak in the error."""
    cfg = ghl.sandbox.config
    client = GHLClient(
        ghl.http,
        base_url=ghl.url,
        client_id=cfg.client_id,
        client_secret="wrong-secret",
        token_provider=ghl.provider,
        pacer=ghl.pacer,
        limit=ghl.limit,
    )
    code = ghl.sandbox.issue_code(redirect_uri=REDIRECT_URI)
    with pytest.raises(errors.PermanentRequestError) as caught:
        await client.exchange_code(code, REDIRECT_URI)
    assert "wrong-secret" not in str(caught.value)


async def test_company_install_mints_location_tokens(start_stack: StackStarter) -> None:
    """An agency install: Company token, installed locations over pages, one token per location."""
    locations = [f"sbxLocation00000000{n}" for n in range(5)]
    ghl = await start_stack(location_ids=locations)
    code = ghl.sandbox.issue_code(redirect_uri=REDIRECT_URI, user_type="Company")
    company = await ghl.client.exchange_code(code, REDIRECT_URI, user_type="Company")
    assert company.user_type == "Company"
    assert company.location_id is None
    assert sorted(company.approved_locations) == locations
    await ghl.save(company)

    found = await ghl.client.installed_locations(
        company.access_token, ghl.sandbox.config.company_id, page_size=2
    )
    assert sorted(location.id for location in found) == locations
    assert ghl.sandbox.requests[ghl.sandbox.config.company_id] == 3  # pages of 2, 2, 1

    for location in found:
        minted = await ghl.client.location_token(
            company.access_token, ghl.sandbox.config.company_id, location.id
        )
        assert minted.location_id == location.id
        await ghl.save(minted, company_id=ghl.sandbox.config.company_id)
    async with ghl.sessions() as session:
        rows = await installations.list_installations(session)
    assert [row.user_type for row in rows].count("Location") == 5
    assert all(row.company_id == ghl.sandbox.config.company_id for row in rows)
    # The minted token works for the location's calls.
    assert await ghl.client.find_contact_by_phone(locations[0], PHONE) is None


async def test_stored_company_token_mints_and_lists(start_stack: StackStarter) -> None:
    """With the Company grant stored (expired), listing and minting refresh it once and work."""
    ghl = await start_stack(location_ids=["sbxLocationA00000001", "sbxLocationB00000001"])
    company_id = ghl.sandbox.config.company_id
    code = ghl.sandbox.issue_code(redirect_uri=REDIRECT_URI, user_type="Company")
    await ghl.save(await ghl.client.exchange_code(code, REDIRECT_URI), expires_in=EXPIRED)
    found = await ghl.client.installed_locations(None, company_id)
    assert {location.id for location in found} == {"sbxLocationA00000001", "sbxLocationB00000001"}
    minted = await ghl.client.mint_location_token(company_id, "sbxLocationB00000001")
    assert minted.location_id == "sbxLocationB00000001"
    assert ghl.sandbox.refresh_count(company_id) == 1


async def test_status_update_waits_out_the_403_window(start_stack: StackStarter) -> None:
    """Just after the delivery webhook a status update is 403 (retryable, no refresh), later 200."""
    ghl = await start_stack(not_downstreamed_seconds=0.3)
    await ghl.install()
    payload = ghl.sandbox.delivery_payload(phone=PHONE, message="hi")
    message_id = payload["messageId"]

    with pytest.raises(errors.NotDownstreamedError) as caught:
        await ghl.client.update_message_status(ghl.location_id, message_id, "delivered")
    assert caught.value.retryable
    assert caught.value.status_code == 403
    assert caught.value.trace_id
    assert ghl.sandbox.refresh_count() == 0  # a 403 never refreshes the token

    await asyncio.sleep(0.35)
    result = await ghl.client.update_message_status(ghl.location_id, message_id, "delivered")
    assert result.message_id == message_id
    assert result.status == "delivered"
    assert ghl.sandbox.statuses(message_id) == ["delivered"]
    assert (await ghl.grant()).token_version == 1


async def test_legacy_401_window_is_not_a_token_problem(start_stack: StackStarter) -> None:
    """The window's old 401 form ("No conversation provider found") never triggers a refresh."""
    ghl = await start_stack(not_downstreamed_seconds=30.0, not_downstreamed_status=401)
    await ghl.install()
    message_id = ghl.sandbox.delivery_payload(phone=PHONE, message="hi")["messageId"]
    with pytest.raises(errors.NotDownstreamedError) as caught:
        await ghl.client.update_message_status(ghl.location_id, message_id, "delivered")
    assert caught.value.status_code == 401
    assert caught.value.retryable
    assert ghl.sandbox.refresh_count() == 0
    assert ghl.sandbox.messages[message_id].status_calls == 1  # not resent either


async def test_failed_status_carries_error_detail(ghl: GHLStack) -> None:
    """A failed status sends the ErrorDto (code, type, message); a dict is accepted too."""
    await ghl.install()
    first = ghl.sandbox.delivery_payload(phone=PHONE, message="a")["messageId"]
    second = ghl.sandbox.delivery_payload(phone=PHONE, message="b")["messageId"]
    detail = StatusErrorDetail(code="INSUFFICIENT_CREDITS", message="Cast.ph: no credits")
    await ghl.client.update_message_status(ghl.location_id, first, "failed", detail)
    await ghl.client.update_message_status(
        ghl.location_id, second, "failed", {"code": "X", "type": "saas", "message": "bad"}
    )
    assert ghl.sandbox.messages[first].status_errors == [
        {"code": "INSUFFICIENT_CREDITS", "type": "saas", "message": "Cast.ph: no credits"}
    ]
    assert ghl.sandbox.statuses(second) == ["failed"]


@pytest.mark.parametrize("status", ["sent", "queued", ""])
async def test_invalid_status_is_refused_before_sending(ghl: GHLStack, status: str) -> None:
    """`sent` and other non-HighLevel statuses raise without any request."""
    await ghl.install()
    message_id = ghl.sandbox.delivery_payload(phone=PHONE, message="x")["messageId"]
    with pytest.raises(errors.PermanentRequestError):
        await ghl.client.update_message_status(ghl.location_id, message_id, status)
    assert ghl.sandbox.messages[message_id].status_calls == 0


async def test_401_refreshes_once_and_resends(ghl: GHLStack) -> None:
    """A revoked access token: one refresh, the request is resent once and succeeds."""
    await ghl.install()
    ghl.sandbox.revoke_access_tokens(ghl.location_id)
    message_id = ghl.sandbox.delivery_payload(phone=PHONE, message="x")["messageId"]
    await ghl.client.update_message_status(ghl.location_id, message_id, "delivered")
    assert ghl.sandbox.refresh_count(ghl.location_id) == 1
    assert ghl.sandbox.statuses(message_id) == ["delivered"]
    assert (await ghl.grant()).token_version == 2


async def test_401_after_refresh_raises_without_looping(start_stack: StackStarter) -> None:
    """If the fresh token is also refused, AuthError: exactly one refresh, no loop."""
    ghl = await start_stack(access_token_ttl=0.001)
    await ghl.install(expires_in=86399)  # our row believes the token is good for a day
    with pytest.raises(errors.AuthError) as caught:
        await ghl.client.find_contact_by_phone(ghl.location_id, PHONE)
    assert not caught.value.retryable
    assert ghl.sandbox.refresh_count(ghl.location_id) == 1
    assert ghl.sandbox.requests[ghl.location_id] == 0  # 401s never reach the limiter count


async def test_429_maps_to_rate_limited_and_pauses_location(start_stack: StackStarter) -> None:
    """Over the location's burst: RateLimitedError with the window as retry_after; bucket paused."""
    ghl = await start_stack(rate_limit_requests=3, rate_limit_window=0.4)
    await ghl.install()
    for _ in range(3):
        await ghl.client.find_contact_by_phone(ghl.location_id, PHONE)
    with pytest.raises(errors.RateLimitedError) as caught:
        await ghl.client.find_contact_by_phone(ghl.location_id, PHONE)
    assert caught.value.retryable
    assert caught.value.retry_after == pytest.approx(0.4)
    assert ghl.sandbox.rate_limited[ghl.location_id] == 1
    with pytest.raises(Throttled) as paused:  # the bucket is paused for the window
        await ghl.pacer.take(f"ghl:{ghl.location_id}", ghl.limit)
    assert paused.value.wait >= 0.3
    await asyncio.sleep(paused.value.wait)
    await ghl.client.find_contact_by_phone(ghl.location_id, PHONE)  # and then it works again


async def test_429_honours_retry_after_header(start_stack: StackStarter) -> None:
    """When HighLevel sends Retry-After it wins over the interval header."""
    ghl = await start_stack(rate_limit_requests=1, rate_limit_window=30.0, send_retry_after=True)
    await ghl.install()
    await ghl.client.find_contact_by_phone(ghl.location_id, PHONE)
    with pytest.raises(errors.RateLimitedError) as caught:
        await ghl.client.find_contact_by_phone(ghl.location_id, PHONE)
    assert caught.value.retry_after is not None
    assert 1.0 <= caught.value.retry_after <= 30.0


async def test_5xx_maps_to_unavailable(start_stack: StackStarter) -> None:
    """A 503 from HighLevel is a retryable UnavailableError."""
    ghl = await start_stack(fault_rate=1.0)
    await ghl.install()
    with pytest.raises(errors.UnavailableError) as caught:
        await ghl.client.find_contact_by_phone(ghl.location_id, PHONE)
    assert caught.value.retryable
    assert caught.value.status_code == 503


async def test_network_error_maps_to_unavailable(ghl: GHLStack) -> None:
    """Nobody listening: UnavailableError (retryable), and no URL or phone in the message."""
    await ghl.install()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = ghl.sandbox.config
    async with httpx2.AsyncClient(timeout=2.0) as http:
        client = GHLClient(
            http,
            base_url=f"http://127.0.0.1:{port}",
            client_id=cfg.client_id,
            client_secret=cfg.client_secret,
            token_provider=ghl.provider,
            pacer=ghl.pacer,
            limit=ghl.limit,
        )
        with pytest.raises(errors.UnavailableError) as caught:
            await client.find_contact_by_phone(ghl.location_id, PHONE)
    assert caught.value.retryable
    assert "639171234567" not in str(caught.value)


async def test_unknown_location_is_not_installed(ghl: GHLStack) -> None:
    """A call for a location we hold no token for raises NotInstalledError without a request."""
    with pytest.raises(errors.NotInstalledError):
        await ghl.client.find_contact_by_phone("neverInstalled000001", PHONE)
    assert sum(ghl.sandbox.requests.values()) == 0


async def test_contact_lookup_then_upsert(ghl: GHLStack) -> None:
    """Duplicate search answers {"contact": null}, upsert creates then updates; never any tags."""
    await ghl.install()
    assert await ghl.client.find_contact_by_phone(ghl.location_id, PHONE) is None
    created = await ghl.client.upsert_contact(ghl.location_id, PHONE, source="castbridge")
    assert created.new is True
    found = await ghl.client.find_contact_by_phone(ghl.location_id, PHONE)
    assert found is not None
    assert found.id == created.contact.id
    again = await ghl.client.upsert_contact(ghl.location_id, PHONE, name="Juan")
    assert again.new is False
    assert again.contact.id == created.contact.id
    assert ghl.sandbox.upsert_bodies
    assert all("tags" not in body for body in ghl.sandbox.upsert_bodies)


async def test_inbound_message_flow(ghl: GHLStack) -> None:
    """Contact, conversation search/create, then an inbound SMS that HighLevel stores as inbound."""
    await ghl.install()
    contact = (await ghl.client.upsert_contact(ghl.location_id, PHONE)).contact
    assert await ghl.client.search_conversations(ghl.location_id, contact.id) == []
    conversation = await ghl.client.create_conversation(ghl.location_id, contact.id)
    assert [c.id for c in await ghl.client.search_conversations(ghl.location_id, contact.id)] == [
        conversation.id
    ]
    result = await ghl.client.add_inbound_message(
        ghl.location_id,
        contact_id=contact.id,
        conversation_id=conversation.id,
        conversation_provider_id=ghl.sandbox.config.conversation_provider_id,
        message="Yes, I'll come tomorrow",
        alt_id="cast-123",
        date=datetime(2026, 9, 1, 3, 15, tzinfo=UTC),
    )
    stored = ghl.sandbox.messages[result.message_id]
    assert stored.direction == "inbound"
    assert stored.alt_id == "cast-123"
    assert stored.conversation_id == conversation.id
    assert ghl.sandbox.inbound_bodies[-1]["direction"] == "inbound"
    assert ghl.sandbox.inbound_bodies[-1]["type"] == "SMS"

    message = await ghl.client.get_message(ghl.location_id, result.message_id)
    assert message.direction == "inbound"
    assert message.alt_id == "cast-123"


async def test_inbound_2xx_without_message_id_is_an_error(start_stack: StackStarter) -> None:
    """HighLevel's 201-with-empty-body (issue #70) raises a retryable UnexpectedResponseError."""
    ghl = await start_stack(drop_inbound=True)
    await ghl.install()
    contact = (await ghl.client.upsert_contact(ghl.location_id, PHONE)).contact
    with pytest.raises(errors.UnexpectedResponseError) as caught:
        await ghl.client.add_inbound_message(
            ghl.location_id,
            contact_id=contact.id,
            conversation_provider_id=ghl.sandbox.config.conversation_provider_id,
            message="hello",
            alt_id="cast-1",
            date=datetime.now(UTC),
        )
    assert caught.value.retryable
    assert caught.value.status_code == 201


async def test_get_message_of_a_delivery(ghl: GHLStack) -> None:
    """GET /conversations/messages/{id} returns the outbound message HighLevel sent us."""
    await ghl.install()
    payload = ghl.sandbox.delivery_payload(phone=PHONE, message="hello")
    message = await ghl.client.get_message(ghl.location_id, payload["messageId"])
    assert message.id == payload["messageId"]
    assert message.direction == "outbound"
    assert message.conversation_provider_id == ghl.sandbox.config.conversation_provider_id


async def test_client_paces_calls_per_location(ghl: GHLStack) -> None:
    """Each location call takes a token from that location's bucket: 5/s, burst 1 paces 3 calls."""
    await ghl.install()
    client = GHLClient(
        ghl.http,
        base_url=ghl.url,
        client_id=ghl.sandbox.config.client_id,
        client_secret=ghl.sandbox.config.client_secret,
        token_provider=ghl.provider,
        pacer=BlockingPacer(LocalPacer()),
        limit=Limit(5.0, 1.0),
    )
    started = time.monotonic()
    for _ in range(3):
        await client.find_contact_by_phone(ghl.location_id, PHONE)
    assert time.monotonic() - started >= 0.35


async def test_worker_pacing_refuses_before_sending(ghl: GHLStack) -> None:
    """With the worker's non-waiting pacer an empty location bucket raises Throttled and
    nothing reaches HighLevel: the job is rescheduled instead of holding a slot."""
    await ghl.install()
    client = ghl.make_client().with_pacer(LocalPacer())
    client = GHLClient(
        ghl.http,
        base_url=ghl.url,
        client_id=ghl.sandbox.config.client_id,
        client_secret=ghl.sandbox.config.client_secret,
        token_provider=ghl.provider,
        pacer=LocalPacer(),
        limit=Limit(1.0, 1.0),
    )
    await client.find_contact_by_phone(ghl.location_id, PHONE)
    before = ghl.sandbox.requests[ghl.location_id]
    with pytest.raises(Throttled):
        await client.find_contact_by_phone(ghl.location_id, PHONE)
    assert ghl.sandbox.requests[ghl.location_id] == before


async def test_from_settings_and_missing_credentials(ghl: GHLStack, settings: object) -> None:
    """from_settings builds a working client; without GHL credentials token calls refuse."""
    from castbridge.config import Settings

    assert isinstance(settings, Settings)
    client = GHLClient.from_settings(settings, ghl.http, ghl.store, pacer=LocalPacer())
    assert isinstance(client.token_provider, TokenProvider)
    with pytest.raises(errors.PermanentRequestError, match="GHL_CLIENT_ID"):
        await client.exchange_code("code", REDIRECT_URI)


def test_app_id_is_client_id_prefix() -> None:
    """The app id is the client id's part before the first dash."""
    assert app_id_from_client_id("ve9EPM428h8vShlRW1KT-abc123") == "ve9EPM428h8vShlRW1KT"
    assert app_id_from_client_id("plain") == "plain"


async def test_every_endpoint_is_checked_against_the_spec(
    ghl: GHLStack, openapi_checker: OpenAPIChecker
) -> None:
    """One pass over every client call; each request matched HighLevel's OpenAPI operation."""
    before = len(openapi_checker.checked)
    company_id = ghl.sandbox.config.company_id
    code = ghl.sandbox.issue_code(redirect_uri=REDIRECT_URI, user_type="Company")
    company = await ghl.client.exchange_code(code, REDIRECT_URI, user_type="Company")
    await ghl.client.installed_locations(company.access_token, company_id)
    await ghl.save(
        await ghl.client.location_token(company.access_token, company_id, ghl.location_id),
        company_id=company_id,
    )
    await ghl.install(expires_in=EXPIRED)  # the next call refreshes: POST /oauth/token again
    contact = (await ghl.client.upsert_contact(ghl.location_id, PHONE)).contact
    await ghl.client.find_contact_by_phone(ghl.location_id, PHONE)
    await ghl.client.search_conversations(ghl.location_id, contact.id)
    conversation = await ghl.client.create_conversation(ghl.location_id, contact.id)
    inbound = await ghl.client.add_inbound_message(
        ghl.location_id,
        contact_id=contact.id,
        conversation_id=conversation.id,
        conversation_provider_id=ghl.sandbox.config.conversation_provider_id,
        message="hi",
        alt_id="cast-9",
        date=datetime.now(UTC),
        attachments=["https://example.com/a.png"],
    )
    await ghl.client.get_message(ghl.location_id, inbound.message_id)
    outbound = ghl.sandbox.delivery_payload(phone=PHONE, message="x")["messageId"]
    await ghl.client.update_message_status(
        ghl.location_id, outbound, "failed", {"code": "1", "type": "saas", "message": "no"}
    )
    assert not openapi_checker.failures
    assert set(openapi_checker.checked[before:]) == {
        "POST /oauth/token",
        "POST /oauth/locationToken",
        "GET /oauth/installedLocations",
        "PUT /conversations/messages/{messageId}/status",
        "POST /conversations/messages/inbound",
        "GET /conversations/messages/{id}",
        "GET /conversations/search",
        "POST /conversations/",
        "GET /contacts/search/duplicate",
        "POST /contacts/upsert",
    }
