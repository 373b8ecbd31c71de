"""The one status-to-error mapping, Retry-After parsing and what errors may carry."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx2
import pytest

from castbridge.ghl import errors
from castbridge.ghl.versions import (
    INBOUND_MESSAGE,
    MESSAGE_STATUS,
    OAUTH_TOKEN,
    UPSERT_CONTACT,
    Endpoint,
)


def response(
    status: int, body: Any = None, headers: dict[str, str] | None = None
) -> httpx2.Response:
    request = httpx2.Request("POST", "https://services.leadconnectorhq.com/x")
    if body is None:
        return httpx2.Response(status, headers=headers, request=request)
    if isinstance(body, str):  # a proxy's or WAF's HTML page
        return httpx2.Response(status, content=body.encode(), headers=headers, request=request)
    return httpx2.Response(status, json=body, headers=headers, request=request)


CASES: list[tuple[int, Any, Endpoint, bool, type[errors.GHLError], bool]] = [
    # status, body, endpoint, refresh grant?, expected class, retryable
    (401, {"message": "Invalid JWT"}, UPSERT_CONTACT, False, errors.AuthError, False),
    (401, {"message": "No conversation provider found for this message"}, MESSAGE_STATUS,
     False, errors.NotDownstreamedError, True),
    (403, {"message": "No conversation provider found for this message"}, MESSAGE_STATUS, False,
     errors.NotDownstreamedError, True),
    (403, {"message": "Forbidden"}, MESSAGE_STATUS, False, errors.NotDownstreamedError, True),
    (403, {"message": "No conversation provider found for this message"}, INBOUND_MESSAGE,
     False, errors.NotDownstreamedError, True),
    (403, {"message": "scope missing"}, UPSERT_CONTACT, False, errors.PermanentRequestError, False),
    (429, {"message": "Too many"}, MESSAGE_STATUS, False, errors.RateLimitedError, True),
    (500, {"message": "oops"}, INBOUND_MESSAGE, False, errors.UnavailableError, True),
    (503, None, MESSAGE_STATUS, False, errors.UnavailableError, True),
    (408, None, MESSAGE_STATUS, False, errors.UnavailableError, True),
    (400, {"message": "bad"}, MESSAGE_STATUS, False, errors.PermanentRequestError, False),
    (422, {"message": ["status must be one of"]}, MESSAGE_STATUS, False,
     errors.PermanentRequestError, False),
    (400, {"statusCode": 400, "message": "Location is not active"}, OAUTH_TOKEN, True,
     errors.LocationInactiveError, True),
    (400, {"statusCode": 400, "message": "Location is not active"}, OAUTH_TOKEN, False,
     errors.LocationInactiveError, True),
    (400, {"error": "invalid_grant", "message": "Invalid grant"}, OAUTH_TOKEN, True,
     errors.NeedsReinstallError, False),
    (401, {"error": "Unauthorized", "message": "refresh token expired"}, OAUTH_TOKEN, True,
     errors.NeedsReinstallError, False),
    # Only a dead refresh token means "reinstall" (ghl.md §6.3, corrected): any other refusal
    # of a refresh is retried with an alert instead of locking the location out.
    (401, {"error": "invalid_client", "message": "bad client"}, OAUTH_TOKEN, True,
     errors.RefreshFailedError, True),
    (403, {"message": "Forbidden"}, OAUTH_TOKEN, True, errors.RefreshFailedError, True),
    (400, "<html>Request blocked</html>", OAUTH_TOKEN, True, errors.RefreshFailedError, True),
    (422, {"message": ["refresh_token should not be empty"]}, OAUTH_TOKEN, True,
     errors.RefreshFailedError, True),
    (502, "<html>Bad gateway</html>", OAUTH_TOKEN, True, errors.UnavailableError, True),
    (400, {"error": "invalid_grant", "message": "code used"}, OAUTH_TOKEN, False,
     errors.PermanentRequestError, False),
    (401, {"error": "invalid_client", "message": "bad client"}, OAUTH_TOKEN, False,
     errors.PermanentRequestError, False),
    (302, None, MESSAGE_STATUS, False, errors.UnexpectedResponseError, True),
]  # fmt: skip


@pytest.mark.parametrize(("status", "body", "endpoint", "refresh", "expected", "retryable"), CASES)
def test_status_mapping(
    status: int,
    body: Any,
    endpoint: Endpoint,
    refresh: bool,
    expected: type[errors.GHLError],
    retryable: bool,
) -> None:
    """Each status (and HighLevel message) maps to one error class with the right retryability."""
    error = errors.error_from_response(response(status, body), endpoint, refresh=refresh)
    assert type(error) is expected
    assert error.retryable is retryable
    assert error.status_code == status
    assert error.operation == endpoint.name


def test_error_carries_trace_id_and_message_but_no_body() -> None:
    """traceId and HighLevel's message are kept; tokens and other body fields are not."""
    body = {
        "statusCode": 400,
        "message": "Contact +639171234567 invalid",
        "traceId": "trace-123",
        "access_token": "secret-token-value",
    }
    error = errors.error_from_response(response(400, body), UPSERT_CONTACT)
    text = str(error)
    assert error.trace_id == "trace-123"
    assert "trace-123" in text
    assert "secret-token-value" not in text
    assert "+639171234567" not in text  # phone numbers are masked
    assert "invalid" in text


def test_long_messages_are_shortened() -> None:
    """A huge message is cut so errors stay loggable."""
    error = errors.error_from_response(response(400, {"message": "x" * 5000}), UPSERT_CONTACT)
    assert len(error.message) <= errors.MESSAGE_LIMIT


def test_non_json_error_body_uses_reason_phrase() -> None:
    """An HTML error page yields the HTTP reason, not the page."""
    request = httpx2.Request("GET", "https://services.leadconnectorhq.com/x")
    page = httpx2.Response(502, text="<html>Bad gateway</html>", request=request)
    error = errors.error_from_response(page, MESSAGE_STATUS)
    assert isinstance(error, errors.UnavailableError)
    assert "<html>" not in str(error)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"Retry-After": "2.5", "X-RateLimit-Interval-Milliseconds": "10000"}, 2.5),
        ({"X-RateLimit-Interval-Milliseconds": "10000"}, 10.0),
        ({"X-RateLimit-Interval-Milliseconds": "1500"}, 1.5),
        ({}, errors.DEFAULT_RATE_LIMIT_WAIT),
        ({"Retry-After": "soon"}, errors.DEFAULT_RATE_LIMIT_WAIT),
        ({"Retry-After": "-5"}, 0.0),
        ({"Retry-After": "999999"}, errors.MAX_RATE_LIMIT_WAIT),
        ({"Retry-After": "Wed, 21 Oct 2026 07:28:30 GMT"}, 30.0),
    ],
)
def test_retry_after_seconds(headers: dict[str, str], expected: float) -> None:
    """Retry-After (seconds or HTTP date) wins; else the rate-limit interval; else 10 s."""
    now = datetime(2026, 10, 21, 7, 28, 0, tzinfo=UTC)
    assert errors.retry_after_seconds(httpx2.Headers(headers), now=now) == expected


def test_rate_limited_error_carries_retry_after() -> None:
    """A 429 error exposes retry_after for the caller's backoff."""
    error = errors.error_from_response(
        response(429, {"message": "slow down"}, {"X-RateLimit-Interval-Milliseconds": "10000"}),
        MESSAGE_STATUS,
    )
    assert error.retry_after == 10.0


def test_transport_error_hides_url() -> None:
    """A network failure becomes UnavailableError without the URL (it may hold a phone number)."""
    request = httpx2.Request("GET", "https://x/contacts/search/duplicate?number=%2B639171234567")
    error = errors.error_from_transport(httpx2.ConnectError("boom", request=request), OAUTH_TOKEN)
    assert error.retryable
    assert "639171234567" not in str(error)
