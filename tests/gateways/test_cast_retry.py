"""Retries, Retry-After, timeouts resolved by idempotent replay, and the per-account limiter."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx2
import pytest
import pytest_asyncio

from castbridge.gateways.cast import (
    CastRateLimitedError,
    CastUnavailableError,
    RetryPolicy,
)
from castbridge.limits import LocalPacer, Throttled
from castbridge.sandbox.cast import DEFAULT_API_KEY
from tests.gateways.cast_support import (
    FAST_RETRY,
    NO_RETRY,
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


async def test_429_waits_retry_after_and_holds_back_concurrent_sends(server: SharedServer) -> None:
    """A 429 with Retry-After: 1 is retried no sooner than 1 s later with the same key, and the
    paused send limiter holds another send on the account back for that second too."""
    env = server.sandbox(make_config(retry_after_seconds=1))
    env.sandbox.faults.fail_next = [429]
    client = env.client(pacing=paced(100.0))
    started = time.monotonic()
    first = asyncio.create_task(client.send_sms("09171234567", "a", idempotency_key="ra-1"))
    for _ in range(500):  # wait (at most 5 s) for the first send's 429
        if env.sandbox.stats.injected[429]:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)  # and for the client to read it and pause the limiter
    second = await client.send_sms("09171234567", "b", idempotency_key="ra-2")
    second_done = time.monotonic() - started
    result = await first
    assert result.success
    assert second.success
    assert not result.replayed
    assert 1.0 <= time.monotonic() - started < 2.5
    assert second_done >= 1.0
    assert env.sandbox.stats.injected[429] == 1  # the second send never hit the limit
    assert env.sandbox.billed("ra-1") == 1


async def test_retry_after_http_date_is_parsed(server: SharedServer) -> None:
    """An HTTP-date Retry-After becomes the seconds until that date."""
    env = server.sandbox(make_config(retry_after_seconds=3, retry_after_style="http-date"))
    env.sandbox.faults.fail_next = [429]
    with pytest.raises(CastRateLimitedError) as caught:
        await env.client(retry=NO_RETRY).send_sms("09171234567", "hi", idempotency_key="d-1")
    assert caught.value.retry_after is not None
    assert 1.5 <= caught.value.retry_after <= 3.0


async def test_retry_after_beyond_the_time_budget_is_raised_at_once(server: SharedServer) -> None:
    """A Retry-After longer than the remaining budget is not waited for in-process."""
    env = server.sandbox(make_config(retry_after_seconds=30))
    env.sandbox.faults.fail_next = [429]
    policy = RetryPolicy(attempts=5, max_total_seconds=2.0)
    started = time.monotonic()
    with pytest.raises(CastRateLimitedError) as caught:
        await env.client(retry=policy).send_sms("09171234567", "hi", idempotency_key="b-1")
    assert time.monotonic() - started < 1.0
    assert caught.value.retry_after == 30.0


async def test_server_errors_are_retried_with_the_same_key(server: SharedServer) -> None:
    """500 then 503, then success: one message, billed once."""
    env = server.sandbox()
    env.sandbox.faults.fail_next = [500, 503]
    result = await env.client().send_sms("09171234567", "hi", idempotency_key="s-1")
    assert result.success
    assert dict(env.sandbox.stats.injected) == {500: 1, 503: 1}
    assert env.sandbox.billed("s-1") == 1


async def test_attempts_are_bounded(server: SharedServer) -> None:
    """After `attempts` failures the last error is raised, marked as an unknown send outcome."""
    env = server.sandbox()
    env.sandbox.faults.fail_next = [502, 502, 502, 502]
    with pytest.raises(CastUnavailableError) as caught:
        await env.client().send_sms("09171234567", "hi", idempotency_key="x-1")
    assert caught.value.outcome_unknown
    assert env.sandbox.stats.injected[502] == FAST_RETRY.attempts
    assert env.sandbox.faults.fail_next == [502]


async def test_single_attempt_policy_never_retries(server: SharedServer) -> None:
    """RetryPolicy.none() (the worker's) raises the first retryable error as is."""
    env = server.sandbox()
    env.sandbox.faults.fail_next = [503]
    with pytest.raises(CastUnavailableError):
        await env.client(retry=NO_RETRY).send_sms("09171234567", "hi", idempotency_key="n-1")
    assert env.sandbox.stats.injected[503] == 1


async def test_permanent_errors_are_not_retried(server: SharedServer) -> None:
    """A 4xx is answered once, however many attempts are allowed."""
    env = server.sandbox()
    env.sandbox.account(DEFAULT_API_KEY).credits = 0
    with pytest.raises(Exception, match="insufficient credits"):
        await env.client().send_sms("09171234567", "hi", idempotency_key="c-1")
    assert env.sandbox.stats.requests == 1


async def test_timeout_after_commit_is_resolved_by_an_idempotent_replay(
    server: SharedServer,
) -> None:
    """The send is committed but the answer never arrives; the retry is a replay, one credit."""
    env = server.sandbox()
    env.sandbox.faults.timeout_next = 1
    env.sandbox.faults.timeout_seconds = 5.0
    before = env.sandbox.account(DEFAULT_API_KEY).credits
    async with httpx2.AsyncClient(timeout=0.3) as http:
        result = await env.client(http=http).send_sms("09171234567", "hi", idempotency_key="t-1")
    assert result.success
    assert result.replayed
    assert (env.sandbox.stats.timeouts, env.sandbox.stats.replays) == (1, 1)
    assert env.sandbox.billed("t-1") == 1
    assert env.sandbox.account(DEFAULT_API_KEY).credits == before - 1
    assert len(env.sandbox.messages) == 1


async def test_timeout_without_retries_is_an_unknown_outcome(server: SharedServer) -> None:
    """With no in-process retry, a read timeout on a send says the outcome is unknown."""
    env = server.sandbox()
    env.sandbox.faults.timeout_next = 1
    async with httpx2.AsyncClient(timeout=0.2) as http:
        with pytest.raises(CastUnavailableError) as caught:
            await env.client(http=http, retry=NO_RETRY).send_sms(
                "09171234567", "hi", idempotency_key="t-2"
            )
    assert (caught.value.code, caught.value.outcome_unknown) == ("TIMEOUT", True)
    assert env.sandbox.billed("t-2") == 1


async def test_dropped_connection_is_resolved_by_replay(server: SharedServer) -> None:
    """A connection cut mid-answer after commit is retried and replayed, billed once."""
    env = server.sandbox()
    env.sandbox.faults.drop_next = 1
    result = await env.client().send_sms("09171234567", "hi", idempotency_key="drop-1")
    assert result.replayed
    assert (env.sandbox.stats.drops, env.sandbox.billed("drop-1")) == (1, 1)


async def test_send_limiter_keeps_under_the_account_rate(server: SharedServer) -> None:
    """25 concurrent sends at CAST_RATE_LIMIT=10 against a 10 msg/s account: no 429, >= 1.5 s."""
    config = make_config()
    config.accounts[0].rate_limit = 10.0
    env = server.sandbox(config)
    client = env.client(pacing=paced(10.0), retry=NO_RETRY)
    started = time.monotonic()
    results = await asyncio.gather(
        *(client.send_sms("09171234567", "hi", idempotency_key=f"rl-{i}") for i in range(25))
    )
    elapsed = time.monotonic() - started
    assert all(r.success for r in results)
    assert env.sandbox.stats.rate_limited == 0
    assert elapsed >= 1.5


async def test_without_the_limiter_the_sandbox_would_429(server: SharedServer) -> None:
    """The same burst unpaced trips the sandbox's per-account limit (the control case)."""
    config = make_config()
    config.accounts[0].rate_limit = 10.0
    env = server.sandbox(config)
    client = env.client(retry=NO_RETRY)
    results = await asyncio.gather(
        *(client.send_sms("09171234567", "hi", idempotency_key=f"u-{i}") for i in range(25)),
        return_exceptions=True,
    )
    assert any(isinstance(r, CastRateLimitedError) for r in results)
    assert env.sandbox.stats.rate_limited > 0


async def test_bulk_counts_every_recipient_against_the_rate(server: SharedServer) -> None:
    """A bulk of N larger than the burst holds the next send back until N tokens refilled."""
    config = make_config()
    config.accounts[0].rate_limit = 100.0
    env = server.sandbox(config)
    client = env.client(pacing=paced(100.0), retry=NO_RETRY)
    started = time.monotonic()
    bulk = await client.bulk_sms(["09171234567"] * 80, "hi", idempotency_key="bulk-rl")
    single = await client.send_sms("09171234567", "hi", idempotency_key="after-bulk")
    assert bulk.success
    assert single.success
    assert env.sandbox.stats.rate_limited == 0
    assert time.monotonic() - started >= 0.3  # (80 - burst 50) / 100 msg/s


async def test_an_empty_bucket_refuses_before_anything_is_sent(server: SharedServer) -> None:
    """With a non-waiting pacer (the worker's), a spent account budget raises Throttled and no
    request reaches Cast: the job is rescheduled instead of holding a worker slot."""
    env = server.sandbox(make_config())
    client = env.client(pacing=paced(1.0, pacer=LocalPacer()), retry=NO_RETRY)
    await client.send_sms("09171234567", "hi", idempotency_key="th-1")
    requests = env.sandbox.stats.requests
    with pytest.raises(Throttled) as caught:
        await client.send_sms("09171234567", "hi", idempotency_key="th-2")
    assert 0.5 < caught.value.wait <= 1.0
    assert env.sandbox.stats.requests == requests
    assert env.sandbox.billed("th-2") == 0
