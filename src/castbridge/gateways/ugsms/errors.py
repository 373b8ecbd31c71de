"""UGSMS failures: the UgsmsError tree and the one function that reads an error response.

UGSMS sends no error codes, only sentences (`{error, help?}`, or `{success:false, message}`),
so the codes below are castbridge's own, chosen from the sentence and then the HTTP status:

    GatewayError
      UgsmsError                                     (mixin base: every UGSMS failure)
        UgsmsValidationError        Validation     INVALID_NUMBER, INVALID_SENDER_ID,
                                                   VALIDATION_ERROR: a field was refused
        UgsmsCredentialsError       Credentials    API_KEY_REQUIRED, INVALID_API_KEY,
                                                   CREDENTIALS_REQUIRED (v1's answer to a
                                                   key), ACCOUNT_INACTIVE         pauses
        UgsmsInsufficientBalanceError Credits      INSUFFICIENT_BALANCE            pauses
        UgsmsRefusedError           Permanent      REFUSED (`success:false` or another 4xx
                                                   with a reason), NOT_FOUND, HTTP_4xx
        UgsmsBadResponseError       Permanent      INVALID_RESPONSE: a 2xx we cannot read
                                                   (for a send: outcome unknown)
        UgsmsRateLimitedError       RateLimited    RATE_LIMITED (429, `retry_after`)
        UgsmsUnavailableError       Unavailable    SERVER_ERROR / HTTP_5xx, TIMEOUT,
                                                   CONNECTION_ERROR

Errors carry UGSMS's sentence cut to 500 characters (phone numbers masked), our code, the HTTP
status and `retry_after`; never the API key and never the whole body.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx2

from castbridge.gateways.base import (
    BadResponseError,
    CredentialsError,
    GatewayError,
    InsufficientCreditsError,
    PermanentGatewayError,
    RateLimitedError,
    UnavailableError,
    ValidationFailedError,
)
from castbridge.logging import scrub_text

GATEWAY = "ugsms"

MAX_MESSAGE_CHARS = 500


class UgsmsError(GatewayError):
    """Base of every UGSMS failure."""

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
            f"outcome_unknown={self.outcome_unknown!r}, message={self.message!r})"
        )


class UgsmsValidationError(UgsmsError, ValidationFailedError):
    """A field was refused (number, text, sender ID), by UGSMS or by our own checks."""


class UgsmsCredentialsError(UgsmsError, CredentialsError):
    """The key is missing, unknown, revoked or expired, or the account is inactive."""


class UgsmsInsufficientBalanceError(UgsmsError, InsufficientCreditsError):
    """The UGX balance does not cover the message."""


class UgsmsRefusedError(UgsmsError, PermanentGatewayError):
    """UGSMS refused the request for a reason we do not classify further; not retried."""


class UgsmsBadResponseError(UgsmsError, BadResponseError):
    """UGSMS answered 2xx with a body we cannot read; for a send the outcome is unknown."""


class UgsmsRateLimitedError(UgsmsError, RateLimitedError):
    """429: wait `retry_after` seconds. Read as "not processed": UGSMS's `x-ratelimit-*`
    headers are those of a throttle in front of the endpoint, which refuses before the send
    runs (assumed; nothing documents it otherwise)."""


class UgsmsUnavailableError(UgsmsError, UnavailableError):
    """5xx, timeout or connection failure; `outcome_unknown` says whether a send may have left."""


# Sentences, matched case-insensitively in order; first match wins. UGSMS's own wordings
# (gateways.md §4, the seed) plus the obvious variants of what the docs leave unstated.
_BY_SENTENCE: tuple[tuple[re.Pattern[str], str, type[UgsmsError]], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), code, cls)
    for pattern, code, cls in (
        (
            r"insufficient (balance|credit|funds)|low balance",
            "INSUFFICIENT_BALANCE",
            UgsmsInsufficientBalanceError,
        ),
        (
            r"api.?key is required|provide x-api-key|missing api.?key",
            "API_KEY_REQUIRED",
            UgsmsCredentialsError,
        ),
        (
            r"credentials are required|provide username and password",
            "CREDENTIALS_REQUIRED",
            UgsmsCredentialsError,
        ),
        (
            r"(invalid|unknown|wrong|revoked|expired|inactive) api.?key"
            r"|api.?key (is |has been )?(invalid|revoked|expired|inactive|disabled)"
            r"|unauthori[sz]ed|unauthenticated",
            "INVALID_API_KEY",
            UgsmsCredentialsError,
        ),
        (
            r"account (is )?(suspended|inactive|disabled|blocked)",
            "ACCOUNT_INACTIVE",
            UgsmsCredentialsError,
        ),
        (r"too many (requests|attempts)|rate limit", "RATE_LIMITED", UgsmsRateLimitedError),
        (r"sender.?id", "INVALID_SENDER_ID", UgsmsValidationError),
        (r"phone|number", "INVALID_NUMBER", UgsmsValidationError),
        (
            r"message.?body|message is required|is required|must|too long|invalid",
            "VALIDATION_ERROR",
            UgsmsValidationError,
        ),
    )
)

# HTTP status -> (code, class) when the sentence says nothing we recognise.
_BY_STATUS: dict[int, tuple[str, type[UgsmsError]]] = {
    400: ("VALIDATION_ERROR", UgsmsValidationError),
    401: ("INVALID_API_KEY", UgsmsCredentialsError),
    402: ("INSUFFICIENT_BALANCE", UgsmsInsufficientBalanceError),
    403: ("INVALID_API_KEY", UgsmsCredentialsError),
    404: ("NOT_FOUND", UgsmsRefusedError),
    408: ("TIMEOUT", UgsmsUnavailableError),
    422: ("VALIDATION_ERROR", UgsmsValidationError),
    429: ("RATE_LIMITED", UgsmsRateLimitedError),
}


def clean_message(text: str) -> str:
    """A gateway sentence safe to store and show: whitespace folded, phone numbers masked,
    at most 500 characters."""
    text = scrub_text(" ".join(text.split()))
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 1] + "…"
    return text


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delay-seconds or an HTTP-date (RFC 9110).

    None when missing or unreadable (the caller waits a whole window); a past date gives 0.
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


def reason_of(payload: Any) -> str | None:
    """The sentence an answer gives: `error` (+ `help`), else `message`, else the first
    Laravel-style `errors` entry; None when there is none."""
    if not isinstance(payload, dict):
        return None
    error, message, helptext = payload.get("error"), payload.get("message"), payload.get("help")
    text: str | None = None
    if isinstance(error, str) and error.strip():
        text = error.strip()
    elif isinstance(error, dict) and isinstance(error.get("message"), str):
        text = str(error["message"]).strip()
    elif isinstance(message, str) and message.strip():
        text = message.strip()
    if text is None:
        errors = payload.get("errors")
        if isinstance(errors, dict):
            for value in errors.values():
                first = value[0] if isinstance(value, list) and value else value
                if isinstance(first, str) and first.strip():
                    text = first.strip()
                    break
    if text is None:
        return None
    if isinstance(helptext, str) and helptext.strip():
        text = f"{text} ({helptext.strip()})"
    return clean_message(text)


def _classify(status: int, reason: str | None) -> tuple[str, type[UgsmsError]]:
    if status == 429:
        return "RATE_LIMITED", UgsmsRateLimitedError
    if status >= 500:
        # A server error is transient whatever its sentence says.
        return ("SERVER_ERROR" if status == 500 else f"HTTP_{status}"), UgsmsUnavailableError
    if reason:
        for pattern, code, cls in _BY_SENTENCE:
            if pattern.search(reason):
                if cls is UgsmsRateLimitedError and status != 429:
                    continue  # only a real 429 carries a Retry-After to honour
                return code, cls
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if 200 <= status < 300:
        return "REFUSED", UgsmsRefusedError  # `success: false` under a 2xx, unexplained
    return f"HTTP_{status}", UgsmsRefusedError


def translate_error(
    status: int,
    content: bytes,
    headers: Mapping[str, str],
    *,
    send: bool,
    now: datetime | None = None,
) -> UgsmsError:
    """The one place a UGSMS refusal becomes a UgsmsError.

    Called for every non-2xx answer and for a readable 2xx whose `success` is false. The
    sentence (`error`, else `message`) is kept as the reason and classifies it; else the HTTP
    status does. `send` says whether the request was a send, where a 5xx means the outcome is
    unknown (UGSMS may have taken and billed the message before failing).
    """
    try:
        payload = json.loads(content) if content else None
    except (ValueError, UnicodeDecodeError):
        payload = None
    reason = reason_of(payload)
    code, cls = _classify(status, reason)
    if reason is None:
        described = "a non-JSON body" if content and not isinstance(payload, dict) else "no reason"
        reason = f"UGSMS answered HTTP {status} with {described}"
    return cls(
        reason,
        code=code,
        http_status=status,
        retry_after=parse_retry_after(headers.get("retry-after"), now=now),
        outcome_unknown=send and status >= 500,
    )


def bad_response(what: str, *, http_status: int, send: bool) -> UgsmsBadResponseError:
    """A 2xx we cannot read. For a send UGSMS may well have taken (and billed) the message."""
    return UgsmsBadResponseError(
        f"UGSMS answered HTTP {http_status} with {what}",
        code="INVALID_RESPONSE",
        http_status=http_status,
        outcome_unknown=send,
    )


# The request never left our side: nothing can have been sent or billed.
_NEVER_SENT = (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout, httpx2.ProxyError)


def transport_error(exc: httpx2.TransportError, *, send: bool) -> UgsmsUnavailableError:
    """A timeout or connection failure. For a send the outcome is unknown unless the connection
    was never made (connect error, connect timeout, pool timeout, DNS failure, proxy refusal)."""
    never_sent = isinstance(exc, _NEVER_SENT)
    if isinstance(exc, httpx2.TimeoutException):
        code, what = "TIMEOUT", "timed out talking to UGSMS"
    else:
        code, what = "CONNECTION_ERROR", "connection to UGSMS failed"
    return UgsmsUnavailableError(
        f"{what} ({type(exc).__name__})",
        code=code,
        outcome_unknown=send and not never_sent,
    )
