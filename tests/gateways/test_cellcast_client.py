"""CellcastClient against the sandbox on loopback: requests, pacing, retries, ambiguous outcomes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import date

import httpx2
import pytest
import pytest_asyncio

from castbridge.gateways.cellcast import (
    CellcastClient,
    CellcastCredentialsError,
    CellcastRateLimitedError,
    CellcastUnavailableError,
    CellcastValidationError,
    RetryPolicy,
)
from castbridge.gateways.cellcast.errors import CellcastBadResponseError
from castbridge.limits import LocalPacer, Throttled
from castbridge.sandbox.cellcast import DEFAULT_API_KEY
from tests.gateways.cellcast_support import (
    AU,
    FAST_RETRY,
    CellcastEnv,
    SharedServer,
    make_config,
    paced,
    shared_server,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server() -> AsyncIterator[SharedServer]:
    async with shared_server() as shared:
        yield shared


@pytest.fixture
def env(server: SharedServer) -> CellcastEnv:
    return server.sandbox()


async def test_send_posts_one_contact_with_crlf_and_never_schedules(env: CellcastEnv) -> None:
    """The body carries countryCode 61, the shared sender, customString, \\r\\n new lines, and
    neither scheduleAt nor delay."""
    data = await env.client().send_sms([AU], "line one\nline two", custom_string="loc-msg1")
    (item,) = data.queue_response
    message = env.sandbox.messages[item.message_id or ""]
    assert message.text == "line one\r\nline two"
    assert (message.sender, message.custom_string, message.scheduled) == (
        "#SharedNum#",
        "loc-msg1",
        False,
    )
    assert item.number == "61412345678"
    assert env.sandbox.stats.scheduled_requests == 0


async def test_reads_parse_every_envelope(env: CellcastEnv) -> None:
    """Report detail (flat), list (paged), account (meta, decimal balance), token verify,
    getResponses and getOptout (meta SUCCESS) all come back typed."""
    client = env.client()
    data = await client.send_sms([AU], "hi", custom_string="ref-1")
    message_id = data.queue_response[0].message_id or ""
    detail = await client.report(message_id)
    assert (detail.id, detail.status, detail.custom_string) == (message_id, "queued", "ref-1")
    page = await client.reports(custom_string="ref-1", from_date=date(2000, 1, 1))
    assert [row["_id"] for row in page.items] == [message_id]
    env.sandbox.account(DEFAULT_API_KEY).sms_balance = 12.7
    assert (await client.account()).sms_balance == 12.7
    token = await client.verify_token()
    assert token.name == "Sandbox Account"
    env.sandbox.emit_reply(DEFAULT_API_KEY, AU, "yes please")
    replies = await client.responses()
    assert replies.items[0]["body"] == "yes please"
    env.sandbox.emit_optout(DEFAULT_API_KEY, "0400000123")
    optouts = await client.optouts()
    assert optouts.items[0]["number"] == "61400000123"


async def test_expired_token_is_a_credentials_error(env: CellcastEnv) -> None:
    """401 {code, message: "Token expired"}: CredentialsError, pauses the account."""
    with pytest.raises(CellcastCredentialsError) as caught:
        await env.client("x" * 40).account()
    assert caught.value.pauses_account
    assert caught.value.message == "Token expired"


async def test_contacts_are_capped_before_any_request(env: CellcastEnv) -> None:
    """More than 1,000 contacts is refused locally."""
    with pytest.raises(CellcastValidationError):
        await env.client().send_sms([AU] * 1001, "hi")
    assert env.sandbox.stats.requests == 0


async def test_throttled_before_anything_is_sent(env: CellcastEnv) -> None:
    """With an empty bucket, `Throttled` is raised before the request leaves."""
    pacing = paced(1.0, pacer=LocalPacer())
    client = env.client(pacing=pacing)
    await client.send_sms([AU], "first")
    with pytest.raises(Throttled) as caught:
        await client.send_sms([AU], "second")
    assert caught.value.wait > 0
    assert env.sandbox.stats.sends == 1
    assert env.sandbox.billed_to(AU, "second") == 0


async def test_429_waits_retry_after_and_pauses_the_bucket(server: SharedServer) -> None:
    """A genuine 429 from the per-key limit is retried after Retry-After (1 s) in-call, and the
    paused bucket holds another caller back for that second too; nothing is billed twice."""
    config = make_config(retry_after_seconds=1)
    config.accounts[0].rate_limit = 2.0
    env = server.sandbox(config)
    client = env.client(pacing=paced(1000.0), retry=FAST_RETRY)
    await client.account()  # two calls spend the sandbox's burst of 2
    await client.account()
    started = time.monotonic()
    first = asyncio.create_task(client.send_sms([AU], "a", custom_string="ra-1"))
    for _ in range(300):
        if env.sandbox.stats.rate_limited:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    await client.account()  # waits on the paused bucket instead of hitting the limit
    second_done = time.monotonic() - started
    await first
    assert env.sandbox.stats.rate_limited == 1
    assert env.sandbox.billed("ra-1") == 1
    assert second_done >= 0.9
    assert 0.9 <= time.monotonic() - started < 3.0


async def test_429_without_retries_raises_rate_limited(env: CellcastEnv) -> None:
    """With one attempt the 429 is raised with its Retry-After, not counted as a send."""
    env.sandbox.faults.fail_next = [429]
    with pytest.raises(CellcastRateLimitedError) as caught:
        await env.client().send_sms([AU], "hi")
    assert caught.value.retry_after == 1.0
    assert not caught.value.outcome_unknown
    assert env.sandbox.stats.sends == 0


async def test_a_5xx_to_a_send_is_never_retried_in_call(env: CellcastEnv) -> None:
    """Without idempotency a 5xx send may have been taken: one attempt, outcome unknown."""
    env.sandbox.faults.fail_next = [502, 502]
    with pytest.raises(CellcastUnavailableError) as caught:
        await env.client(retry=FAST_RETRY).send_sms([AU], "hi")
    assert caught.value.outcome_unknown
    assert env.sandbox.stats.injected[502] == 1


async def test_reads_are_retried_on_server_errors(env: CellcastEnv) -> None:
    """A read is safe to repeat: 500 then success."""
    env.sandbox.faults.targets = "all"
    env.sandbox.faults.fail_next = [500]
    account = await env.client(retry=FAST_RETRY).account()
    assert account.sms_balance == 1000.0
    assert env.sandbox.stats.injected[500] == 1


@pytest.mark.parametrize(
    ("fault", "code", "billed"),
    [
        ("timeout_next", "TIMEOUT", 1),
        ("drop_next", "CONNECTION_ERROR", 1),
        ("cut_before_next", "CONNECTION_ERROR", 0),
    ],
)
async def test_ambiguous_send_outcomes_are_unknown(
    env: CellcastEnv, fault: str, code: str, billed: int
) -> None:
    """A read timeout after sending, a cut answer after or before processing: to the client
    all look alike, so every one is `outcome_unknown` (the sandbox knows the truth)."""
    setattr(env.sandbox.faults, fault, 1)
    env.sandbox.faults.timeout_seconds = 2.0
    async with httpx2.AsyncClient(timeout=0.3) as http:
        with pytest.raises(CellcastUnavailableError) as caught:
            await env.client(http=http, retry=FAST_RETRY).send_sms([AU], "hi", custom_string="amb")
    assert (caught.value.code, caught.value.outcome_unknown) == (code, True)
    assert env.sandbox.billed("amb") == billed


async def test_garbled_2xx_to_a_send_is_unknown(env: CellcastEnv) -> None:
    """An unreadable 200 after Cellcast processed the send: BadResponse, outcome unknown."""
    env.sandbox.faults.garble_next = 1
    with pytest.raises(CellcastBadResponseError) as caught:
        await env.client().send_sms([AU], "hi", custom_string="garbled")
    assert caught.value.outcome_unknown
    assert env.sandbox.billed("garbled") == 1


async def test_refused_connection_provably_never_left(server: SharedServer) -> None:
    """Nothing listens: a connect error, `outcome_unknown=False`, so the core may resend; with
    retries on, a send is retried only for such errors."""
    client = CellcastClient(
        server.http,
        api_key=DEFAULT_API_KEY,
        base_url="http://127.0.0.1:9",
        retry=RetryPolicy(attempts=2, backoff_initial=0.01, backoff_jitter=0.0),
    )
    with pytest.raises(CellcastUnavailableError) as caught:
        await client.send_sms([AU], "hi")
    assert (caught.value.code, caught.value.outcome_unknown) == ("CONNECTION_ERROR", False)


async def test_repr_hides_the_key(env: CellcastEnv) -> None:
    """The client's repr never shows its bearer token."""
    assert DEFAULT_API_KEY not in repr(env.client())
