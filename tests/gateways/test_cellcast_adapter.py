"""CellcastGateway: the provider-neutral Gateway over Cellcast, against the sandbox on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx2
import pytest
import pytest_asyncio

from castbridge.gateways.base import (
    Balance,
    CredentialsError,
    Gateway,
    InsufficientCreditsError,
    NotFoundError,
    OptedOutError,
    SendRequest,
    UnsupportedError,
    ValidationFailedError,
)
from castbridge.gateways.cellcast import (
    CELLCAST_CAPABILITIES,
    SPEC,
    CellcastAccountSettings,
    CellcastBadResponseError,
    CellcastDefaults,
    CellcastGateway,
    CellcastNotSentError,
    CellcastSenderError,
)
from castbridge.gateways.spec import AccountConfig, GatewayContext
from castbridge.limits import LocalPacer
from castbridge.sandbox.cellcast import (
    DEDICATED_NUMBER,
    DEFAULT_API_KEY,
    DEFAULT_SENDER,
    NO_ID_NUMBER,
    REFUSED_NUMBER,
    UNDELIVERABLE_NUMBER,
)
from castbridge.sms.phone import InvalidNumber
from tests.gateways.cellcast_support import (
    AU,
    CellcastEnv,
    ManualClock,
    SharedServer,
    make_config,
    shared_server,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

CHAT = CellcastAccountSettings(sms_template_id="tpl-sms", rms_template_id="tpl-rms")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server() -> AsyncIterator[SharedServer]:
    async with shared_server() as shared:
        yield shared


@pytest.fixture
def env(server: SharedServer) -> CellcastEnv:
    return server.sandbox()


def _request(ref: str, to: str = AU, text: str = "Hello", **kwargs: str) -> SendRequest:
    return SendRequest(to_e164=to, text=text, reference=ref, **kwargs)


async def test_gateway_declares_cellcast_capabilities(env: CellcastEnv) -> None:
    """AU, E.164, send-once with reconciliation, polls and pushes, numeric two-way only."""
    gateway = env.gateway()
    assert isinstance(gateway, Gateway)
    caps = gateway.capabilities
    assert caps is CELLCAST_CAPABILITIES is SPEC.capabilities
    assert (caps.name, caps.label, caps.country, caps.number_style) == (
        "cellcast",
        "Cellcast",
        "AU",
        "e164",
    )
    assert (caps.idempotency_keys, caps.status_poll, caps.delivery_reports) == (False, True, True)
    assert (caps.dlr_push, caps.inbound_push, caps.inbound_poll, caps.reconcile) == (
        True,
        True,
        True,
        True,
    )
    assert caps.channels == ("sms", "chat")
    assert (caps.two_way, caps.webhook_setup, caps.sender_ids_api) == (
        "numeric_sender_only",
        "manual",
        False,
    )


async def test_numbers_stay_e164_and_foreign_ones_are_refused(env: CellcastEnv) -> None:
    """The recipient goes out as +61…; a Philippine number raises InvalidNumber."""
    gateway = env.gateway()
    assert gateway.format_number(AU) == AU
    with pytest.raises(InvalidNumber):
        gateway.format_number("+639171234567")


@pytest.mark.parametrize(
    ("to", "text", "channel", "code"),
    [
        ("+639171234567", "hi", "sms", "INVALID_NUMBER"),
        ("+61298765432", "hi", "sms", "INVALID_NUMBER"),  # a Sydney landline
        (AU, "   ", "sms", "EMPTY_MESSAGE"),
        (AU, "x" * 919, "sms", "MESSAGE_TOO_LONG"),  # 7 GSM parts
        (AU, "é" * 402 + "\N{GRINNING FACE}", "sms", "MESSAGE_TOO_LONG"),  # 7 UCS-2 parts
        (AU, "x" * 900 + "\n" * 18, "sms", "MESSAGE_TOO_LONG"),  # 918 chars; \n is sent as \r\n
        (AU, "hi", "viber", "UNSUPPORTED_CHANNEL"),
        (AU, "hi", "chat", "CHAT_NOT_CONFIGURED"),
    ],
)
async def test_refusals_happen_before_any_request(
    env: CellcastEnv, to: str, text: str, channel: str, code: str
) -> None:
    """Foreign or landline numbers, empty or over-long text, unknown channels and a chat
    channel without templates never reach Cellcast."""
    gateway = env.gateway()
    with pytest.raises(ValidationFailedError) as caught:
        gateway.validate(to, text, channel)
    assert caught.value.code == code
    with pytest.raises(ValidationFailedError):
        await gateway.send(_request("v-1", to=to, text=text, channel=channel))
    assert env.sandbox.stats.requests == 0


async def test_six_parts_are_allowed_and_the_limit_is_configurable(env: CellcastEnv) -> None:
    """918 GSM characters (6 parts) pass; max_parts=1 refuses 161."""
    env.gateway().validate(AU, "x" * 918, "sms")
    with pytest.raises(ValidationFailedError, match="2 SMS parts"):
        env.gateway(settings=CellcastAccountSettings(max_parts=1)).validate(AU, "x" * 161, "sms")


async def test_send_returns_the_message_id_matched_by_number(env: CellcastEnv) -> None:
    """Shared sender by default; the id is the recipient's MessageId; customString carries the
    reference with `:` as `-`."""
    result = await env.gateway().send(_request("locA:msgB", text="Hi\nthere"))
    stored = env.sandbox.messages[result.gateway_message_id or ""]
    assert (stored.sender, stored.custom_string, stored.text) == (
        "#SharedNum#",
        "locA-msgB",
        "Hi\r\nthere",
    )
    assert env.sandbox.billed("locA-msgB") == 1


async def test_account_and_request_senders(env: CellcastEnv) -> None:
    """The account sender is used unless the request names its own; custom ones cost 1.3."""
    gateway = env.gateway(sender_id=DEFAULT_SENDER)
    first = await gateway.send(_request("s-1"))
    second = await gateway.send(_request("s-2", sender_id=DEDICATED_NUMBER))
    assert env.sandbox.messages[first.gateway_message_id or ""].sender == DEFAULT_SENDER
    assert env.sandbox.messages[second.gateway_message_id or ""].sender == DEDICATED_NUMBER
    assert env.sandbox.account(DEFAULT_API_KEY).sms_balance == pytest.approx(1000 - 2.6)


async def test_refused_sender_pauses_only_when_it_is_the_accounts(env: CellcastEnv) -> None:
    """ "Your sender id is not registered." under HTTP 200 pauses the account for its own
    sender, not for one message's sender."""
    gateway = env.gateway(sender_id="NOTREG")
    with pytest.raises(CellcastSenderError) as caught:
        await gateway.send(_request("r-1"))
    assert caught.value.pauses_account
    with pytest.raises(CellcastSenderError) as caught:
        await env.gateway().send(_request("r-2", sender_id="OTHER"))
    assert not caught.value.pauses_account
    with pytest.raises(CellcastSenderError) as caught:
        await env.gateway(sender_id="Bad!Sender").send(_request("r-3"))
    assert caught.value.pauses_account
    assert caught.value.code == "INVALID_SENDER"
    assert env.sandbox.stats.sends == 0


@pytest.mark.parametrize("answer", ["list", "refusal"])
async def test_opted_out_recipients_raise_opted_out(server: SharedServer, answer: str) -> None:
    """Both opt-out answers (unsubscribeContacts, "Contact is Unsubscribed…") are OPTED_OUT,
    never a delivery failure, and nothing is billed."""
    env = server.sandbox(make_config(optout_answer=answer))
    env.sandbox.emit_optout(DEFAULT_API_KEY, "0412345678")
    with pytest.raises(OptedOutError) as caught:
        await env.gateway().send(_request("o-1"))
    assert (caught.value.code, caught.value.opted_out, caught.value.retryable) == (
        "OPTED_OUT",
        True,
        False,
    )
    assert env.sandbox.billed("o-1") == 0


async def test_invalid_contact_is_a_validation_failure(env: CellcastEnv) -> None:
    """A number Cellcast lists in invalidContacts fails that message as an invalid number."""
    with pytest.raises(ValidationFailedError) as caught:
        await env.gateway().send(_request("i-1", to=REFUSED_NUMBER))
    assert (caught.value.code, caught.value.outcome_unknown) == ("INVALID_NUMBER", False)
    assert env.sandbox.billed("i-1") == 0


async def test_recipient_without_message_id_was_not_sent(env: CellcastEnv) -> None:
    """status:true but no MessageId for the recipient: not sent (outcome known), not billed."""
    with pytest.raises(CellcastNotSentError) as caught:
        await env.gateway().send(_request("n-1", to=NO_ID_NUMBER))
    assert (caught.value.code, caught.value.outcome_unknown) == ("NOT_SENT", False)
    assert env.sandbox.billed("n-1") == 0


async def test_low_balance_and_expired_token_pause_the_account(env: CellcastEnv) -> None:
    """422 low balance and 401 Token expired are account-level refusals."""
    account = env.sandbox.account(DEFAULT_API_KEY)
    account.sms_balance = 0.5
    with pytest.raises(InsufficientCreditsError) as low:
        await env.gateway().send(_request("b-1"))
    assert low.value.pauses_account
    account.token_expired = True
    with pytest.raises(CredentialsError) as expired:
        await env.gateway().send(_request("b-2"))
    assert expired.value.pauses_account
    assert env.sandbox.stats.sends == 0


async def test_status_moves_from_pending_to_delivered_or_failed(server: SharedServer) -> None:
    """queued → sent (pending) → delivered with updatedAt as delivery time; an undeliverable
    number ends failed with the status as code."""
    clock = ManualClock()
    env = server.sandbox(make_config(report_body="minimal"), clock=clock)
    gateway = env.gateway()
    good = await gateway.send(_request("t-1"))
    bad = await gateway.send(_request("t-2", to=UNDELIVERABLE_NUMBER))
    first = await gateway.status(good.gateway_message_id or "")
    assert (first.state, first.raw_status, first.terminal) == ("pending", "queued", False)
    clock.advance(1.5)
    assert (await gateway.status(good.gateway_message_id or "")).raw_status == "sent"
    clock.advance(2.0)
    done = await gateway.status(good.gateway_message_id or "")
    assert (done.state, done.terminal) == ("delivered", True)
    assert done.delivered_at is not None
    assert done.delivered_at.timestamp() == pytest.approx(clock.now - 0.5, abs=0.01)
    failed = await gateway.status(bad.gateway_message_id or "")
    assert (failed.state, failed.error_code, failed.delivered_at) == ("failed", "FAILED", None)


async def test_malformed_ids_are_unknown_without_a_request(env: CellcastEnv) -> None:
    """A non-ObjectId never reaches Cellcast; NotFound, not retryable."""
    with pytest.raises(NotFoundError) as caught:
        await env.gateway().status("not-an-object-id")
    assert (caught.value.code, caught.value.retryable) == ("UNKNOWN_ID", False)
    assert env.sandbox.stats.requests == 0


@pytest.mark.parametrize("http_status", [200, 500])
async def test_cast_error_answer_is_unknown_id(server: SharedServer, http_status: int) -> None:
    """Cellcast's CastError (under 200 or 500) means an unknown id, never a transient error;
    an unknown well-formed id is NotFound too."""
    client = server.canned(
        http_status,
        {
            "status": False,
            "message": "internal server error",
            "data": {},
            "error": {"name": "CastError", "message": "Cast to ObjectId failed"},
        },
    )
    gateway = CellcastGateway(client)
    with pytest.raises(NotFoundError) as caught:
        await gateway.status("0" * 24)
    assert (caught.value.code, caught.value.retryable) == ("UNKNOWN_ID", False)
    env = server.sandbox()
    with pytest.raises(NotFoundError):
        await env.gateway().status("f" * 24)


async def test_balance_and_verify_credentials(env: CellcastEnv) -> None:
    """Decimal credits; the check names the account and fails on an expired key."""
    env.sandbox.account(DEFAULT_API_KEY).sms_balance = 41.7
    gateway = env.gateway()
    assert await gateway.balance() == Balance(41.7, "credits", "credits")
    check = await gateway.verify_credentials()
    assert (check.account_name, check.balance) == ("Sandbox Account", Balance(41.7, "credits"))
    env.sandbox.account(DEFAULT_API_KEY).token_expired = True
    with pytest.raises(CredentialsError):
        await gateway.verify_credentials()


async def test_unsupported_operations_say_so(env: CellcastEnv) -> None:
    """No sender-ID listing and no webhook registration API: UnsupportedError, never a fake."""
    gateway = env.gateway()
    with pytest.raises(UnsupportedError):
        await gateway.sender_ids()
    with pytest.raises(UnsupportedError, match="dashboard"):
        await gateway.register_webhooks("https://example.test/hook")
    with pytest.raises(UnsupportedError):
        await gateway.status("a" * 24, "chat")


async def test_chat_channel_sends_without_an_id(env: CellcastEnv) -> None:
    """/api/v1/chat with both templates: accepted, no id to poll, billed once."""
    gateway = env.gateway(settings=CHAT)
    result = await gateway.send(_request("c-1", channel="chat", text="Chat hello"))
    assert result.gateway_message_id is None
    (message,) = env.sandbox.messages.values()
    assert message.channel == "chat"
    assert env.sandbox.billed_to(AU, "Chat hello") == 1
    now = datetime.now(UTC)
    found = await gateway.find_sent(_request("c-1", channel="chat"), since=now, until=now)
    assert (found.found, found.conclusive) == (None, False)


async def test_chat_answer_without_the_recipient_is_unknown(server: SharedServer) -> None:
    """A chat answer that does not list the number: the outcome is unknown."""
    client = server.canned(200, {"status": True, "message": "ok", "data": [], "error": {}})
    with pytest.raises(CellcastBadResponseError) as caught:
        await CellcastGateway(client, settings=CHAT).send(_request("c-2", channel="chat"))
    assert caught.value.outcome_unknown


async def test_pushed_webhooks_parse_into_events(server: SharedServer) -> None:
    """The sandbox's Status URL and Receive URL posts (both field styles) parse into status
    and inbound events for the messages castbridge sent."""
    for style in ("reply", "message"):
        env = server.sandbox(
            make_config(reply_field=style, sent_after_seconds=0.0, final_after_seconds=0.05)
        )
        env.sandbox.set_webhooks(
            DEFAULT_API_KEY, server.hooks_url + "/status", server.hooks_url + "/receive"
        )
        gateway = env.gateway()
        sent = await gateway.send(_request(f"w-{style}", text="Your booking"))
        for _ in range(100):
            if server.received.json("/status"):
                break
            await asyncio.sleep(0.02)
        env.sandbox.emit_reply(DEFAULT_API_KEY, "0412345678", "Confirmed")
        await env.sandbox.pusher.drain(5.0)
        (status_body,) = [b for p, b in server.received.bodies if p == "/status"]
        (event,) = gateway.parse_webhook(status_body, "application/json")
        assert event.kind == "status"
        assert event.status is not None
        assert (event.status.gateway_message_id, event.status.state) == (
            sent.gateway_message_id,
            "delivered",
        )
        (reply_body,) = [b for p, b in server.received.bodies if p == "/receive"]
        (inbound,) = gateway.parse_webhook(reply_body, "application/json")
        assert inbound.kind == "inbound"
        assert inbound.inbound is not None
        assert inbound.inbound.text == "Confirmed"
        assert inbound.inbound.from_number == "61412345678"


async def test_build_wires_pacing_settings_and_sender(server: SharedServer) -> None:
    """SPEC.build gives a gateway paced on the account bucket, with the account's settings."""
    env = server.sandbox()
    async with httpx2.AsyncClient() as http:
        context = GatewayContext(
            http=http,
            pacer=LocalPacer(),
            account_bucket="acct:1",
            ip_bucket="ip:cellcast",
            defaults=CellcastDefaults(_env_file=None, rate_limit=2.0),
        )
        account = AccountConfig(
            account_id=1,
            gateway="cellcast",
            api_key=DEFAULT_API_KEY,
            api_url=env.url,
            sender_id=DEFAULT_SENDER,
            channel="sms",
            settings=CellcastAccountSettings(max_parts=2),
        )
        gateway = SPEC.build(account, context)
        assert isinstance(gateway, CellcastGateway)
        with pytest.raises(ValidationFailedError):
            gateway.validate(AU, "x" * 400, "sms")
        result = await gateway.send(_request("build-1"))
        assert env.sandbox.messages[result.gateway_message_id or ""].sender == DEFAULT_SENDER
