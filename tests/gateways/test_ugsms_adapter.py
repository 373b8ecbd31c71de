"""UgsmsGateway: the provider-neutral Gateway over UGSMS, against the sandbox on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx2
import pytest
import pytest_asyncio

from castbridge.gateways.base import (
    AccountCheck,
    Balance,
    CredentialsError,
    Gateway,
    GatewayError,
    InsufficientCreditsError,
    SendRequest,
    SendResult,
    UnsupportedError,
    ValidationFailedError,
)
from castbridge.gateways.spec import AccountConfig, GatewayContext
from castbridge.gateways.ugsms import (
    SPEC,
    UGSMS_CAPABILITIES,
    UgsmsAccountSettings,
    UgsmsDefaults,
    UgsmsGateway,
    batch_reference,
)
from castbridge.limits import LocalPacer, Throttled
from castbridge.sandbox.ugsms import DEFAULT_API_KEY, DEFAULT_SENDER_ID, UgsmsSandboxConfig
from castbridge.sms.phone import InvalidNumber
from tests.gateways.ugsms_support import (
    UG,
    UG_LOCAL,
    SharedServer,
    UgsmsEnv,
    request,
    shared_server,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server() -> AsyncIterator[SharedServer]:
    async with shared_server() as shared:
        yield shared


@pytest.fixture
def env(server: SharedServer) -> UgsmsEnv:
    return server.sandbox()


async def test_gateway_declares_ugsms_capabilities(env: UgsmsEnv) -> None:
    """UG only, national numbers, no idempotency, no status, no reports, nothing pushed or
    polled, nothing to reconcile with, SMS only, one-way."""
    gateway = env.gateway()
    assert isinstance(gateway, Gateway)
    caps = gateway.capabilities
    assert caps is UGSMS_CAPABILITIES
    assert (caps.name, caps.label, caps.country, caps.number_style) == (
        "ugsms",
        "UGSMS",
        "UG",
        "national",
    )
    assert (caps.idempotency_keys, caps.status_poll, caps.delivery_reports) == (False,) * 3
    assert (caps.dlr_push, caps.inbound_push, caps.inbound_poll, caps.reconcile) == (False,) * 4
    assert (caps.channels, caps.two_way, caps.webhook_setup, caps.sender_ids_api) == (
        ("sms",),
        "no",
        "none",
        False,
    )


@pytest.mark.parametrize(
    ("e164", "local"),
    [
        ("+256702913454", "0702913454"),
        ("+256776913451", "0776913451"),
        ("+256712345678", "0712345678"),
    ],
)
async def test_numbers_go_out_as_ugandan_national(env: UgsmsEnv, e164: str, local: str) -> None:
    """E.164 becomes `0XXXXXXXXX`, including 071…, which is also a Kenyan local form."""
    assert env.gateway().format_number(e164) == local


async def test_a_kenyan_number_is_never_formatted_as_local(env: UgsmsEnv) -> None:
    """+254712345678 would read 0712345678 locally, a different (Ugandan) subscriber."""
    with pytest.raises(InvalidNumber, match="only sends to UG"):
        env.gateway().format_number("+254712345678")


async def test_send_uses_the_default_sender_and_local_number(env: UgsmsEnv) -> None:
    """The account's sender ID is sent unless the request names one; the id comes back."""
    gateway = env.gateway()
    first = await gateway.send(request("loc:1"))
    second = await gateway.send(request("loc:2", text="Other", sender_id="SHOP"))
    assert first.gateway_message_id is not None
    assert second.gateway_message_id is not None
    stored = env.sandbox.messages[first.gateway_message_id]
    assert (stored.numbers, stored.sender_id) == ((UG_LOCAL,), DEFAULT_SENDER_ID)
    assert env.sandbox.messages[second.gateway_message_id].sender_id == "SHOP"


async def test_without_any_sender_none_is_sent(env: UgsmsEnv) -> None:
    """No account or request sender: UGSMS's own default applies."""
    gateway = UgsmsGateway(env.client())
    result = await gateway.send(request())
    assert result.gateway_message_id is not None
    assert env.sandbox.messages[result.gateway_message_id].sender_id is None


async def test_acceptance_without_an_id_is_still_an_acceptance(server: SharedServer) -> None:
    """v2 may answer `success: true` with no `data` (uncertain): the send is known to be
    accepted, and no id is needed because nothing is ever polled."""
    env = server.sandbox(UgsmsSandboxConfig(success_body="bare"))
    result = await env.gateway().send(request())
    assert result == SendResult(gateway_message_id=None)
    assert env.sandbox.billed(UG_LOCAL, "Hello") == 1


async def test_three_parts_fit_by_default(env: UgsmsEnv) -> None:
    """459 GSM-7 characters are 3 parts, the default maximum; the sandbox bills 3."""
    result = await env.gateway().send(request(text="a" * 459))
    assert result.gateway_message_id is not None
    assert env.sandbox.messages[result.gateway_message_id].parts == 3


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (request(to="+254712345678"), "INVALID_NUMBER"),
        (request(to="+256414123456"), "INVALID_NUMBER"),  # a Kampala landline
        (request(to="+639171234567"), "INVALID_NUMBER"),
        (request(to="0702913454"), "INVALID_NUMBER"),  # not E.164
        (request(text=""), "EMPTY_MESSAGE"),
        (request(text="   "), "EMPTY_MESSAGE"),
        (request(text="a" * 460), "MESSAGE_TOO_LONG"),  # 4 GSM-7 parts
        (request(text="\N{GRINNING FACE}" * 101), "MESSAGE_TOO_LONG"),  # 202 UTF-16 units
        (request(channel="otp"), "UNSUPPORTED_CHANNEL"),
        (request(sender_id="TWELVE_CHARS"), "INVALID_SENDER_ID"),
    ],
)
async def test_refusals_happen_before_any_request(
    env: UgsmsEnv, request_: SendRequest, code: str
) -> None:
    """Foreign numbers, landlines, empty or over-long text, another channel and an over-long
    sender never reach UGSMS."""
    with pytest.raises(ValidationFailedError) as caught:
        await env.gateway().send(request_)
    assert caught.value.code == code
    assert env.sandbox.stats.requests == 0


async def test_refusals_are_sentences_for_the_user(env: UgsmsEnv) -> None:
    """`validate` (pure, at intake) explains the refusal in words."""
    gateway = env.gateway()
    with pytest.raises(ValidationFailedError) as caught:
        gateway.validate(UG, "a" * 460, "sms")
    assert caught.value.message == (
        "Message is too long for UGSMS: it needs 4 SMS parts, at most 3 allowed. "
        "Shorten it and send again."
    )
    with pytest.raises(ValidationFailedError) as caught:
        gateway.validate("+254712345678", "hi", "sms")
    assert caught.value.message == (
        "Cannot send SMS: +254712345678 is not a Ugandan (UG) number; this gateway only sends to UG"
    )
    gateway.validate(UG, "a" * 459, "sms")


async def test_max_parts_comes_from_the_account(env: UgsmsEnv) -> None:
    """An account confirmed for longer texts can be given more parts."""
    gateway = env.gateway(max_parts=5)
    result = await gateway.send(request(text="b" * 700))
    assert gateway.max_parts() == 5
    assert result.gateway_message_id is not None
    assert env.sandbox.messages[result.gateway_message_id].parts == 5


async def test_an_ambiguous_send_is_never_sent_twice(server: SharedServer) -> None:
    """A send whose answer is lost is `outcome_unknown`; there is nothing to reconcile with
    (find_sent refuses rather than claim "not found"), so nothing is resent: billed once."""
    env = server.sandbox()
    env.sandbox.faults.timeout_next = 1
    async with httpx2.AsyncClient(timeout=0.3) as http:
        gateway = UgsmsGateway(env.client(http=http), sender_id=DEFAULT_SENDER_ID)
        with pytest.raises(GatewayError) as caught:
            await gateway.send(request("loc:amb", text="maybe"))
    assert caught.value.outcome_unknown
    now = datetime.now(UTC)
    with pytest.raises(UnsupportedError):
        await gateway.find_sent(
            request("loc:amb", text="maybe"), since=now - timedelta(minutes=1), until=now
        )
    assert env.sandbox.stats.requests == 1
    assert env.sandbox.billed(UG_LOCAL, "maybe") == 1
    assert env.sandbox.snapshot()["sent_twice"] == 0


async def test_an_unreadable_acceptance_is_ambiguous_too(server: SharedServer) -> None:
    """A garbled 200 after UGSMS billed the send: unknown outcome, not a failure."""
    env = server.sandbox()
    env.sandbox.faults.garble_next = 1
    with pytest.raises(GatewayError) as caught:
        await env.gateway().send(request(text="garbled"))
    assert (caught.value.outcome_unknown, caught.value.retryable) == (True, False)
    assert env.sandbox.billed(UG_LOCAL, "garbled") == 1


async def test_nothing_to_poll_push_or_list(env: UgsmsEnv) -> None:
    """No status, no sender-ID list, no webhooks, no inbound: each refuses, nothing is faked;
    registering webhooks registers nothing."""
    gateway = env.gateway()
    now = datetime.now(UTC)
    with pytest.raises(UnsupportedError):
        await gateway.status("any-id", to_e164=UG, sent_at=now)
    with pytest.raises(UnsupportedError):
        await gateway.find_sent(request(), since=now, until=now)
    with pytest.raises(UnsupportedError):
        await gateway.sender_ids()
    with pytest.raises(UnsupportedError):
        gateway.parse_webhook(b"{}", "application/json")
    with pytest.raises(UnsupportedError):
        await gateway.poll_inbound(None, max_pages=1)
    assert await gateway.register_webhooks("https://example.invalid/hook") == []
    assert env.sandbox.stats.requests == 0


async def test_balance_and_credentials(env: UgsmsEnv) -> None:
    """The balance is money in UGX; verify_credentials is that same cheap call."""
    gateway = env.gateway()
    assert await gateway.balance() == Balance(10_000.0, "UGX", "money")
    assert await gateway.verify_credentials() == AccountCheck(
        balance=Balance(10_000.0, "UGX", "money")
    )
    with pytest.raises(CredentialsError) as caught:
        await env.gateway("ugsk_" + "0" * 40).verify_credentials()
    assert caught.value.pauses_account


async def test_an_empty_balance_pauses_the_account(env: UgsmsEnv) -> None:
    """ "Insufficient balance" hits every message: the account's queue is held."""
    env.sandbox.account(DEFAULT_API_KEY).balance = 10
    with pytest.raises(InsufficientCreditsError) as caught:
        await env.gateway().send(request())
    assert caught.value.pauses_account
    assert caught.value.message == "Insufficient balance"


async def test_bulk_is_off_unless_the_account_enables_it(env: UgsmsEnv) -> None:
    """The unverified bulk endpoint is never used by default."""
    with pytest.raises(UnsupportedError):
        await env.gateway().send_batch([request()])
    assert env.sandbox.stats.requests == 0


async def test_bulk_maps_each_message_to_its_own_result(env: UgsmsEnv) -> None:
    """With bulk on, one request carries several messages; each gets its own outcome, in order,
    and the batch reference is the same for the same batch."""
    batch = [
        request("loc:b1", text="first"),
        request("loc:b2", to="+256776913451", text="x" * 200),
    ]
    results = await env.gateway(bulk=True).send_batch(batch)
    assert [type(r) for r in results] == [SendResult, SendResult]
    assert [r.parts for r in results if isinstance(r, SendResult)] == [1, 2]
    assert env.sandbox.stats.requests == 1
    assert env.sandbox.billed_reference(batch_reference(batch)) == 1
    assert batch_reference(batch) == batch_reference(list(batch))
    assert batch_reference(batch) != batch_reference(batch[:1])


async def test_bulk_refusals_and_unknowns_stay_per_message(server: SharedServer) -> None:
    """A refused index is a refusal for that message only; an index the answer leaves out is
    an unknown outcome, never a failure."""
    canned = server.canned(
        200,
        {
            "success": True,
            "data": {"failed_messages": [{"index": 0, "error": "Blocked number"}]},
        },
    )
    gateway = UgsmsGateway(canned.client, bulk=True)
    refused, missing = await gateway.send_batch([request("a"), request("b", text="other")])
    assert isinstance(refused, GatewayError)
    assert (refused.message, refused.outcome_unknown) == ("Blocked number", False)
    assert isinstance(missing, GatewayError)
    assert missing.outcome_unknown


async def test_bulk_needs_one_sender_and_valid_messages(env: UgsmsEnv) -> None:
    """A batch with two senders, or any message that would be refused, sends nothing."""
    gateway = env.gateway(bulk=True)
    with pytest.raises(ValidationFailedError):
        await gateway.send_batch([request("a"), request("b", sender_id="OTHER")])
    with pytest.raises(ValidationFailedError):
        await gateway.send_batch([request("a"), request("b", to="+254712345678")])
    assert await gateway.send_batch([]) == []
    assert env.sandbox.stats.requests == 0


async def test_build_wires_the_account_and_the_pacer(env: UgsmsEnv) -> None:
    """SPEC.build makes a gateway from a stored account: its key, URL, sender, settings, and
    the per-key bucket, which refuses (Throttled) before a request leaves once spent."""
    defaults = UgsmsDefaults(_env_file=None, rate_limit=2)  # type: ignore[call-arg]
    account = AccountConfig(
        account_id=1,
        gateway="ugsms",
        api_key=DEFAULT_API_KEY,
        api_url=env.api,
        sender_id="SHOP",
        channel="sms",
        settings=UgsmsAccountSettings(max_parts=4),
    )
    context = GatewayContext(
        http=env.http,
        pacer=LocalPacer(),
        account_bucket="acct:1",
        ip_bucket="ip:ugsms",
        defaults=defaults,
    )
    gateway = SPEC.build(account, context)
    assert isinstance(gateway, UgsmsGateway)
    assert gateway.max_parts() == 4
    result = await gateway.send(request())
    assert result.gateway_message_id is not None
    assert env.sandbox.messages[result.gateway_message_id].sender_id == "SHOP"
    with pytest.raises(Throttled):
        await gateway.send(request("loc:2"))
    assert env.sandbox.stats.requests == 1
