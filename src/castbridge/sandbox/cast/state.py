"""The Cast sandbox's state and rules: accounts, messages, idempotency, limits, statistics.

Pure logic with no HTTP: `castbridge.sandbox.cast.app` turns requests into calls here, and
tests, the demo and benchmarks read the same object as `app.state.sandbox`.
"""

from __future__ import annotations

import ipaddress
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

from starlette.types import ASGIApp

from castbridge.sandbox.cast.account import AccountMixin
from castbridge.sandbox.cast.config import (
    TEST_KEY,
    CastSandboxConfig,
    Faults,
    SandboxAccount,
)
from castbridge.sandbox.cast.core import SandboxError, SandboxMessage, SandboxStats
from castbridge.sandbox.cast.sending import SendingMixin
from castbridge.sandbox.kit import DebtBucket, FaultStats, SandboxClock

MAX_IDEMPOTENCY_KEY = 255

# What an injected error answers (Cast's codes for these statuses, gateways.md §1.6).
_INJECTED = {
    429: ("RATE_LIMIT_EXCEEDED", "rate limit exceeded"),
    500: ("INTERNAL_ERROR", "internal server error"),
    502: ("PROVIDER_ERROR", "upstream provider error"),
    503: ("SERVICE_UNAVAILABLE", "service temporarily unavailable"),
}


@dataclass
class Cached:
    status: int
    body: dict[str, Any]
    created_at: float


class CastSandbox(SendingMixin, AccountMixin):
    """A faithful local Cast.ph (Rev B, gateways.md §1) with inspectable state."""

    def __init__(
        self, config: CastSandboxConfig | None = None, clock: Callable[[], float] | None = None
    ) -> None:
        self.config = config if config is not None else CastSandboxConfig()
        self.clock: Callable[[], float] = clock if clock is not None else SandboxClock()
        self.accounts: dict[str, SandboxAccount] = {a.api_key: a for a in self.config.accounts}
        self.messages: dict[str, SandboxMessage] = {}
        self.scheduled: list[dict[str, Any]] = []
        self.stats = SandboxStats()
        self.random = random.Random(self.config.seed)
        self._cache: dict[tuple[str, str], Cached] = {}
        self._ip_buckets: dict[str, DebtBucket] = {}
        self._account_buckets: dict[str, DebtBucket] = {}
        self._log_seq = 0

    # --- convenience for tests and demos --------------------------------------------------

    @property
    def faults(self) -> Faults:
        return self.config.faults

    def set_faults(self, faults: Faults) -> None:
        self.config.faults = faults

    @property
    def fault_stats(self) -> FaultStats:
        return self.stats

    # --- the kit's fault middleware asks these ----------------------------------------------

    def is_api_request(self, method: str, path: str) -> bool:
        return path.startswith("/api/")

    def is_send_request(self, method: str, path: str) -> bool:
        return method == "POST" and path.rsplit("/", 1)[-1] in ("send", "bulk")

    def error_app(self, status: int) -> ASGIApp:
        from castbridge.sandbox.cast.http import error_response

        code, message = _INJECTED.get(status, (f"HTTP_{status}", "injected fault"))
        headers = self.retry_after_header() if status == 429 else None
        return error_response(self, SandboxError(status, code, message, headers))

    def admit(self, client_ip: str) -> ASGIApp | None:
        from castbridge.sandbox.cast.http import error_response

        try:
            self.check_ip_rate(client_ip)
        except SandboxError as exc:
            return error_response(self, exc)
        return None

    def account(self, api_key: str) -> SandboxAccount:
        return self.accounts[api_key]

    def add_account(self, account: SandboxAccount) -> SandboxAccount:
        self.accounts[account.api_key] = account
        self._account_buckets.pop(account.api_key, None)
        return account

    def billed(self, idempotency_key: str, api_key: str | None = None) -> int:
        """How many times a send under `idempotency_key` was committed and charged. castbridge
        keys its sends `<locationId>:<messageId>[:<generation>]`, so a bare HighLevel messageId
        matches every key of that message."""
        return sum(
            n
            for (key, idem), n in self.stats.billed.items()
            if _same_message(idem, idempotency_key) and (api_key is None or key == api_key)
        )

    def status_of(self, message_id: str) -> str:
        return str(self.messages[message_id].status_at(self.clock(), self.config)["status"])

    def advance(self, seconds: float) -> None:
        """Move the sandbox clock (needs the default SandboxClock or one with `advance`)."""
        advance = getattr(self.clock, "advance", None)
        if advance is None:
            raise TypeError("this sandbox's clock cannot be advanced")
        advance(seconds)

    def snapshot(self) -> dict[str, Any]:
        """The `GET /_sandbox/stats` body."""
        now = self.clock()
        by_status = Counter(m.status_at(now, self.config)["status"] for m in self.messages.values())
        billed: Counter[str] = Counter()
        charged: Counter[str] = Counter()
        for (_, idem), n in self.stats.billed.items():
            billed[idem] += n
        for (_, idem), n in self.stats.credits_charged.items():
            charged[idem] += n
        return {
            "requests": self.stats.requests,
            "sends": self.stats.sends,
            "messages": self.stats.messages,
            "replays": self.stats.replays,
            "rate_limited_429": self.stats.rate_limited,
            "injected": {str(k): v for k, v in sorted(self.stats.injected.items())},
            "timeouts": self.stats.timeouts,
            "drops": self.stats.drops,
            "cut_before": self.stats.cut_before,
            "garbled": self.stats.garbled,
            "billed": dict(billed),
            "credits_charged": dict(charged),
            "unkeyed_sends": self.stats.unkeyed_sends,
            "messages_by_status": dict(by_status),
            "credits": {_mask(k): a.credits for k, a in self.accounts.items()},
        }

    def reset_stats(self) -> None:
        self.stats = SandboxStats()

    # --- limits ---------------------------------------------------------------------------

    def retry_after_header(self) -> dict[str, str]:
        seconds = self.config.retry_after_seconds
        if self.config.retry_after_style == "http-date":
            when = datetime.now(UTC) + timedelta(seconds=seconds)
            return {"Retry-After": format_datetime(when, usegmt=True)}
        return {"Retry-After": str(seconds)}

    def rate_limited(self) -> SandboxError:
        self.stats.rate_limited += 1
        return SandboxError(
            429, "RATE_LIMIT_EXCEEDED", "rate limit exceeded", self.retry_after_header()
        )

    def check_ip_rate(self, ip: str) -> None:
        bucket = self._ip_buckets.get(ip)
        if bucket is None:
            bucket = self._ip_buckets[ip] = DebtBucket(self.config.ip_rate, self.config.ip_burst)
        if not bucket.take(1):
            raise self.rate_limited()

    def check_account_rate(self, account: SandboxAccount, messages: int) -> None:
        bucket = self._account_buckets.get(account.api_key)
        if bucket is None or bucket.rate != account.rate_limit:
            bucket = DebtBucket(account.rate_limit, account.rate_limit)
            self._account_buckets[account.api_key] = bucket
        if not bucket.take(messages):
            raise self.rate_limited()

    # --- authentication -------------------------------------------------------------------

    def authenticate(self, api_key: str | None, client_ip: str) -> SandboxAccount:
        if not api_key:
            raise SandboxError(401, "INVALID_API_KEY", "missing X-API-Key header")
        account = self.accounts.get(api_key)
        if account is None and self.config.open_test_keys and TEST_KEY.match(api_key):
            account = self.add_account(
                SandboxAccount(
                    api_key=api_key,
                    id=len(self.accounts) + 1,
                    credits=0,
                    allowed_channels=["sms", "otp", "bulk", "sim"],
                )
            )
        if account is None:
            raise SandboxError(401, "INVALID_API_KEY", "invalid api key")
        if account.revoked:
            raise SandboxError(403, "API_KEY_REVOKED", "api key is revoked")
        if account.expired:
            raise SandboxError(403, "API_KEY_EXPIRED", "api key has expired")
        if not account.is_active:
            raise SandboxError(403, "USER_INACTIVE", "user account is inactive")
        if account.ip_whitelist is not None and not _ip_allowed(client_ip, account.ip_whitelist):
            raise SandboxError(403, "IP_NOT_WHITELISTED", "ip not whitelisted")
        return account

    # --- idempotency ----------------------------------------------------------------------

    def check_idempotency_key(self, key: str | None) -> None:
        if key is not None and (not key or len(key) > MAX_IDEMPOTENCY_KEY):
            raise SandboxError(
                400,
                "VALIDATION_ERROR",
                f"X-Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} characters",
            )

    def replay(self, api_key: str, key: str) -> Cached | None:
        cached = self._cache.get((api_key, key))
        if cached is None:
            return None
        if self.clock() - cached.created_at >= self.config.idempotency_ttl_seconds:
            del self._cache[(api_key, key)]
            return None
        self.stats.replays += 1
        return cached

    def remember(self, api_key: str, key: str, status: int, body: dict[str, Any]) -> None:
        # A 429 is the limiter speaking before any processing: never an answer to the send.
        if status == 429 or (status >= 400 and not self.config.cache_error_responses):
            return
        self._cache[(api_key, key)] = Cached(status, body, self.clock())

    # --- sends ----------------------------------------------------------------------------


def _same_message(key: str, wanted: str) -> bool:
    if key == wanted:
        return True
    parts = key.split(":")
    return len(parts) >= 2 and parts[1] == wanted


def _mask(api_key: str) -> str:
    return api_key[:10] + "…" + api_key[-4:]


def _ip_allowed(ip: str, allowed: list[str]) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    for entry in allowed:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


__all__ = [
    "CastSandbox",
    "SandboxClock",
    "SandboxError",
    "SandboxMessage",
    "SandboxStats",
]
