"""The HighLevel error tree, and the one function that turns a response into one of its errors.

    GHLError                    (retryable unless noted)
    ├── AuthError               401 after the one refresh-and-resend; not retryable
    ├── NotDownstreamedError    403 "No conversation provider found for this message"; retryable,
    │                           never a reason to refresh a token (ghl.md §8)
    ├── RateLimitedError        429; `retry_after` seconds; retryable
    ├── UnavailableError        5xx, timeouts, connection errors; retryable
    ├── UnexpectedResponseError a 2xx that lacks what it must carry (inbound without messageId)
    ├── PermanentRequestError   any other 4xx; not retryable
    ├── NeedsReinstallError     refresh token dead (invalid_grant); not retryable
    ├── RefreshFailedError      refresh refused otherwise (HTML, other 4xx); retryable
    ├── LocationInactiveError   "Location is not active" from /oauth/token; retry much later
    └── NotInstalledError       no usable installation for the location; not retryable

Errors carry the HTTP status, HighLevel's own message (scrubbed, shortened) and `traceId` —
never a token, a header or a whole body.
"""

from __future__ import annotations

import email.utils
import json
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx2

from castbridge.ghl.signature import SignatureError
from castbridge.ghl.versions import MESSAGE_STATUS, OAUTH_TOKEN, Endpoint
from castbridge.logging import scrub_text

__all__ = [
    "AuthError",
    "GHLError",
    "LocationInactiveError",
    "NeedsReinstallError",
    "NotDownstreamedError",
    "NotInstalledError",
    "PermanentRequestError",
    "RateLimitedError",
    "RefreshFailedError",
    "SignatureError",
    "UnavailableError",
    "UnexpectedResponseError",
    "error_from_response",
    "error_from_transport",
    "retry_after_seconds",
    "trace_id_of",
]

MESSAGE_LIMIT = 300
DEFAULT_RATE_LIMIT_WAIT = 10.0  # HighLevel's burst window (ghl.md §12)
MAX_RATE_LIMIT_WAIT = 3600.0
NOT_DOWNSTREAMED_TEXT = "no conversation provider found"
LOCATION_INACTIVE_TEXT = "location is not active"
# Only an answer that says the refresh token itself is dead means "reinstall" (ghl.md §6.3):
# OAuth's invalid_grant, or a message naming the refresh token. HighLevel's exact texts are
# **uncertain**; anything else (another 4xx, a proxy's HTML page, a 5xx) is retried with an
# alert instead, because marking a location needs_reinstall locks it out until a person acts.
DEAD_GRANT_CODES = frozenset({"invalid_grant"})
DEAD_GRANT_TEXTS = (
    "invalid grant",
    "invalid_grant",
    "invalid refresh token",
    "refresh token is invalid",
    "refresh token expired",
    "refresh token has expired",
    "refresh token revoked",
    "refresh token has been revoked",
    "refresh token not found",
)


class GHLError(Exception):
    """Base of every HighLevel failure. `retryable` says whether trying again later may help."""

    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        trace_id: str | None = None,
        operation: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.message = _clean(message)
        self.status_code = status_code
        self.trace_id = trace_id
        self.operation = operation
        self.code = code
        self.retry_after = retry_after
        super().__init__(self.message)

    @property
    def status(self) -> int | None:
        return self.status_code

    def __str__(self) -> str:
        parts = []
        if self.operation:
            parts.append(f"HighLevel {self.operation}")
        if self.status_code is not None:
            parts.append(str(self.status_code))
        text = " ".join(parts)
        text = f"{text}: {self.message}" if text else self.message
        if self.trace_id:
            text += f" (traceId {self.trace_id})"
        return text


class AuthError(GHLError):
    """401 even after one refresh and one resend."""


class NotDownstreamedError(GHLError):
    """The message is not yet known to HighLevel's provider routing; try again in seconds."""

    retryable = True


class RateLimitedError(GHLError):
    """429: this location spent its 100 requests / 10 s; wait `retry_after` seconds."""

    retryable = True


class UnavailableError(GHLError):
    """HighLevel failed (5xx) or could not be reached; the request may not have happened."""

    retryable = True


class UnexpectedResponseError(GHLError):
    """A 2xx without the data it must carry, e.g. an inbound message with no `messageId`."""

    retryable = True


class PermanentRequestError(GHLError):
    """HighLevel refused the request as it is (4xx); resending it unchanged will fail again."""


class NeedsReinstallError(GHLError):
    """The refresh token was refused; only a new install (OAuth grant) can fix the location."""


class RefreshFailedError(GHLError):
    """A refresh that HighLevel refused for a reason other than a dead refresh token (or that
    came back as an HTML page): retried later with an alert, the grant is kept."""

    retryable = True


class LocationInactiveError(GHLError):
    """HighLevel says the location is not active (suspended); paused, try again much later."""

    retryable = True


class NotInstalledError(GHLError):
    """castbridge holds no usable token for this location (never installed or uninstalled)."""


def _clean(message: str) -> str:
    text = scrub_text(" ".join(str(message).split()))
    if len(text) > MESSAGE_LIMIT:
        text = text[: MESSAGE_LIMIT - 1] + "…"
    return text


def json_body(response: httpx2.Response) -> Any:
    """The parsed JSON body, or None when there is none or it is not JSON."""
    if not response.content:
        return None
    try:
        return json.loads(response.content)
    except ValueError:
        return None


def trace_id_of(response: httpx2.Response, body: Any = None) -> str | None:
    """HighLevel's `traceId` from the body (where it documents it) or a trace header."""
    if body is None:
        body = json_body(response)
    if isinstance(body, dict):
        value = body.get("traceId")
        if isinstance(value, str) and value:
            return value[:128]
    header = response.headers.get("x-trace-id") or response.headers.get("traceid")
    return header[:128] if header else None


def _message(body: Any, response: httpx2.Response) -> str:
    if isinstance(body, dict):
        value = body.get("message")
        if isinstance(value, list):
            return "; ".join(str(item) for item in value)
        if isinstance(value, str) and value:
            return value
        error = body.get("error")
        if isinstance(error, str) and error:
            return error
    return response.reason_phrase or f"HTTP {response.status_code}"


def retry_after_seconds(headers: httpx2.Headers, *, now: datetime | None = None) -> float:
    """Seconds to wait after a 429: `Retry-After` (seconds or HTTP date), else HighLevel's
    `X-RateLimit-Interval-Milliseconds` (the window length), else the 10-s window."""
    raw = headers.get("retry-after")
    wait: float | None = None
    if raw:
        try:
            wait = float(raw)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(raw)
            except (TypeError, ValueError):
                when = None
            if when is not None:
                if when.tzinfo is None:
                    when = when.replace(tzinfo=UTC)
                wait = (when - (now or datetime.now(UTC))).total_seconds()
    if wait is None:
        interval = headers.get("x-ratelimit-interval-milliseconds")
        if interval:
            try:
                wait = float(interval) / 1000.0
            except ValueError:
                wait = None
    if wait is None or wait != wait:  # NaN
        wait = DEFAULT_RATE_LIMIT_WAIT
    return min(max(wait, 0.0), MAX_RATE_LIMIT_WAIT)


def error_from_response(
    response: httpx2.Response, endpoint: Endpoint, *, refresh: bool = False
) -> GHLError:
    """The one status-to-error mapping. `refresh` marks a refresh-token grant at /oauth/token."""
    status = response.status_code
    body = json_body(response)
    message = _message(body, response)
    code = body.get("error") if isinstance(body, dict) else None
    kwargs: dict[str, Any] = {
        "status_code": status,
        "trace_id": trace_id_of(response, body),
        "operation": endpoint.name,
        "code": code if isinstance(code, str) else None,
    }
    lowered = message.lower()
    if endpoint == OAUTH_TOKEN and 400 <= status < 500 and LOCATION_INACTIVE_TEXT in lowered:
        return LocationInactiveError(message, **kwargs)
    if refresh and 400 <= status < 500 and status != 429:
        if kwargs["code"] in DEAD_GRANT_CODES or any(t in lowered for t in DEAD_GRANT_TEXTS):
            return NeedsReinstallError(message, **kwargs)
        return RefreshFailedError(message, **kwargs)
    if endpoint == OAUTH_TOKEN and 400 <= status < 500 and status != 429:
        # A refused code or wrong client credentials: no token to refresh, nothing to retry.
        return PermanentRequestError(message, **kwargs)
    if status == 401:
        if NOT_DOWNSTREAMED_TEXT in lowered:
            return NotDownstreamedError(message, **kwargs)  # its pre-June-2025 status code
        return AuthError(message, **kwargs)
    if status == 403:
        # On the status endpoint every 403 is treated as the "not downstreamed yet" window:
        # HighLevel moved that case from 401 to 403 so that clients stop refreshing (ghl.md §8);
        # the caller bounds the retries.
        if endpoint == MESSAGE_STATUS or NOT_DOWNSTREAMED_TEXT in lowered:
            return NotDownstreamedError(message, **kwargs)
        return PermanentRequestError(message, **kwargs)
    if status == 429:
        return RateLimitedError(
            message, retry_after=retry_after_seconds(response.headers), **kwargs
        )
    if status >= 500 or status == 408:
        return UnavailableError(message, **kwargs)
    if 400 <= status < 500:
        return PermanentRequestError(message, **kwargs)
    return UnexpectedResponseError(f"unexpected HTTP {status}", **kwargs)


def error_from_transport(exc: httpx2.HTTPError, endpoint: Endpoint) -> UnavailableError:
    """A timeout or connection failure; the exception text is dropped (it may hold the URL)."""
    return UnavailableError(f"network error: {type(exc).__name__}", operation=endpoint.name)
