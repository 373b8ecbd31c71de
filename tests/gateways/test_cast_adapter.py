"""CastGateway: the provider-neutral Gateway over Cast, against the sandbox on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio

from castbridge.gateways.base import (
    Balance,
    CredentialsError,
    Gateway,
    NotFoundError,
    SenderId,
    SendRequest,
    UnsupportedError,
    ValidationFailedError,
)
from castbridge.gateways.cast import CAST_CAPABILITIES, CastGateway
from castbridge.sandbox.cast import (
    DEFAULT_SENDER_ID,
    DEFAULT_TEST_KEY,
    FAILING_NUMBER,
    UNDELIVERABLE_NUMBER,
)
from castbridge.sms.phone import InvalidNumber
from tests.gateways.cast_support import SIM_SENDER, CastEnv, SharedServer, shared_server

pytestmark = pytest.mark.asyncio(loop_scope="module")

PH = "+639171234567"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server() -> AsyncIterator[SharedServer]:
    async with shared_server() as shared:
        yield shared


@pytest.fixture
def env(server: SharedServer) -> CastEnv:
    return server.sandbox()


def _request(key: str, to: str = PH, text: str = "Hello", **kwargs: str) -> SendRequest:
    return SendRequest(to_e164=to, text=text, reference=key, **kwargs)


async def test_gateway_declares_cast_capabilities(env: CastEnv) -> None:
    """PH only, national numbers, idempotent sends, polled status, no push or inbound."""
    gateway = env.gateway()
    assert isinstance(gateway, Gateway)
    caps = gateway.capabilities
    assert caps is CAST_CAPABILITIES
    assert (caps.country, caps.number_style, caps.channels) == (
        "PH",
        "national",
        ("sms", "otp", "sim"),
    )
    assert (caps.idempotency_keys, caps.status_poll, caps.delivery_reports) == (True, True, True)
    assert (caps.dlr_push, caps.inbound_push, caps.inbound_poll) == (False, False, False)
    assert (caps.two_way, caps.webhook_setup, caps.sender_ids_api) == ("no", "none", True)
    assert gateway.max_chars() == 450


async def test_numbers_are_sent_in_local_format(env: CastEnv) -> None:
    """E.164 becomes 09XXXXXXXXX; a foreign number is refused."""
    gateway = env.gateway()
    assert gateway.format_number(PH) == "09171234567"
    with pytest.raises(InvalidNumber):
        gateway.format_number("+61412345678")


async def test_send_uses_the_default_sender_and_local_number(env: CastEnv) -> None:
    """The configured sender ID is always sent explicitly, the number in local form."""
    result = await env.gateway().send(_request("a-1"))
    stored = env.sandbox.messages[result.gateway_message_id]
    assert (stored.to, stored.sender_id, stored.channel) == (
        "09171234567",
        DEFAULT_SENDER_ID,
        "sms",
    )
    assert (result.parts, result.replayed, result.sandbox) == (1, False, False)


async def test_request_sender_and_channel_override_the_defaults(env: CastEnv) -> None:
    """A request's own sender ID and channel route the message (sim -> /sim/send)."""
    gateway = env.gateway()
    otp = await gateway.send(_request("a-2", channel="otp"))
    sim = await gateway.send(_request("a-3", channel="sim", sender_id=SIM_SENDER))
    assert env.sandbox.messages[otp.gateway_message_id].channel == "otp"
    assert env.sandbox.messages[sim.gateway_message_id].sender_id == SIM_SENDER


async def test_retried_send_is_reported_as_replayed(env: CastEnv) -> None:
    """The same idempotency key through the gateway yields the same id, replayed."""
    gateway = env.gateway()
    first = await gateway.send(_request("same"))
    again = await gateway.send(_request("same"))
    assert again.gateway_message_id == first.gateway_message_id
    assert again.replayed


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (_request("f-1", to="+61412345678"), "INVALID_NUMBER"),
        (_request("f-2", text="x" * 451), "MESSAGE_TOO_LONG"),
        (_request("f-3", text=""), "EMPTY_MESSAGE"),
        (_request("f-4", text="\N{GRINNING FACE}" * 226), "MESSAGE_TOO_LONG"),
        (_request("f-5", channel="viber"), "UNSUPPORTED_CHANNEL"),
    ],
)
async def test_refusals_happen_before_any_request(
    env: CastEnv, request_: SendRequest, code: str
) -> None:
    """Foreign numbers, text over max_chars and empty text never reach Cast."""
    with pytest.raises(ValidationFailedError) as caught:
        await env.gateway().send(request_)
    assert caught.value.code == code
    assert env.sandbox.stats.requests == 0


async def test_max_chars_comes_from_the_constructor(env: CastEnv) -> None:
    """A Rev B account can be given a higher limit."""
    gateway = CastGateway(env.client(), sender_id=DEFAULT_SENDER_ID, max_chars=1000)
    result = await gateway.send(_request("long", text="a" * 600))
    assert gateway.max_chars() == 1000
    assert result.parts == 4


async def test_refusals_are_sentences_for_the_user(env: CastEnv) -> None:
    """`validate` (run at intake, before any call) explains the refusal in words."""
    with pytest.raises(ValidationFailedError) as caught:
        env.gateway().validate(PH, "x" * 451, "sms")
    assert caught.value.message == (
        "Message is too long for Cast.ph: 451 characters, at most 450 allowed. "
        "Shorten it and send again."
    )
    with pytest.raises(ValidationFailedError) as caught:
        env.gateway().validate("+61412345678", "hi", "sms")
    assert "only sends to PH" in caught.value.message


async def test_international_sends_when_the_account_allows_them(env: CastEnv) -> None:
    """allow_international sends a foreign number in E.164 (Rev B accepts it)."""
    gateway = CastGateway(env.client(), sender_id=DEFAULT_SENDER_ID, allow_international=True)
    gateway.validate("+61412345678", "hi", "sms")
    assert gateway.format_number("+61412345678") == "+61412345678"


async def test_find_sent_finds_the_send_in_the_logs(env: CastEnv) -> None:
    """Reconciliation after an ambiguous answer: the logs show the send by number and text."""
    gateway = env.gateway()
    sent = await gateway.send(_request("r-1", text="find me"))
    now = datetime.now(UTC)
    found = await gateway.find_sent(
        _request("r-1", text="find me"), since=now - timedelta(minutes=1), until=now
    )
    assert found.found is not None
    assert found.found.gateway_message_id == sent.gateway_message_id
    missing = await gateway.find_sent(
        _request("r-2", text="never sent"), since=now - timedelta(minutes=1), until=now
    )
    assert (missing.found, missing.conclusive) == (None, True)


async def test_verify_credentials_reads_the_profile(env: CastEnv) -> None:
    """A key is checked with /account/profile; a bad key is a CredentialsError."""
    check = await env.gateway().verify_credentials()
    assert check.account_name == "Sandbox Account"
    with pytest.raises(CredentialsError):
        await env.gateway("cast_" + "0" * 64).verify_credentials()


async def test_webhooks_and_inbound_are_unsupported(env: CastEnv) -> None:
    """Cast pushes nothing and has no inbound SMS; castbridge registers nothing."""
    gateway = env.gateway()
    with pytest.raises(UnsupportedError):
        gateway.parse_webhook(b"{}", "application/json")
    with pytest.raises(UnsupportedError):
        await gateway.poll_inbound(None, max_pages=1)
    assert await gateway.register_webhooks("https://example.invalid/x") == []


async def test_delivered_message_maps_to_delivered(env: CastEnv) -> None:
    """sent and pending are non-terminal pending; delivered is terminal with its time."""
    gateway = env.gateway()
    sent = await gateway.send(_request("d-1"))
    first = await gateway.status(sent.gateway_message_id)
    assert (first.state, first.raw_status, first.terminal) == ("pending", "sent", False)
    env.sandbox.advance(3)
    middle = await gateway.status(sent.gateway_message_id)
    assert (middle.state, middle.raw_status, middle.error_code) == ("pending", "pending", "ACCEPTD")
    env.sandbox.advance(3)
    done = await gateway.status(sent.gateway_message_id)
    assert (done.state, done.terminal, done.error_code) == ("delivered", True, "DELIVRD")
    assert done.delivered_at is not None


async def test_undelivered_message_maps_to_failed_with_dlr_status(env: CastEnv) -> None:
    """undelivered is terminal failed and carries the carrier's dlr_status."""
    gateway = env.gateway()
    sent = await gateway.send(_request("u-1", to="+63" + UNDELIVERABLE_NUMBER[1:]))
    env.sandbox.advance(10)
    status = await gateway.status(sent.gateway_message_id)
    assert (status.state, status.terminal, status.raw_status) == ("failed", True, "undelivered")
    assert status.error_code == "UNDELIV"


async def test_failed_submission_maps_to_failed_with_message(env: CastEnv) -> None:
    """failed is terminal failed with Cast's error_message."""
    gateway = env.gateway()
    sent = await gateway.send(_request("x-1", to="+63" + FAILING_NUMBER[1:]))
    env.sandbox.advance(10)
    status = await gateway.status(sent.gateway_message_id)
    assert (status.state, status.terminal, status.raw_status) == ("failed", True, "failed")
    assert status.error_message
    assert "SMPP" in status.error_message


@pytest.mark.parametrize("raw", ["ENROUTE", "UNKNOWN", "queued"])
async def test_unrecognised_status_is_pending_and_non_terminal(
    server: SharedServer, raw: str
) -> None:
    """Raw values outside the documented table never end polling."""
    client = server.canned(200, {"success": True, "message_id": "CASTabc", "status": raw})
    status = await CastGateway(client).status("CASTabc")
    assert (status.state, status.terminal, status.raw_status) == ("pending", False, raw)


async def test_sandbox_key_sends_are_flagged_and_not_pollable(env: CastEnv) -> None:
    """A cast_test_ send says sandbox=True; its SANDBOX_ id is unknown to /status."""
    gateway = env.gateway(DEFAULT_TEST_KEY)
    result = await gateway.send(_request("sb-1"))
    assert result.sandbox
    assert result.gateway_message_id.startswith("SANDBOX_")
    with pytest.raises(NotFoundError):
        await gateway.status(result.gateway_message_id)


async def test_balance_and_sender_ids(env: CastEnv) -> None:
    """Account reads come back as the neutral Balance and SenderId types."""
    gateway = env.gateway()
    assert await gateway.balance() == Balance(1000.0, "credits", "credits")
    assert await gateway.sender_ids() == [
        SenderId(DEFAULT_SENDER_ID, "Default", "sms"),
        SenderId(SIM_SENDER, "SIM", "sim"),
    ]
