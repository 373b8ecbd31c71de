"""Async token-bucket rate limiters, one bucket per key (a Cast account, a HighLevel location)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class TokenBucket:
    """`rate` tokens per second, at most `burst` banked; `acquire` waits for its turn.

    Waiters are served in arrival order under one lock, so a burst of callers is spread evenly
    at `rate` rather than stampeding when tokens refill. `pause(seconds)` empties the bucket and
    holds everyone back, which is what an upstream 429 with Retry-After asks for.
    """

    def __init__(
        self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else 1.0)
        self._clock = clock
        self._tokens = self.burst
        self._updated = clock()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    def _refill(self, now: float) -> None:
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    async def acquire(self, tokens: float = 1.0) -> None:
        if tokens > self.burst:
            raise ValueError(f"cannot take {tokens} tokens from a bucket of {self.burst}")
        async with self._lock:
            while True:
                now = self._clock()
                if now < self._paused_until:
                    await asyncio.sleep(self._paused_until - now)
                    continue
                self._refill(now)
                if self._tokens >= tokens:
                    self._tokens -= tokens
                    return
                await asyncio.sleep((tokens - self._tokens) / self.rate)

    def pause(self, seconds: float) -> None:
        now = self._clock()
        self._paused_until = max(self._paused_until, now + seconds)
        self._tokens = 0.0
        self._updated = max(self._updated, self._paused_until)


class KeyedLimiter:
    """A TokenBucket per key, created on first use with the same rate and burst."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, TokenBucket] = {}

    def bucket(self, key: str) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst)
        return bucket

    async def acquire(self, key: str, tokens: float = 1.0) -> None:
        await self.bucket(key).acquire(tokens)

    def pause(self, key: str, seconds: float) -> None:
        self.bucket(key).pause(seconds)
