"""Pacing under 60 requests a minute, 429 + Retry-After, `x-ratelimit-remaining: 0`, and the
in-call retries a gateway without idempotency may make (only when nothing can have been sent)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import httpx2
import pytest
import pytest_asyncio

from castbridge.gateways.ugsms import (
    RetryPolicy,
    UgsmsClient,
    UgsmsPacing,
    UgsmsRateLimitedError,
    UgsmsUnavailableError,
    request_limit,
)
from castbridge.limits import BlockingPacer, Limit, LocalPacer, Throttled
from castbridge.sandbox.ugsms import (
    DEFAULT_API_KEY,
    SandboxAccount,
    UgsmsSandbox,
    UgsmsSandboxConfig,
)
from tests.gateways.ugsms_support import (
    FAST_RETRY,
    UG_LOCAL,
    SharedServer,
    paced,
    shared_server,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server() -> AsyncIterator[SharedServer]:
    async with shared_server() as shared:
        yield shared


class FakeClock:
    """Seconds that only move when a test says so, shared by our pacer and the sandbox."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _fast_pacing(pacer: BlockingPacer | LocalPacer) -> UgsmsPacing:
    """A quick bucket, so a test measures the pause and not the refill."""
    return UgsmsPacing(pacer=pacer, bucket="acct:test", limit=Limit(rate=50.0, burst=5.0))


async def _send_paced(
    server: SharedServer, limit: Limit | None, sends: int
) -> tuple[UgsmsSandbox, list[float]]:
    """`sends` sends through a non-waiting pacer (None: unpaced), moving the shared fake clock
    by each Throttled wait as the worker's rescheduling would; returns the sandbox and the
    times of the accepted sends."""
    clock = FakeClock()
    config = UgsmsSandboxConfig(accounts=[SandboxAccount(api_key=DEFAULT_API_KEY, balance=1e6)])
    sandbox = UgsmsSandbox(config, clock)
    server.sandbox_app.state.sandbox = sandbox
    server.switch.app = server.sandbox_app
    pacing = (
        None if limit is None else UgsmsPacing(LocalPacer(clock), bucket="acct:sim", limit=limit)
    )
    client = UgsmsClient(
        server.http, api_key=DEFAULT_API_KEY, base_url=server.url + "/api/v2", pacing=pacing
    )
    times: list[float] = []
    for i in range(sends):
        while True:
            try:
                await client.send(UG_LOCAL, f"m{i}")
            except Throttled as throttled:
                clock.advance(throttled.wait + 1e-6)
                continue
            except UgsmsRateLimitedError:
                break  # the control case: counted by the sandbox, then move on
            times.append(clock())
            break
    return sandbox, times


def _busiest_minute(times: list[float]) -> int:
    return max(sum(1 for t in times if start <= t < start + 60.0) for start in times)


async def test_default_pacing_never_trips_the_60_per_minute_limit(server: SharedServer) -> None:
    """150 sends at the default 50 requests/minute against UGSMS's fixed 60-a-minute window:
    no 429, never more than 50 in any minute, and `x-ratelimit-remaining` never hits 0."""
    sandbox, times = await _send_paced(server, request_limit(50.0), 150)
    assert len(times) == 150
    assert sandbox.stats.rate_limited == 0
    assert _busiest_minute(times) <= 50
    assert sandbox.billed() == 150


async def test_unpaced_sends_trip_the_window(server: SharedServer) -> None:
    """The control case: without the pacer the 61st request in a minute is answered 429."""
    sandbox, times = await _send_paced(server, None, 70)
    assert len(times) == 60
    assert sandbox.stats.rate_limited == 10


async def test_remaining_header_catches_a_bucket_set_too_high(server: SharedServer) -> None:
    """A bucket allowing 120 a minute would trip UGSMS, but `x-ratelimit-remaining: 0` pauses
    it for a window first: still no 429 and at most 60 in any minute."""
    sandbox, times = await _send_paced(server, request_limit(120.0), 150)
    assert len(times) == 150
    assert sandbox.stats.rate_limited == 0
    assert _busiest_minute(times) <= 60


async def test_429_waits_retry_after_and_holds_back_other_sends(server: SharedServer) -> None:
    """A 429 (Retry-After: 1) is not a processed send: it is retried no sooner than 1 s later,
    and the paused bucket holds a second send on the key back for that second too."""
    env = server.sandbox(UgsmsSandboxConfig(rate_window_seconds=1.0))
    env.sandbox.faults.fail_next = [429]
    client = env.client(retry=FAST_RETRY, pacing=_fast_pacing(BlockingPacer(LocalPacer())))
    started = time.monotonic()
    first = asyncio.create_task(client.send(UG_LOCAL, "a"))
    for _ in range(500):
        if env.sandbox.stats.injected[429]:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # let the client read the 429 and pause the bucket
    await client.send(UG_LOCAL, "b")
    second_done = time.monotonic() - started
    await first
    assert 1.0 <= second_done < 2.5
    assert env.sandbox.stats.injected[429] == 1
    assert (env.sandbox.billed(text="a"), env.sandbox.billed(text="b")) == (1, 1)


async def test_retry_after_beyond_the_budget_is_raised_and_pauses_the_bucket(
    server: SharedServer,
) -> None:
    """A Retry-After longer than the in-call budget is raised at once; the bucket stays paused
    for it, so the next send is Throttled before it leaves."""
    env = server.sandbox(UgsmsSandboxConfig(rate_window_seconds=30.0))
    env.sandbox.faults.fail_next = [429]
    policy = RetryPolicy(attempts=5, max_total_seconds=2.0)
    client = env.client(retry=policy, pacing=_fast_pacing(LocalPacer()))
    started = time.monotonic()
    with pytest.raises(UgsmsRateLimitedError) as caught:
        await client.send(UG_LOCAL, "x")
    assert time.monotonic() - started < 1.0
    assert caught.value.retry_after == 30.0
    with pytest.raises(Throttled) as throttled:
        await client.send(UG_LOCAL, "y")
    assert 29.0 < throttled.value.wait <= 30.5
    assert env.sandbox.stats.requests == 1


async def test_429_without_retry_after_pauses_a_whole_window(server: SharedServer) -> None:
    """No Retry-After: the safe wait is a whole 60 s window (RetryPolicy's default)."""
    canned = server.canned(429, {"message": "Too Many Attempts."}, pacing=paced(pacer=LocalPacer()))
    canned.client.retry = RetryPolicy()
    with pytest.raises(UgsmsRateLimitedError) as caught:
        await canned.client.send(UG_LOCAL, "x")
    assert caught.value.retry_after is None
    with pytest.raises(Throttled) as throttled:
        await canned.client.balance()
    assert throttled.value.wait >= 59.0
    assert len(canned.requests) == 1


async def test_remaining_zero_pauses_the_key_for_a_window(server: SharedServer) -> None:
    """When UGSMS says `x-ratelimit-remaining: 0` (another program shares the key), the bucket
    waits a whole window although our own count still has tokens."""
    config = UgsmsSandboxConfig(accounts=[SandboxAccount(api_key=DEFAULT_API_KEY, rate_limit=2)])
    env = server.sandbox(config)
    client = env.client(pacing=paced(60.0, pacer=LocalPacer()))
    await client.send(UG_LOCAL, "one")
    await client.send(UG_LOCAL, "two")  # answered with x-ratelimit-remaining: 0
    with pytest.raises(Throttled) as throttled:
        await client.send(UG_LOCAL, "three")
    assert 59.0 < throttled.value.wait <= 61.5
    assert env.sandbox.stats.requests == 2
    assert env.sandbox.stats.rate_limited == 0


async def test_an_empty_bucket_refuses_before_anything_is_sent(server: SharedServer) -> None:
    """With the worker's non-waiting pacer, a spent budget raises Throttled and no request
    reaches UGSMS: nothing billed, the job is rescheduled."""
    env = server.sandbox()
    client = env.client(pacing=paced(2.0, pacer=LocalPacer()))  # burst 1, then 1 a minute
    await client.send(UG_LOCAL, "first")
    with pytest.raises(Throttled) as throttled:
        await client.send(UG_LOCAL, "second")
    assert 55.0 < throttled.value.wait <= 60.0
    assert env.sandbox.stats.requests == 1
    assert env.sandbox.billed(text="second") == 0


async def test_a_5xx_to_a_send_is_never_retried(server: SharedServer) -> None:
    """Even with attempts to spare, a send answered 500 is raised at once (outcome unknown):
    retrying without an idempotency key could send it twice."""
    env = server.sandbox()
    env.sandbox.faults.fail_next = [500, 500]
    with pytest.raises(UgsmsUnavailableError) as caught:
        await env.client(retry=FAST_RETRY).send(UG_LOCAL, "x")
    assert caught.value.outcome_unknown
    assert env.sandbox.stats.injected[500] == 1
    assert env.sandbox.faults.fail_next == [500]


@pytest.mark.parametrize("fault", ["timeout_next", "drop_next"])
async def test_a_send_that_may_have_left_is_never_retried(server: SharedServer, fault: str) -> None:
    """A timeout after sending or a cut answer is raised after ONE request: billed once."""
    env = server.sandbox()
    setattr(env.sandbox.faults, fault, 1)
    async with httpx2.AsyncClient(timeout=0.3) as http:
        with pytest.raises(UgsmsUnavailableError) as caught:
            await env.client(http=http, retry=FAST_RETRY).send(UG_LOCAL, "once")
    assert caught.value.outcome_unknown
    assert env.sandbox.stats.requests == 1
    assert env.sandbox.billed(UG_LOCAL, "once") == 1


async def test_a_read_is_retried_on_server_errors(server: SharedServer) -> None:
    """The balance has no outcome to lose: 500 then 503, then the answer."""
    env = server.sandbox()
    env.sandbox.faults.targets = "all"
    env.sandbox.faults.fail_next = [500, 503]
    balance = await env.client(retry=FAST_RETRY).balance()
    assert balance.balance == 10_000.0
    assert dict(env.sandbox.stats.injected) == {500: 1, 503: 1}


class _Counting(httpx2.AsyncBaseTransport):
    """The real transport, counting the requests it is asked to make."""

    def __init__(self) -> None:
        self.inner = httpx2.AsyncHTTPTransport()
        self.calls = 0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.calls += 1
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_send_that_never_connected_is_retried() -> None:
    """A refused connection proves the send never left: it is retried up to `attempts`."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    transport = _Counting()
    async with httpx2.AsyncClient(transport=transport) as http:
        client = UgsmsClient(
            http, api_key=DEFAULT_API_KEY, base_url=f"http://127.0.0.1:{port}", retry=FAST_RETRY
        )
        with pytest.raises(UgsmsUnavailableError) as caught:
            await client.send(UG_LOCAL, "x")
    assert (caught.value.code, caught.value.outcome_unknown) == ("CONNECTION_ERROR", False)
    assert transport.calls == FAST_RETRY.attempts
