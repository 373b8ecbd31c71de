"""The one backoff policy: jittered, from the persisted attempt count, never under Retry-After."""

from __future__ import annotations

import random

from castbridge.config import Settings


def backoff(attempt: int, *, base: float, cap: float) -> float:
    """Full-jitter exponential backoff from the persisted attempt count (1-based)."""
    # The exponent is capped: a send that may have been accepted retries until the horizon,
    # and 2.0 ** 1024 would overflow a float.
    ceiling = min(cap, base * 2.0 ** min(max(0, attempt - 1), 60))
    return float(random.uniform(ceiling / 2, ceiling))


def retry_delay(settings: Settings, attempt: int, retry_after: float | None = None) -> float:
    """The configured jittered backoff, never shorter than the upstream's Retry-After."""
    jittered = backoff(attempt, base=settings.retry_base_seconds, cap=settings.retry_cap_seconds)
    return max(jittered, retry_after or 0.0)


def not_downstreamed_delay(attempt: int) -> float:
    """HighLevel's 403 window lasts 5-10 s, sometimes longer: 5, 10, 20, 40, then every 60 s."""
    return float(min(60.0, 5.0 * 2.0 ** max(0, attempt - 1)) * random.uniform(0.9, 1.1))


def throttled_delay(wait: float) -> float:
    """When a bucket refills: a little jitter so jobs waiting on one bucket do not all return
    at the same instant."""
    return wait + random.uniform(0.0, min(0.25, 0.1 + wait * 0.1))
