"""How Cellcast calls are retried in-process: never a send whose outcome may be unknown."""

from __future__ import annotations

import random
from dataclasses import dataclass

from castbridge.gateways.cellcast.errors import CellcastError, CellcastRateLimitedError


# Cellcast has no idempotency key (gateways.md §6): a send repeated after it may have reached
# Cellcast can be sent and billed twice. So a send is retried in-call only when Cellcast provably
# did not act on it: a 429 (refused before processing) or a connection that was never made. A
# timeout after sending, a cut answer, a 5xx or an unreadable 2xx is raised with
# `outcome_unknown=True` for the core to reconcile through `find_sent`. Reads may be retried on
# any transient error.
@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often, and for how long, one call is retried in-process.

    `attempts` counts the first try; the default 1 means no in-call retry (the worker keeps its
    own persisted backoff). A 429 waits exactly its `Retry-After` (`default_retry_after` when
    missing); other retries back off exponentially with jitter. No retry starts that would end
    after `max_total_seconds`.
    """

    attempts: int = 1
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

    def backoff(self, retry_number: int) -> float:
        """Seconds before retry `retry_number` (1-based) after a non-429 failure."""
        base = min(self.backoff_max, self.backoff_initial * 2.0 ** (retry_number - 1))
        return base + random.uniform(0, self.backoff_jitter)

    def wait_for(self, error: CellcastError, retry_number: int) -> float:
        if isinstance(error, CellcastRateLimitedError):
            return error.retry_after if error.retry_after is not None else self.default_retry_after
        return self.backoff(retry_number)


def may_retry(error: Exception, *, send: bool) -> bool:
    """Whether `error` may be retried in-call (a `Throttled` from the pacer never is)."""
    if not isinstance(error, CellcastError) or not error.retryable:
        return False
    return not (send and error.outcome_unknown)
