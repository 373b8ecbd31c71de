"""In-call retries and pacing: 429 with Retry-After honoured through the pacer, Throttled before
anything leaves, sends retried only when they provably never left."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx2
import pytest
import pytest_asyncio

from castbridge.gateways.castbrick import (
    CastBrickRateLimitedError,
    CastBrickUnavailableError,
    RetryPolicy,
)
from castbridge.limits import LocalPacer, Throttled
from castbridge.sandbox.castbrick import DEFAULT_API_KEY
from tests.gateways.castbrick_support import (
    AO,
    FAST_RETRY,
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


async def test_429_waits_retry_after_through_the_paused_bucket(server: SharedServer) -> None:
    """A genuine 429 (Retry-After: 1) pauses the key's bucket; with a BlockingPacer the send is
    retried no sooner than 1 s later and succeeds, sent and billed once."""
    env = server.sandbox(make_config(retry_after_seconds=1))
    env.sandbox.account(DEFAULT_API_KEY).rate_limit = 1.0
    client = env.client(base_path="", retry=FAST_RETRY, pacing=paced(100.0))
    await client.balance()  # spends the sandbox's only token
    started = time.monotonic()
    result = await client.send(AO, "after the pause", sender_id=None, fallback=False)
    elapsed = time.monotonic() - started
    assert result.message_id
    assert env.sandbox.stats.rate_limited == 1
    assert 1.0 <= elapsed < 3.0
    assert env.sandbox.billed(AO, "after the pause") == 1


async def test_429_pauses_the_bucket_for_the_next_caller(server: SharedServer) -> None:
    """Without in-call retries the 429 is raised, and the paused bucket then refuses the next
    request before it leaves (Throttled), for about Retry-After seconds."""
    env = server.sandbox(make_config(retry_after_seconds=5))
    env.sandbox.faults.fail_next = [429]
    pacer = LocalPacer()
    client = env.client(base_path="", pacing=paced(100.0, pacer=pacer))
    with pytest.raises(CastBrickRateLimitedError) as caught:
        await client.send(AO, "x", sender_id=None, fallback=False)
    assert caught.value.retry_after == 5.0
    assert caught.value.outcome_unknown is False
    requests = env.sandbox.stats.requests
    with pytest.raises(Throttled) as throttled:
        await client.balance()
    assert 4.0 < throttled.value.wait <= 5.1
    assert env.sandbox.stats.requests == requests  # nothing left


async def test_throttled_is_raised_before_anything_is_sent(server: SharedServer) -> None:
    """An empty local bucket raises Throttled before the request leaves: the sandbox sees
    nothing, and the error is not swallowed by the retry loop."""
    env = server.sandbox()
    client = env.client(base_path="", retry=FAST_RETRY, pacing=paced(1.0, pacer=LocalPacer()))
    await client.send(AO, "first", sender_id=None, fallback=False)
    requests = env.sandbox.stats.requests
    with pytest.raises(Throttled):
        await client.send(AO, "second", sender_id=None, fallback=False)
    assert env.sandbox.stats.requests == requests
    assert env.sandbox.billed(AO, "second") == 0


async def test_lazy_probe_is_paced_too(server: SharedServer) -> None:
    """The base-path probe takes tokens like any request: with one token, the probe gets it
    and the send is throttled before leaving."""
    env = server.sandbox()
    client = env.client(pacing=paced(1.0, pacer=LocalPacer()))
    with pytest.raises(Throttled):
        await client.send(AO, "x", sender_id=None, fallback=False)
    assert client.base_path == ""
    assert env.sandbox.stats.calls["POST /sms/send"] == 0


async def test_a_5xx_to_a_send_is_never_retried(server: SharedServer) -> None:
    """No idempotency key: a send answered 500 may have been taken, so even with attempts
    left it is raised at once (outcome unknown) for reconciliation."""
    env = server.sandbox()
    env.sandbox.faults.fail_next = [500, 500]
    with pytest.raises(CastBrickUnavailableError) as caught:
        await env.client(base_path="", retry=FAST_RETRY).send(
            AO, "x", sender_id=None, fallback=False
        )
    assert caught.value.outcome_unknown is True
    assert env.sandbox.stats.injected[500] == 1
    assert env.sandbox.faults.fail_next == [500]


async def test_reads_are_retried_on_5xx(server: SharedServer) -> None:
    """A read has no outcome to lose: 502 then 503, then the balance."""
    env = server.sandbox()
    env.sandbox.faults.targets = "all"
    env.sandbox.faults.fail_next = [502, 503]
    balance = await env.client(base_path="", retry=FAST_RETRY).balance()
    assert balance.balance == 10_000.0
    assert dict(env.sandbox.stats.injected) == {502: 1, 503: 1}


class _RefuseFirstConnect(httpx2.AsyncBaseTransport):
    """A transport whose first connection attempt is refused (the request never left)."""

    def __init__(self) -> None:
        self.inner = httpx2.AsyncHTTPTransport()
        self.refused = 0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if not self.refused:
            self.refused += 1
            raise httpx2.ConnectError("connection refused", request=request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_send_that_never_left_is_retried(server: SharedServer) -> None:
    """A refused connection proves nothing was sent: the send is retried in-call, once."""
    env = server.sandbox()
    transport = _RefuseFirstConnect()
    async with httpx2.AsyncClient(transport=transport) as http:
        client = env.client(base_path="", retry=FAST_RETRY, http=http)
        result = await client.send(AO, "retried", sender_id=None, fallback=False)
    assert result.message_id
    assert transport.refused == 1
    assert env.sandbox.billed(AO, "retried") == 1


async def test_retry_after_beyond_the_budget_is_raised_at_once(server: SharedServer) -> None:
    """A Retry-After longer than the remaining time budget is not waited for in-process."""
    env = server.sandbox(make_config(retry_after_seconds=30))
    env.sandbox.faults.fail_next = [429]
    policy = RetryPolicy(attempts=5, max_total_seconds=2.0)
    started = time.monotonic()
    with pytest.raises(CastBrickRateLimitedError):
        await env.client(base_path="", retry=policy).send(AO, "x", sender_id=None, fallback=False)
    assert time.monotonic() - started < 1.0


async def test_policy_rejects_nonsense() -> None:
    """Attempts below one and negative budgets are refused."""
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match="max_total_seconds"):
        RetryPolicy(max_total_seconds=0)
