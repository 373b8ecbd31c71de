"""CastBrick failures: the CastBrickError tree and the one function that reads an error answer.

Every CastBrick error is also one of the provider-neutral errors in `castbridge.gateways.base`,
so the pipeline handles it without knowing CastBrick:

    GatewayError
      CastBrickError                              (mixin base: every CastBrick failure)
        CastBrickInvalidRequestError   Permanent    400 BadRequest (invalid JSON): our bug
        CastBrickNoRecipientsError     Validation   400 SMS.NoRecipients (nothing left to send to)
        CastBrickValidationError       Validation   422 SMS.ValidationError, any other 400/422
        CastBrickCredentialsError      Credentials  401: invalid or revoked key (pauses)
        CastBrickForbiddenError        Credentials  403: the key lacks a scope (pauses on a send)
        CastBrickInsufficientCreditsError Credits   402 SMS.InsufficientCredits (pauses)
        CastBrickNotFoundError         NotFound     404
        CastBrickOptedOutError         OptedOut     a 4xx whose sentence says the number opted out
        CastBrickPermanentError        Permanent    any other 4xx (unknown is never retried)
        CastBrickBadResponseError      BadResponse  a 2xx we cannot read (outcome may be unknown)
        CastBrickBasePathError         Permanent    neither `/v1` nor the bare host answered as
                                                    CastBrick (pauses: every call would fail)
        CastBrickRateLimitedError      RateLimited  429 (`retry_after` from Retry-After)
        CastBrickUnavailableError      Unavailable  5xx, 408, timeouts, connection failures

Classification is by HTTP status, the one thing known for sure (gateways.md §2: the OpenAPI file
and the official mock agree on `{error, message, status?}`, real bodies are unseen, and the
docs' codes `SMS.NoRecipients` … "probably arrive in `error`", uncertain). The code is read from
`error`, `code` or `errorCode` (or an ASP.NET-style `errors[0].code`) when the body is JSON, and
the sentence from `message`, `detail`, `title` or `description`; a body that is not JSON is
kept as cut raw text. Errors never carry the API key or the whole body.

CastBrick has no idempotency key (gateways.md §6): a send is attempted once, so every error says
whether the request may have been acted on (`outcome_unknown`): any 5xx or 408 to a send, a
timeout after the request was written, a cut answer, an unreadable 2xx. A connect error, a pool
timeout, a DNS failure or a 429 prove it was not.
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
    NotFoundError,
    OptedOutError,
    PermanentGatewayError,
    RateLimitedError,
    UnavailableError,
    ValidationFailedError,
)

GATEWAY = "castbrick"

# The docs' codes (seeds/002) and the official mock's `error` values (gateways.md §2).
NO_RECIPIENTS = "SMS.NoRecipients"
INSUFFICIENT_CREDITS = "SMS.InsufficientCredits"
VALIDATION_ERROR = "SMS.ValidationError"
OPTED_OUT = "OPTED_OUT"

MAX_MESSAGE_CHARS = 500
MAX_CODE_CHARS = 64
_RAW_TEXT_CHARS = 200
_KEY_PATTERN = re.compile(r"cb_(?:live|test)_[A-Za-z0-9_-]{4,}", re.IGNORECASE)
_BEARER = re.compile(r"(?i)(bearer\s+)\S+")
_OPTED_OUT = re.compile(r"opt(?:ed)?[\s_-]?out|unsubscribed|do[\s_-]not[\s_-]contact", re.I)


class CastBrickError(GatewayError):
    """Base of every CastBrick failure."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        http_status: int | None = None,
        retry_after: float | None = None,
        outcome_unknown: bool = False,
        pauses_account: bool | None = None,
    ) -> None:
        super().__init__(
            message,
            code=code,
            http_status=http_status,
            retry_after=retry_after,
            outcome_unknown=outcome_unknown,
            gateway=GATEWAY,
            pauses_account=pauses_account,
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, http_status={self.http_status!r}, "
            f"outcome_unknown={self.outcome_unknown!r}, message={self.message!r})"
        )


class CastBrickInvalidRequestError(CastBrickError, PermanentGatewayError):
    """CastBrick could not read our request (invalid JSON): a bug on our side."""


class CastBrickValidationError(CastBrickError, ValidationFailedError):
    """A field was refused (number, text, sender ID)."""


class CastBrickNoRecipientsError(CastBrickValidationError):
    """No valid recipient was left after CastBrick's de-duplication and checks."""


class CastBrickCredentialsError(CastBrickError, CredentialsError):
    """The key is missing, invalid or revoked."""


class CastBrickForbiddenError(CastBrickError, CredentialsError):
    """The key works but lacks the permission (scope) for this call."""


class CastBrickInsufficientCreditsError(CastBrickError, InsufficientCreditsError):
    """Not enough balance for the message: top up."""


class CastBrickNotFoundError(CastBrickError, NotFoundError):
    """Unknown message or webhook id, or a path this API does not have."""


class CastBrickOptedOutError(CastBrickError, OptedOutError):
    """CastBrick refused the recipient because it opted out."""


class CastBrickPermanentError(CastBrickError, PermanentGatewayError):
    """Any other refusal; an unknown 4xx is treated as permanent for that request."""


class CastBrickBadResponseError(CastBrickError, BadResponseError):
    """A 2xx we cannot read; for a send the outcome is unknown."""


class CastBrickBasePathError(CastBrickError, PermanentGatewayError):
    """Neither `<api_url>/v1` nor `<api_url>` answered like CastBrick: a wrong API URL."""

    pauses_account = True


class CastBrickRateLimitedError(CastBrickError, RateLimitedError):
    """429: wait `retry_after` seconds. The limiter answers before the request is processed,
    so even for a send nothing was sent."""


class CastBrickUnavailableError(CastBrickError, UnavailableError):
    """5xx, timeout or connection failure; `outcome_unknown` says whether a send may have
    been taken."""


def cut(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """Gateway text made safe to store and show: no key or token, one line, bounded length."""
    text = _BEARER.sub(r"\1***", _KEY_PATTERN.sub("cb_***", " ".join(text.split())))
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delay-seconds or an HTTP-date (RFC 9110);
    None when missing or unreadable, 0 for a date in the past."""
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


def _text(payload: Mapping[str, Any], *names: str) -> str | None:
    for name in names:
        value = payload.get(name)
        if isinstance(value, str) and value.strip():
            return value
    return None


def read_error_body(content: bytes) -> tuple[str | None, str | None, bool]:
    """(code, sentence, is_json) from an error body, tolerating every shape we may meet."""
    try:
        payload = json.loads(content) if content else None
    except (ValueError, UnicodeDecodeError):
        payload = None
    if not isinstance(payload, dict):
        if not content:
            return None, None, False
        raw = content[:2000].decode("utf-8", "replace")
        return None, cut(raw, _RAW_TEXT_CHARS) or None, payload is not None
    code = _text(payload, "error", "code", "errorCode")
    message = _text(payload, "message", "detail", "title", "description")
    errors = payload.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        code = code or _text(errors[0], "code", "error")
        message = message or _text(errors[0], "description", "message")
    if isinstance(payload.get("error"), dict):
        nested = payload["error"]
        code = _text(nested, "code", "error") or code
        message = message or _text(nested, "message", "description")
    return (
        cut(code, MAX_CODE_CHARS) if code else None,
        cut(message) if message else None,
        True,
    )


def _classify(status: int, code: str | None, message: str | None) -> type[CastBrickError]:
    if status == 429:
        return CastBrickRateLimitedError
    if status >= 500 or status == 408:
        return CastBrickUnavailableError
    if status == 401:
        return CastBrickCredentialsError
    if status == 402 or code == INSUFFICIENT_CREDITS:
        return CastBrickInsufficientCreditsError
    if _OPTED_OUT.search(f"{code or ''} {message or ''}"):
        return CastBrickOptedOutError
    if status == 403:
        return CastBrickForbiddenError
    if status == 404:
        return CastBrickNotFoundError
    if code == NO_RECIPIENTS:
        return CastBrickNoRecipientsError
    if code == VALIDATION_ERROR or status == 422:
        return CastBrickValidationError
    if status == 400:
        # The mock's "BadRequest" is an unreadable request body: our bug, not the user's.
        return CastBrickInvalidRequestError if code == "BadRequest" else CastBrickValidationError
    return CastBrickPermanentError


_DEFAULT_CODES: dict[type[CastBrickError], str] = {
    CastBrickRateLimitedError: "RATE_LIMITED",
    CastBrickCredentialsError: "UNAUTHORIZED",
    CastBrickForbiddenError: "FORBIDDEN",
    CastBrickInsufficientCreditsError: INSUFFICIENT_CREDITS,
    CastBrickNotFoundError: "NOT_FOUND",
    CastBrickValidationError: VALIDATION_ERROR,
    CastBrickOptedOutError: OPTED_OUT,
}


def translate_error(
    status: int,
    content: bytes,
    headers: Mapping[str, str],
    *,
    send: bool,
    now: datetime | None = None,
) -> CastBrickError:
    """The one place a CastBrick error answer becomes a CastBrickError.

    `send` says whether the request was a send: a 5xx (or 408) to it leaves the outcome
    unknown, and a 403 to it pauses the account (a key without the SMS scope fails every send),
    while a 403 elsewhere (webhooks, billing) concerns only that call.
    """
    code, message, is_json = read_error_body(content)
    cls = _classify(status, code, message)
    if code is None:
        code = _DEFAULT_CODES.get(cls, f"HTTP_{status}")
    if message is None:
        described = "an error body without a message" if is_json else "an empty body"
        message = f"CastBrick answered HTTP {status} with {described}"
    elif not is_json:
        message = f"CastBrick answered HTTP {status}: {message}"
    return cls(
        message,
        code=code,
        http_status=status,
        retry_after=parse_retry_after(headers.get("retry-after"), now=now),
        outcome_unknown=send and (status >= 500 or status == 408),
        pauses_account=send if cls is CastBrickForbiddenError else None,
    )


# The request never left our side: nothing can have been sent or billed.
_NEVER_SENT = (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout, httpx2.ProxyError)


def transport_error(exc: httpx2.RequestError, *, send: bool) -> CastBrickUnavailableError:
    """A timeout, connection failure or unreadable answer stream. For a send it is an unknown
    outcome unless the connection was never made (connect error, connect or pool timeout, DNS
    failure); a write error is unknown too, as the body may have arrived whole."""
    never_sent = isinstance(exc, _NEVER_SENT)
    if isinstance(exc, httpx2.TimeoutException):
        code, what = "TIMEOUT", "timed out talking to CastBrick"
    else:
        code, what = "CONNECTION_ERROR", "connection to CastBrick failed"
    return CastBrickUnavailableError(
        f"{what} ({type(exc).__name__})",
        code=code,
        outcome_unknown=send and not never_sent,
    )
