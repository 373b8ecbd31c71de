"""The token bucket spreads callers at the configured rate and honours pauses."""

from __future__ import annotations

import asyncio
import time

from castbridge.ratelimit import KeyedLimiter, TokenBucket


async def test_bucket_holds_rate() -> None:
    """30 acquisitions at 50/s with burst 5 take at least (30-5)/50 s."""
    bucket = TokenBucket(rate=50, burst=5)
    started = time.monotonic()
    await asyncio.gather(*(bucket.acquire() for _ in range(30)))
    assert time.monotonic() - started >= (30 - 5) / 50 * 0.95


async def test_pause_holds_everyone_back() -> None:
    """After pause(0.2) nobody gets a token for 0.2 s."""
    bucket = TokenBucket(rate=1000, burst=10)
    bucket.pause(0.2)
    started = time.monotonic()
    await bucket.acquire()
    assert time.monotonic() - started >= 0.19


async def test_keys_are_independent() -> None:
    """A paused key does not slow another key down."""
    limiter = KeyedLimiter(rate=1000, burst=10)
    limiter.pause("slow", 5)
    started = time.monotonic()
    await limiter.acquire("fast")
    assert time.monotonic() - started < 0.5
