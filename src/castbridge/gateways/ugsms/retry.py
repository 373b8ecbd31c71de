"""How UGSMS calls are retried in-process: never a send that may have left (no idempotency)."""

from __future__ import annotations

import random
from dataclasses import dataclass

# Seconds in UGSMS's rate window (60 requests per minute per key, gateways.md §4).
RATE_WINDOW_SECONDS = 60.0


# Why a send is retried so rarely: UGSMS has no idempotency key and no list of sent messages
# (gateways.md §4, §6). Repeating a send that may have reached UGSMS can send and bill it twice,
# and nothing can tell us afterwards whether it did. So a send is retried only when it provably
# never left (a connect error, a connect or pool timeout) or when UGSMS's limiter refused it with
# a 429 before processing it. A timeout after sending, a cut connection, a 5xx or an unreadable
# 2xx to a send is raised at once with `outcome_unknown=True`. Reads (the balance) are retried on
# any transient failure.
@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often, and for how long, one call is retried in-process.

    `attempts` counts the first try; the default 1 never retries (the pipeline worker keeps its
    own persisted backoff; the CLI asks for more). A 429 waits exactly `Retry-After`
    (`default_retry_after`, a whole rate window, when the header is missing); other retries back
    off exponentially from `backoff_initial` up to `backoff_max` plus up to `backoff_jitter`.
    No retry is started that would end after `max_total_seconds` from the first attempt.
    """

    attempts: int = 1
    max_total_seconds: float = 30.0
    backoff_initial: float = 0.5
    backoff_max: float = 8.0
    backoff_jitter: float = 0.5
    default_retry_after: float = RATE_WINDOW_SECONDS

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
        return cls(attempts=1)

    def backoff(self, retry_number: int) -> float:
        """Seconds before retry `retry_number` (1-based) after a non-429 failure."""
        base = min(self.backoff_max, self.backoff_initial * 2.0 ** (retry_number - 1))
        return base + random.uniform(0, self.backoff_jitter)
