"""The rate limit a gateway enforces on its side: a non-blocking bucket that may go into debt."""

from __future__ import annotations

import time


class DebtBucket:
    """Accepts a request for n tokens while at least one token is left, then charges all n
    (so a bulk of N counts as N and the next requests wait for the debt to refill)."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.updated = time.monotonic()

    def take(self, n: float = 1.0) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < min(n, 1.0) - 1e-9:
            return False
        self.tokens -= n
        return True

    def retry_after(self) -> float:
        """Seconds until one token is back."""
        return max(0.0, (1.0 - self.tokens) / self.rate)
