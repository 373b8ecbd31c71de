"""CastClient against the Cast sandbox over real HTTP: sends, bulk, idempotency, reads."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from castbridge.gateways.cast import CastValidationError
from castbridge.sandbox.cast import DEFAULT_API_KEY, DEFAULT_SENDER_ID, DEFAULT_TEST_KEY
from tests.gateways.cast_support import SIM_SENDER, CastEnv, SharedServer, shared_server

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server() -> AsyncIterator[SharedServer]:
    async with shared_server() as shared:
        yield shared


@pytest.fixture
def env(server: SharedServer) -> CastEnv:
    return server.sandbox()


@pytest.mark.parametrize(
    ("channel", "sender"),
    [("sms", DEFAULT_SENDER_ID), ("otp", DEFAULT_SENDER_ID), ("sim", SIM_SENDER)],
)
async def test_send_succeeds_on_every_channel(env: CastEnv, channel: str, sender: str) -> None:
    """sms, otp and sim each reach their own endpoint and return a CAST id, parts and a charge."""
    client = env.client()
    before = env.sandbox.account(DEFAULT_API_KEY).credits
    result = await client.send(
        "09171234567",
        "Hello",
        idempotency_key=f"k-{channel}",
        channel=channel,  # type: ignore[arg-type]
        sender_id=sender,
    )
    assert result.success
    assert result.message_id
    assert result.message_id.startswith("CAST")
    assert (result.parts, result.replayed, result.sandbox) == (1, False, False)
    stored = env.sandbox.messages[result.message_id]
    assert (stored.channel, stored.sender_id, stored.to) == (channel, sender, "09171234567")
    assert env.sandbox.account(DEFAULT_API_KEY).credits == before - 1


async def test_named_channel_helpers_route_to_their_endpoints(env: CastEnv) -> None:
    """send_sms, send_otp and send_sim are the same call on the three channels."""
    client = env.client()
    sms = await client.send_sms("09171234567", "a", idempotency_key="h1")
    otp = await client.send_otp("09171234567", "b", idempotency_key="h2")
    sim = await client.send_sim("09171234567", "c", idempotency_key="h3", sender_id=SIM_SENDER)
    channels = [env.sandbox.messages[r.message_id or ""].channel for r in (sms, otp, sim)]
    assert channels == ["sms", "otp", "sim"]


async def test_multipart_text_reports_and_charges_every_part(env: CastEnv) -> None:
    """A 161-character GSM text is 2 parts and costs 2 credits; UCS-2 splits at 70."""
    client = env.client()
    before = env.sandbox.account(DEFAULT_API_KEY).credits
    gsm = await client.send_sms("09171234567", "a" * 161, idempotency_key="p1")
    ucs2 = await client.send_sms("09171234567", "ж" * 71, idempotency_key="p2")
    assert (gsm.parts, ucs2.parts) == (2, 2)
    assert env.sandbox.account(DEFAULT_API_KEY).credits == before - 4


async def test_repeated_idempotency_key_is_a_free_replay(env: CastEnv) -> None:
    """The same key returns the cached answer marked replayed, and nothing is charged again."""
    client = env.client()
    first = await client.send_sms("09171234567", "once", idempotency_key="same")
    credits = env.sandbox.account(DEFAULT_API_KEY).credits
    again = await client.send_sms("09171234567", "once", idempotency_key="same")
    assert again.message_id == first.message_id
    assert (first.replayed, again.replayed) == (False, True)
    assert env.sandbox.account(DEFAULT_API_KEY).credits == credits
    assert env.sandbox.billed("same") == 1


@pytest.mark.parametrize("key", ["", "x" * 256, "ключ", "line\nbreak"])
async def test_invalid_idempotency_key_is_refused_before_any_request(
    env: CastEnv, key: str
) -> None:
    """Keys must be 1-255 printable ASCII characters; a bad one never reaches Cast."""
    with pytest.raises(CastValidationError) as caught:
        await env.client().send_sms("09171234567", "x", idempotency_key=key)
    assert caught.value.code == "INVALID_IDEMPOTENCY_KEY"
    assert env.sandbox.stats.requests == 0


async def test_longest_allowed_idempotency_key_is_accepted(env: CastEnv) -> None:
    """A 255-character key is within Cast's limit."""
    result = await env.client().send_sms("09171234567", "x", idempotency_key="k" * 255)
    assert result.success


async def test_bulk_partial_failure_is_returned_with_per_recipient_results(env: CastEnv) -> None:
    """Invalid numbers fail individually; the batch answers 200 with success false, not an error."""
    client = env.client()
    before = env.sandbox.account(DEFAULT_API_KEY).credits
    numbers = ["09171234567", "123", "+639181234567", "not-a-number!"]
    result = await client.bulk_sms(numbers, "Sale today", idempotency_key="bulk-1")
    assert not result.success
    assert (result.total, result.sent, result.failed) == (4, 2, 2)
    assert [r.to for r in result.results] == numbers
    assert [r.success for r in result.results] == [True, False, True, False]
    assert all(r.message_id and r.parts == 1 for r in result.results if r.success)
    assert [f.to for f in result.failures] == ["123", "not-a-number!"]
    assert all(f.error for f in result.failures)
    # Credits were reserved for 4 and refunded for the 2 failures.
    assert env.sandbox.account(DEFAULT_API_KEY).credits == before - 2


async def test_bulk_all_accepted_is_success(env: CastEnv) -> None:
    """When every recipient is accepted the top-level success is true (also on the SIM pool)."""
    result = await env.client().bulk_sim(
        ["09171234567", "09181234567"], "hi", idempotency_key="bulk-2", sender_id=SIM_SENDER
    )
    assert result.success
    assert result.sent == 2
    assert not result.failures


@pytest.mark.parametrize("count", [0, 1001])
async def test_bulk_size_is_checked_before_sending(env: CastEnv, count: int) -> None:
    """Bulk takes 1-1,000 numbers."""
    with pytest.raises(CastValidationError):
        await env.client().bulk_sms(["09171234567"] * count, "x", idempotency_key="b")
    assert env.sandbox.stats.requests == 0


async def test_account_reads(env: CastEnv) -> None:
    """balance, profile and sender_ids return typed account data."""
    client = env.client()
    balance = await client.balance()
    profile = await client.profile()
    senders = await client.sender_ids()
    assert (balance.credits, balance.currency) == (1000, "PHP")
    assert profile.billing_type == "topup"
    assert "sim" in profile.allowed_channels
    assert profile.is_active
    assert profile.created_at is not None
    assert [(s.sender_id, s.channel) for s in senders.sender_ids] == [
        (DEFAULT_SENDER_ID, "sms"),
        (SIM_SENDER, "sim"),
    ]


async def test_status_follows_the_sandbox_timeline(env: CastEnv) -> None:
    """sent right after the send, pending with ACCEPTD, then delivered with DLR and time."""
    client = env.client()
    sent = await client.send_sms("09171234567", "hi", idempotency_key="st-1")
    assert sent.message_id is not None
    first = await client.status(sent.message_id)
    assert (first.status, first.dlr_status, first.delivered_at) == ("sent", None, None)
    assert first.sent_at is not None
    env.sandbox.advance(3)
    assert (await client.status(sent.message_id)).dlr_status == "ACCEPTD"
    env.sandbox.advance(3)
    done = await client.status(sent.message_id)
    assert (done.status, done.dlr_status) == ("delivered", "DELIVRD")
    assert done.delivered_at is not None


async def test_sim_status_uses_the_sim_endpoint(env: CastEnv) -> None:
    """A SIM message is known to /sim/status, not /sms/status."""
    client = env.client()
    sent = await client.send_sim(
        "09171234567", "hi", idempotency_key="sim-st", sender_id=SIM_SENDER
    )
    assert sent.message_id is not None
    assert (await client.status(sent.message_id, "sim")).status == "sent"


async def test_test_key_sends_are_free_sandbox_mocks(env: CastEnv) -> None:
    """A cast_test_ key gets SANDBOX_ ids and "sandbox": true, and no credits move."""
    result = await env.client(DEFAULT_TEST_KEY).send_sms("09171234567", "hi", idempotency_key="t1")
    assert result.sandbox
    assert result.message_id is not None
    assert result.message_id.startswith("SANDBOX_")
    assert len(result.message_id) == 8 + 16
    assert env.sandbox.account(DEFAULT_TEST_KEY).credits == 0
    assert env.sandbox.billed("t1") == 0


async def test_client_never_shows_the_api_key() -> None:
    """repr() of a client masks the key."""
    import httpx2

    from castbridge.gateways.cast import CastClient

    async with httpx2.AsyncClient() as http:
        client = CastClient(http, api_key=DEFAULT_API_KEY)
        assert DEFAULT_API_KEY not in repr(client)
