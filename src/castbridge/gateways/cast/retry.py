"""How Cast calls are retried in-process (RetryPolicy), and Cast's two limits as `Limit`s."""

from __future__ import annotations

import random
from dataclasses import dataclass

from castbridge.limits import Limit

# Cast's documented limits (gateways.md §1.9): 30 requests/s per IP with burst 50, and 10
# messages/s per account by default.
CAST_IP_BURST = 50.0


# Why sends may be retried at all: Cast dedupes sends on X-Idempotency-Key for 24 h (gateways.md
# §1.5). A send that timed out or got a 5xx may or may not have been accepted; repeating it is
# safe ONLY because every retry of that message reuses the same key, so Cast answers the repeat
# from its cache ("X-Idempotent-Replay: true") instead of sending and billing a second time. The
# caller must never retry a message after ~23 h, when the cached answer may have expired.
@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often, and for how long, one call is retried in-process.

    `attempts` counts the first try (1 = never retry: the pipeline worker uses that and keeps its
    own persisted backoff). Only retryable errors are retried: 429, 5xx, timeouts and connection
    failures. A 429 waits exactly `Retry-After` (`default_retry_after` when the header is
    missing); other retries back off exponentially from `backoff_initial` up to `backoff_max`,
    plus up to `backoff_jitter` seconds. No retry is started that would end after
    `max_total_seconds` from the first attempt; the last error is raised instead.
    """

    attempts: int = 4
    max_total_seconds: float = 30.0
    backoff_initial: float = 0.5
    backoff_max: float = 8.0
    backoff_jitter: float = 0.5
    default_retry_after: float = 5.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.max_total_seconds <= 0:
            raise ValueError("max_total_seconds must be positive")
        if min(self.backoff_initial, self.backoff_max, self.backoff_jitter) < 0:
            raise ValueError("backoff values must not be negative")
        if self.default_retry_after < 0:
            raise ValueError("default_retry_after must not be negative")

    @classmethod
    def none(cls) -> RetryPolicy:
        """One attempt, no in-process retry (the worker's persisted backoff takes over)."""
        return cls(attempts=1)

    def backoff(self, retry_number: int) -> float:
        """Seconds before retry `retry_number` (1-based) after a non-429 failure."""
        base = min(self.backoff_max, self.backoff_initial * 2.0 ** (retry_number - 1))
        return base + random.uniform(0, self.backoff_jitter)


def send_limit(rate: float) -> Limit:
    """The per-account message bucket, paced so Cast's own limit at `rate` is never hit.

    Cast meters messages at the moment they arrive; our tokens are taken a network hop earlier,
    and uneven latency can bunch two sends together. A burst of half a second's worth leaves that
    much headroom in Cast's bucket (whose burst equals its rate), so we stay under it.
    """
    return Limit(rate, burst=max(1.0, rate / 2))


def ip_limit(rate: float = 25.0) -> Limit:
    """The per-egress-IP request bucket (Cast allows 30 req/s, burst 50); one per IP."""
    return Limit(rate, burst=max(1.0, min(CAST_IP_BURST / 2, rate)))
