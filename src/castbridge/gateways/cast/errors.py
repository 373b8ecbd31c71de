"""Cast.ph failures: the CastError tree and the one function that reads an error response.

Every Cast error is also one of the provider-neutral errors in `castbridge.gateways.base`, so
the pipeline handles it without knowing Cast:

    GatewayError
      CastError                                  (mixin base: every Cast failure)
        CastInvalidRequestError     Permanent    INVALID_REQUEST, METHOD_NOT_ALLOWED: our bug
        CastValidationError         Validation   VALIDATION_ERROR: a field was refused
          CastSenderIdError         Validation   sender ID not approved / none assigned (403)
        CastCredentialsError        Credentials  INVALID_API_KEY, API_KEY_REVOKED/EXPIRED,
                                                 USER_INACTIVE, IP_NOT_WHITELISTED
        CastInsufficientCreditsError Credits     INSUFFICIENT_CREDITS, CREDIT_LIMIT_REACHED
        CastChannelNotAllowedError  Permanent    CHANNEL_NOT_ALLOWED (sim/viber not enabled)
        CastNotFoundError           NotFound     NOT_FOUND
        CastAlreadyUnsubscribedError Permanent   ALREADY_UNSUBSCRIBED (422)
        CastPermanentError          Permanent    any other 4xx (unknown is never retried)
        CastBadResponseError        Permanent    2xx we cannot read (outcome may be unknown)
        CastRateLimitedError        RateLimited  RATE_LIMIT_EXCEEDED (429, `retry_after`)
        CastUnavailableError        Unavailable  INTERNAL_ERROR, PROVIDER_ERROR,
                                                 SERVICE_UNAVAILABLE, other 5xx, timeouts,
                                                 connection failures

Errors carry Cast's own sentence (`message`), its `error_code` (or, for Rev A bodies that have
none, the Rev B code the sentence corresponds to), the HTTP status and `retry_after`; never the
API key and never the whole body.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime

import httpx2

from castbridge.gateways.base import (
    CredentialsError,
    GatewayError,
    InsufficientCreditsError,
    NotFoundError,
    PermanentGatewayError,
    RateLimitedError,
    UnavailableError,
    ValidationFailedError,
)

GATEWAY = "cast"

# Our own codes for Rev B's undocumented sender-ID errors (gateways.md §1.6 lists the Rev A
# sentences but no error_code). The sandbox answers with these, and the client recognises the
# sentences whatever code Cast actually sends.
SENDER_ID_NOT_ALLOWED = "SENDER_ID_NOT_ALLOWED"
NO_SENDER_IDS = "NO_SENDER_IDS"

_MAX_MESSAGE_CHARS = 500
_KEY_PATTERN = re.compile(r"cast_[A-Za-z0-9_]{6,}")


class CastError(GatewayError):
    """Base of every Cast failure; `replayed` when Cast answered from its idempotency cache."""

    replayed: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        http_status: int | None = None,
        retry_after: float | None = None,
        outcome_unknown: bool = False,
    ) -> None:
        super().__init__(
            message,
            code=code,
            http_status=http_status,
            retry_after=retry_after,
            outcome_unknown=outcome_unknown,
            gateway=GATEWAY,
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, http_status={self.http_status!r}, "
            f"message={self.message!r})"
        )

    def as_final(self) -> CastError:
        """Mark a replayed error as this message's final answer (gateways.md §1.5): Cast will
        return the same cached response for every retry with this key, so retrying is futile."""
        self.replayed = True
        self.retryable = False
        return self


class CastInvalidRequestError(CastError, PermanentGatewayError):
    """Malformed JSON or wrong method: a bug on our side."""


class CastValidationError(CastError, ValidationFailedError):
    """A field was refused (number, text, scheduled_at)."""


class CastSenderIdError(CastValidationError):
    """The sender ID is not approved for this account, or the account has none."""


class CastCredentialsError(CastError, CredentialsError):
    """The key is invalid, revoked or expired, the account inactive, or our IP not allowed."""


class CastInsufficientCreditsError(CastError, InsufficientCreditsError):
    """Prepaid credits exhausted (INSUFFICIENT_CREDITS) or postpaid limit reached."""


class CastChannelNotAllowedError(CastError, PermanentGatewayError):
    """The channel (sim, viber) is not enabled on the account: a configuration error."""


class CastNotFoundError(CastError, NotFoundError):
    """Unknown message id, or one belonging to another account."""


class CastAlreadyUnsubscribedError(CastError, PermanentGatewayError):
    """The number has already opted out of this sender."""


class CastPermanentError(CastError, PermanentGatewayError):
    """Any other refusal; an unknown 4xx is treated as permanent for that message."""


class CastBadResponseError(CastError, PermanentGatewayError):
    """Cast answered 2xx with a body we cannot read; for a send the outcome is unknown."""


class CastRateLimitedError(CastError, RateLimitedError):
    """429: wait `retry_after` seconds, then retry with the same idempotency key."""


class CastUnavailableError(CastError, UnavailableError):
    """5xx, timeout or connection failure; retry with the same idempotency key."""


# error_code -> class. Every code in gateways.md §1.6.
_BY_CODE: dict[str, type[CastError]] = {
    "INVALID_REQUEST": CastInvalidRequestError,
    "VALIDATION_ERROR": CastValidationError,
    "INVALID_API_KEY": CastCredentialsError,
    "INSUFFICIENT_CREDITS": CastInsufficientCreditsError,
    "CREDIT_LIMIT_REACHED": CastInsufficientCreditsError,
    "API_KEY_REVOKED": CastCredentialsError,
    "API_KEY_EXPIRED": CastCredentialsError,
    "USER_INACTIVE": CastCredentialsError,
    "IP_NOT_WHITELISTED": CastCredentialsError,
    "CHANNEL_NOT_ALLOWED": CastChannelNotAllowedError,
    "NOT_FOUND": CastNotFoundError,
    "METHOD_NOT_ALLOWED": CastInvalidRequestError,
    "ALREADY_UNSUBSCRIBED": CastAlreadyUnsubscribedError,
    "RATE_LIMIT_EXCEEDED": CastRateLimitedError,
    "INTERNAL_ERROR": CastUnavailableError,
    "PROVIDER_ERROR": CastUnavailableError,
    "SERVICE_UNAVAILABLE": CastUnavailableError,
    SENDER_ID_NOT_ALLOWED: CastSenderIdError,
    NO_SENDER_IDS: CastSenderIdError,
}
KNOWN_ERROR_CODES = frozenset(_BY_CODE)

# Rev A bodies carry only a sentence (seeds/001). Matched case-insensitively, first match wins;
# the code is the Rev B code for the same condition.
_BY_MESSAGE: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), code)
    for pattern, code in (
        (r"missing x-api-key|invalid api key|api key (is )?(missing|invalid)", "INVALID_API_KEY"),
        (r"api key (is |has been )?revoked", "API_KEY_REVOKED"),
        (r"api key (has |is )?expired", "API_KEY_EXPIRED"),
        (r"(user )?account is inactive|user inactive", "USER_INACTIVE"),
        (r"ip (address )?(is )?not whitelisted", "IP_NOT_WHITELISTED"),
        (r"channel not (enabled|allowed)", "CHANNEL_NOT_ALLOWED"),
        (r"insufficient credits", "INSUFFICIENT_CREDITS"),
        (r"credit limit", "CREDIT_LIMIT_REACHED"),
        (r"no sender ids? (are )?assigned", NO_SENDER_IDS),
        (r"sender_?id .*not allowed|sender id .*not approved", SENDER_ID_NOT_ALLOWED),
        (r"service is disabled|service unavailable|temporarily disabled", "SERVICE_UNAVAILABLE"),
        (r"rate limit|too many requests", "RATE_LIMIT_EXCEEDED"),
        (r"already unsubscribed", "ALREADY_UNSUBSCRIBED"),
        (r"invalid json|malformed", "INVALID_REQUEST"),
        (r"method not allowed", "METHOD_NOT_ALLOWED"),
        (
            r"is required|must be|too long|too short|invalid|scheduled_at|sender id",
            "VALIDATION_ERROR",
        ),
        (r"not found", "NOT_FOUND"),
    )
)

# HTTP status -> (code, class) when neither error_code nor the sentence tells us more.
_BY_STATUS: dict[int, tuple[str, type[CastError]]] = {
    400: ("VALIDATION_ERROR", CastValidationError),
    401: ("INVALID_API_KEY", CastCredentialsError),
    402: ("INSUFFICIENT_CREDITS", CastInsufficientCreditsError),
    404: ("NOT_FOUND", CastNotFoundError),
    405: ("METHOD_NOT_ALLOWED", CastInvalidRequestError),
    408: ("REQUEST_TIMEOUT", CastUnavailableError),
    422: ("UNPROCESSABLE", CastPermanentError),
    429: ("RATE_LIMIT_EXCEEDED", CastRateLimitedError),
    500: ("INTERNAL_ERROR", CastUnavailableError),
    502: ("PROVIDER_ERROR", CastUnavailableError),
    503: ("SERVICE_UNAVAILABLE", CastUnavailableError),
}


def clean_message(text: str) -> str:
    """Cast's sentence, safe to store and show: no API key, bounded length."""
    text = _KEY_PATTERN.sub("cast_***", " ".join(text.split()))
    if len(text) > _MAX_MESSAGE_CHARS:
        text = text[: _MAX_MESSAGE_CHARS - 1] + "…"
    return text


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delay-seconds or an HTTP-date (RFC 9110).

    Returns None when the header is missing or unreadable (the caller picks a default); a date
    in the past gives 0.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _classify(status: int, code: str | None, message: str | None) -> tuple[str, type[CastError]]:
    if code is not None and code.upper() in _BY_CODE:
        return code.upper(), _BY_CODE[code.upper()]
    if status == 429:
        return code or "RATE_LIMIT_EXCEEDED", CastRateLimitedError
    matched: str | None = None
    if message:
        matched = next((c for pattern, c in _BY_MESSAGE if pattern.search(message)), None)
    if status >= 500:
        # A server error is transient whatever its sentence says ("sim service is disabled").
        fallback = _BY_STATUS.get(status, (f"HTTP_{status}", CastUnavailableError))[0]
        return code or matched or fallback, CastUnavailableError
    if matched is not None:
        return (code or matched), _BY_CODE[matched]
    if status in _BY_STATUS:
        default_code, cls = _BY_STATUS[status]
        return code or default_code, cls
    return code or f"HTTP_{status}", CastPermanentError


def translate_error(
    status: int,
    content: bytes,
    headers: Mapping[str, str],
    *,
    send: bool,
    now: datetime | None = None,
) -> CastError:
    """The one place a Cast error response becomes a CastError.

    Classification: Rev B `error_code` when present and known; else Rev A's sentence; else the
    HTTP status (unknown 4xx: permanent; 5xx: unavailable). `send` says whether the request was
    a send, where a 5xx means the outcome is unknown (Cast may have accepted the message).
    """
    code: str | None = None
    message: str | None = None
    try:
        payload = json.loads(content) if content else None
    except (ValueError, UnicodeDecodeError):
        payload = None
    if isinstance(payload, dict):
        raw_code = payload.get("error_code")
        raw_message = payload.get("error") or payload.get("message")
        code = str(raw_code) if isinstance(raw_code, str) and raw_code else None
        message = clean_message(raw_message) if isinstance(raw_message, str) else None
        described = "an error"
    else:
        described = "a non-JSON body" if content else "an empty body"
    code, cls = _classify(status, code, message)
    retry_after = parse_retry_after(headers.get("retry-after"), now=now)
    return cls(
        message or f"Cast answered HTTP {status} with {described}",
        code=code,
        http_status=status,
        retry_after=retry_after,
        outcome_unknown=send and status >= 500,
    )


# The request never left our side: nothing can have been sent or billed.
_NEVER_SENT = (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout, httpx2.ProxyError)


def transport_error(exc: httpx2.TransportError, *, send: bool) -> CastUnavailableError:
    """A timeout or connection failure. For a send it is an unknown outcome unless the
    connection was never made (a connect error or a pool timeout)."""
    never_sent = isinstance(exc, _NEVER_SENT)
    if isinstance(exc, httpx2.TimeoutException):
        code, what = "TIMEOUT", "timed out talking to Cast"
    else:
        code, what = "CONNECTION_ERROR", "connection to Cast failed"
    return CastUnavailableError(
        f"{what} ({type(exc).__name__})",
        code=code,
        outcome_unknown=send and not never_sent,
    )
