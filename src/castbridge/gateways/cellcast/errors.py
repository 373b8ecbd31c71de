"""Cellcast failures: the CellcastError tree and the one function that classifies an error body.

Every Cellcast error is also one of the provider-neutral errors in `castbridge.gateways.base`,
so the pipeline handles it without knowing Cellcast:

    GatewayError
      CellcastError                                (mixin base: every Cellcast failure)
        CellcastValidationError       Validation   400 {code, message, stack}, a refused field,
                                                   a number in `invalidContacts` (INVALID_NUMBER)
          CellcastSenderError         Validation   "Your sender id is not registered." (pauses
                                                   the account: it hits every message)
        CellcastCredentialsError      Credentials  401 "Token expired", `invalid_token: 1`
        CellcastInsufficientCreditsError Credits   422 status:false low balance
        CellcastOptedOutError         OptedOut     `unsubscribeContacts`, "Contact is
                                                   Unsubscribed…" (OPTED_OUT, never retried)
        CellcastNotFoundError         NotFound     a CastError or malformed id (UNKNOWN_ID),
                                                   "not found"
        CellcastNotSentError          Permanent    a recipient without MessageId (NOT_SENT)
        CellcastRefusedError          Permanent    any other status:false or 4xx
        CellcastBadResponseError      BadResponse  a 2xx we cannot read (outcome may be unknown)
        CellcastRateLimitedError      RateLimited  429 (`retry_after`)
        CellcastUnavailableError      Unavailable  5xx, timeouts, connection failures

Cellcast signals errors in the body as often as in the HTTP status (`status: false` under HTTP
200), and each endpoint family has its own envelope; `castbridge.gateways.cellcast.envelope`
decides *whether* an answer failed, `translate_error` here decides *how*. Errors carry a cut,
scrubbed sentence (never the body, never a `stack`), our stable code and the HTTP status.
"""

from __future__ import annotations

import email.utils
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
from castbridge.logging import scrub_text

GATEWAY = "cellcast"

MAX_MESSAGE_CHARS = 500

# Our stable codes (Cellcast has none of its own); they reach HighLevel as `error.code`.
UNAUTHORIZED = "UNAUTHORIZED"
LOW_BALANCE = "LOW_BALANCE"
SENDER_NOT_REGISTERED = "SENDER_NOT_REGISTERED"
INVALID_SENDER = "INVALID_SENDER"
OPTED_OUT = "OPTED_OUT"
UNKNOWN_ID = "UNKNOWN_ID"
NOT_FOUND = "NOT_FOUND"
NOT_SENT = "NOT_SENT"
INVALID_NUMBER = "INVALID_NUMBER"
VALIDATION_ERROR = "VALIDATION_ERROR"
REQUEST_FAILED = "REQUEST_FAILED"
INVALID_RESPONSE = "INVALID_RESPONSE"
RATE_LIMITED = "RATE_LIMITED"
SERVER_ERROR = "SERVER_ERROR"
TIMEOUT = "TIMEOUT"
CONNECTION_ERROR = "CONNECTION_ERROR"

_UNSUBSCRIBED = re.compile(r"unsubscribed", re.IGNORECASE)
_CREDENTIALS = re.compile(
    r"token (has )?expired|invalid (api )?(token|key)|unauthori[sz]ed|unauthenticated|"
    r"jwt|authentication failed",
    re.IGNORECASE,
)
_SENDER = re.compile(
    r"sender( ?id)?\b.*\b(not registered|not approved|not allowed|invalid|not verified)",
    re.IGNORECASE,
)
_BALANCE = re.compile(
    r"balance|insufficient|not enough credit|out of credit|top ?up|recharge", re.IGNORECASE
)
_CONTACTS = re.compile(r"contact|mobile|phone", re.IGNORECASE)
_NOT_FOUND = re.compile(r"not found|does not exist|no such", re.IGNORECASE)
_CAST_ERROR = re.compile(r"cast to objectid failed", re.IGNORECASE)


class CellcastError(GatewayError):
    """Base of every Cellcast failure."""

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
            clean_message(message),
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
            f"message={self.message!r})"
        )


class CellcastValidationError(CellcastError, ValidationFailedError):
    """A field was refused: the number, the text, a parameter."""


class CellcastSenderError(CellcastValidationError):
    """The sender is not registered on the account (or malformed); every message of the account
    would be refused the same way, so the account is paused."""

    pauses_account = True


class CellcastCredentialsError(CellcastError, CredentialsError):
    """The key is invalid or expired ("Token expired")."""


class CellcastInsufficientCreditsError(CellcastError, InsufficientCreditsError):
    """Too little `sms_balance` for the send."""


class CellcastOptedOutError(CellcastError, OptedOutError):
    """The recipient unsubscribed from this account."""


class CellcastNotFoundError(CellcastError, NotFoundError):
    """Cellcast does not know this message id (a CastError, a malformed or foreign id)."""


class CellcastNotSentError(CellcastError, PermanentGatewayError):
    """Cellcast answered for the recipient but gave no MessageId: the message was not sent."""


class CellcastRefusedError(CellcastError, PermanentGatewayError):
    """Any other refusal (`status: false`, an unknown 4xx): permanent for that request."""


class CellcastBadResponseError(CellcastError, BadResponseError):
    """A 2xx we cannot read; for a send the outcome is unknown (Cellcast may have taken it)."""


class CellcastRateLimitedError(CellcastError, RateLimitedError):
    """429: wait `retry_after` seconds. The request was not processed."""


class CellcastUnavailableError(CellcastError, UnavailableError):
    """5xx, timeout or connection failure; `outcome_unknown` for a send that may have left."""


def clean_message(text: str) -> str:
    """A gateway sentence safe to store and show: no tokens or full numbers, bounded length."""
    text = scrub_text(" ".join(text.split()))
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 1] + "…"
    return text


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a `Retry-After` header (delay-seconds or an HTTP-date); None if unreadable."""
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


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def reasons(body: Mapping[str, Any] | None) -> list[str]:
    """Every sentence an error body offers, most specific first: `error.errorMessage`,
    `error.message`, the top-level `message`, then any other string in `error` (such as
    `error.sender` or `error.error`). A `stack` is never read."""
    if body is None:
        return []
    found: list[str] = []
    error = body.get("error")
    if isinstance(error, Mapping):
        for name in ("errorMessage", "message"):
            if (text := _text(error.get(name))) is not None:
                found.append(text)
    elif (text := _text(error)) is not None:
        found.append(text)
    if (text := _text(body.get("message"))) is not None:
        found.append(text)
    if isinstance(error, Mapping):
        for name, value in error.items():
            if name in ("errorMessage", "message", "stack", "stringValue", "value"):
                continue
            if (text := _text(value)) is not None:
                found.append(text)
    return list(dict.fromkeys(found))


def _effective_status(http_status: int, body: Mapping[str, Any] | None) -> int:
    """The status to classify by: a 2xx carrying `{code: 401, …}` (or `meta.code`) is a 401."""
    if not 200 <= http_status < 300 or body is None:
        return http_status
    meta = body.get("meta")
    for code in (body.get("code"), meta.get("code") if isinstance(meta, Mapping) else None):
        if isinstance(code, int) and not isinstance(code, bool) and 400 <= code < 600:
            return code
    return http_status


def _truthy_flag(value: Any) -> bool:
    return value is True or (
        isinstance(value, int | float) and not isinstance(value, bool) and value > 0
    )


def translate_error(
    http_status: int,
    body: Mapping[str, Any] | None,
    headers: Mapping[str, str],
    *,
    send: bool,
    now: datetime | None = None,
) -> CellcastError:
    """The one place a failed Cellcast answer becomes a CellcastError.

    `body` is the decoded JSON object (None when the body was empty or not JSON). `send` says
    whether the request was a send, where a 5xx leaves the outcome unknown. Order matters: an
    opt-out or an unknown id is recognised by its text whatever the HTTP status (Cellcast
    answers a CastError as "internal server error"), before a 5xx is taken as transient.
    """
    status = _effective_status(http_status, body)
    found = reasons(body)
    everything = " | ".join(found)
    reason = found[0] if found else None
    error = body.get("error") if body is not None else None
    error_name = error.get("name") if isinstance(error, Mapping) else None

    if status == 429:
        return CellcastRateLimitedError(
            reason or "Cellcast rate limit reached",
            code=RATE_LIMITED,
            http_status=http_status,
            retry_after=parse_retry_after(headers.get("retry-after"), now=now),
        )
    if error_name == "CastError" or _CAST_ERROR.search(everything):
        return CellcastNotFoundError(
            "Cellcast does not know this message id", code=UNKNOWN_ID, http_status=http_status
        )
    if _UNSUBSCRIBED.search(everything):
        return CellcastOptedOutError(
            "The recipient has unsubscribed from this Cellcast account and cannot receive "
            "messages from it.",
            code=OPTED_OUT,
            http_status=http_status,
        )
    if status >= 500:
        return CellcastUnavailableError(
            reason or f"Cellcast answered HTTP {status}",
            code=SERVER_ERROR,
            http_status=http_status,
            outcome_unknown=send,
        )
    invalid_token = body is not None and _truthy_flag(body.get("invalid_token"))
    if status == 401 or invalid_token or _CREDENTIALS.search(everything):
        return CellcastCredentialsError(
            reason or "Cellcast refused the API key", code=UNAUTHORIZED, http_status=http_status
        )
    sender_field = isinstance(error, Mapping) and _text(error.get("sender")) is not None
    if sender_field or _SENDER.search(everything):
        return CellcastSenderError(
            reason or "Your sender id is not registered.",
            code=SENDER_NOT_REGISTERED,
            http_status=http_status,
        )
    if status == 403:
        return CellcastCredentialsError(
            reason or "Cellcast refused the API key", code=UNAUTHORIZED, http_status=http_status
        )
    if _BALANCE.search(everything):
        return CellcastInsufficientCreditsError(
            reason or "Cellcast balance too low", code=LOW_BALANCE, http_status=http_status
        )
    if status == 404 or _NOT_FOUND.search(everything):
        return CellcastNotFoundError(reason or "not found", code=NOT_FOUND, http_status=http_status)
    if status in (400, 422):
        code = INVALID_NUMBER if _CONTACTS.search(everything) else VALIDATION_ERROR
        return CellcastValidationError(
            reason or f"Cellcast refused the request (HTTP {status})",
            code=code,
            http_status=http_status,
        )
    if 200 <= status < 300:
        return CellcastRefusedError(
            reason or "Cellcast refused the request", code=REQUEST_FAILED, http_status=http_status
        )
    return CellcastRefusedError(
        reason or f"Cellcast answered HTTP {status}", code=f"HTTP_{status}", http_status=http_status
    )


# The request never left our side: nothing can have been sent or billed.
_NEVER_SENT = (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout, httpx2.ProxyError)


def transport_error(exc: httpx2.TransportError, *, send: bool) -> CellcastUnavailableError:
    """A timeout or connection failure. For a send it is an unknown outcome unless the
    connection was never made (connect error or timeout, DNS failure, pool timeout)."""
    never_sent = isinstance(exc, _NEVER_SENT)
    if isinstance(exc, httpx2.TimeoutException):
        code, what = TIMEOUT, "timed out talking to Cellcast"
    else:
        code, what = CONNECTION_ERROR, "connection to Cellcast failed"
    return CellcastUnavailableError(
        f"{what} ({type(exc).__name__})", code=code, outcome_unknown=send and not never_sent
    )
