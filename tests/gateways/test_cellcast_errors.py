"""Cellcast's envelope reader and error translation: every shape, table-driven, plus real HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from castbridge.gateways.base import (
    BadResponseError,
    CredentialsError,
    InsufficientCreditsError,
    NotFoundError,
    OptedOutError,
    PermanentGatewayError,
    RateLimitedError,
    UnavailableError,
    ValidationFailedError,
)
from castbridge.gateways.cellcast import (
    CellcastBadResponseError,
    CellcastCredentialsError,
    CellcastError,
    CellcastInsufficientCreditsError,
    CellcastNotFoundError,
    CellcastOptedOutError,
    CellcastRateLimitedError,
    CellcastRefusedError,
    CellcastSenderError,
    CellcastUnavailableError,
    CellcastValidationError,
    parse_retry_after,
    read_envelope,
    translate_error,
)
from castbridge.gateways.cellcast.envelope import failed
from castbridge.gateways.cellcast.errors import MAX_MESSAGE_CHARS, reasons
from tests.gateways.cellcast_support import SharedServer, shared_server

ASYNC = pytest.mark.asyncio(loop_scope="module")

CAST_ERROR = {
    "status": False,
    "message": "internal server error",
    "data": {},
    "error": {
        "name": "CastError",
        "message": 'Cast to ObjectId failed for value "x" (type string) at path "_id"',
    },
}
SENDER_REFUSED = {
    "status": False,
    "message": "Your sender id is not registered.",
    "error": {"sender": "Your sender id is not registered."},
    "data": [],
}
LOW_BALANCE = {
    "status": False,
    "message": "Insufficient balance",
    "error": {"errorMessage": "You don't have enough balance to send this message."},
    "data": [],
}
UNSUBSCRIBED = {"status": False, "message": "Contact is Unsubscribed and can not receive messages"}
STACKED_400 = {
    "code": 400,
    "message": "contacts must start with 61/+61 and have 11 digits, or 9 digits",
    "stack": "Error: contacts must …\n    at validate (/app/src/secret/path.js:1:1)",
}


@pytest.mark.parametrize(
    ("http_status", "body", "send", "cls", "code", "pauses", "unknown"),
    [
        (
            401,
            {"code": 401, "message": "Token expired"},
            True,
            CellcastCredentialsError,
            "UNAUTHORIZED",
            True,
            False,
        ),
        (
            200,
            {"code": 401, "message": "Token expired"},
            False,
            CellcastCredentialsError,
            "UNAUTHORIZED",
            True,
            False,
        ),
        (
            200,
            {"status": False, "invalid_token": 1, "message": "x"},
            False,
            CellcastCredentialsError,
            "UNAUTHORIZED",
            True,
            False,
        ),
        (422, LOW_BALANCE, True, CellcastInsufficientCreditsError, "LOW_BALANCE", True, False),
        (200, LOW_BALANCE, True, CellcastInsufficientCreditsError, "LOW_BALANCE", True, False),
        (200, SENDER_REFUSED, True, CellcastSenderError, "SENDER_NOT_REGISTERED", True, False),
        (422, SENDER_REFUSED, True, CellcastSenderError, "SENDER_NOT_REGISTERED", True, False),
        (200, UNSUBSCRIBED, True, CellcastOptedOutError, "OPTED_OUT", False, False),
        (
            200,
            {"status": False, "message": "contact is UNSUBSCRIBED"},
            True,
            CellcastOptedOutError,
            "OPTED_OUT",
            False,
            False,
        ),
        (200, CAST_ERROR, False, CellcastNotFoundError, "UNKNOWN_ID", False, False),
        (500, CAST_ERROR, False, CellcastNotFoundError, "UNKNOWN_ID", False, False),
        (
            200,
            {
                "status": False,
                "message": "message not found",
                "error": {"error": "message not found"},
            },
            False,
            CellcastNotFoundError,
            "NOT_FOUND",
            False,
            False,
        ),
        (400, STACKED_400, True, CellcastValidationError, "INVALID_NUMBER", False, False),
        (
            400,
            {"code": 400, "message": "countryCode must be 61", "stack": "…"},
            True,
            CellcastValidationError,
            "VALIDATION_ERROR",
            False,
            False,
        ),
        (
            429,
            {"status": False, "message": "Too many requests"},
            True,
            CellcastRateLimitedError,
            "RATE_LIMITED",
            False,
            False,
        ),
        (
            500,
            {"status": False, "message": "internal server error"},
            True,
            CellcastUnavailableError,
            "SERVER_ERROR",
            False,
            True,
        ),
        (502, None, True, CellcastUnavailableError, "SERVER_ERROR", False, True),
        (503, None, False, CellcastUnavailableError, "SERVER_ERROR", False, False),
        (
            200,
            {"status": False, "message": "Something odd"},
            True,
            CellcastRefusedError,
            "REQUEST_FAILED",
            False,
            False,
        ),
        (418, {"message": "teapot"}, False, CellcastRefusedError, "HTTP_418", False, False),
        (
            403,
            {"message": "Forbidden"},
            False,
            CellcastCredentialsError,
            "UNAUTHORIZED",
            True,
            False,
        ),
        (404, None, False, CellcastNotFoundError, "NOT_FOUND", False, False),
    ],
)
def test_translate_error_table(
    http_status: int,
    body: dict[str, Any] | None,
    send: bool,
    cls: type[CellcastError],
    code: str,
    pauses: bool,
    unknown: bool,
) -> None:
    """Each known Cellcast error body maps to one class, code, pause flag and outcome."""
    error = translate_error(http_status, body, {}, send=send)
    assert type(error) is cls
    assert (error.code, error.pauses_account, error.outcome_unknown) == (code, pauses, unknown)
    assert error.http_status == http_status
    assert error.gateway == "cellcast"


def test_neutral_tree() -> None:
    """Every Cellcast error is also the provider-neutral error the core acts on."""
    assert issubclass(CellcastCredentialsError, CredentialsError)
    assert issubclass(CellcastInsufficientCreditsError, InsufficientCreditsError)
    assert issubclass(CellcastSenderError, ValidationFailedError)
    assert issubclass(CellcastOptedOutError, OptedOutError)
    assert issubclass(CellcastNotFoundError, NotFoundError)
    assert issubclass(CellcastBadResponseError, BadResponseError)
    assert issubclass(CellcastRateLimitedError, RateLimitedError)
    assert issubclass(CellcastUnavailableError, UnavailableError)
    assert issubclass(CellcastRefusedError, PermanentGatewayError)
    opted = translate_error(200, UNSUBSCRIBED, {}, send=True)
    assert opted.opted_out
    assert not opted.retryable
    assert not translate_error(200, CAST_ERROR, {}, send=False).retryable


def test_reasons_prefer_the_specific_sentence_and_never_read_the_stack() -> None:
    """error.errorMessage, then error.message, then message; a `stack` is never carried."""
    assert reasons(LOW_BALANCE)[0].startswith("You don't have enough balance")
    error = translate_error(400, STACKED_400, {}, send=True)
    assert "secret/path" not in error.message
    assert "at validate" not in error.message
    assert reasons({"message": "top", "error": "flat string"}) == ["flat string", "top"]


def test_messages_are_bounded_and_scrubbed() -> None:
    """A huge gateway sentence is cut to 500 characters; numbers and tokens are masked."""
    body = {"status": False, "message": "x" * 5000}
    assert len(translate_error(200, body, {}, send=False).message) == MAX_MESSAGE_CHARS
    leaky = {"status": False, "message": "bad number 61412345678 with Bearer abc.def.ghi"}
    message = translate_error(200, leaky, {}, send=False).message
    assert "61412345678" not in message
    assert "abc.def.ghi" not in message


def test_retry_after_header_is_read() -> None:
    """A 429 carries Retry-After in seconds or as an HTTP-date."""
    error = translate_error(429, None, {"retry-after": "3"}, send=True)
    assert error.retry_after == 3.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize(
    ("body", "is_failure"),
    [
        ({"status": True, "data": {}, "error": {}}, False),
        ({"data": {"_id": "a", "status": "sent"}}, False),
        ({"meta": {"code": 200, "status": "success"}, "data": {}}, False),
        ({"meta": {"code": 200, "status": "SUCCESS"}, "data": {}, "error": {}}, False),
        ({"status": False, "data": []}, True),
        ({"status": "false"}, True),
        ({"meta": {"status": "failed"}, "data": {}}, True),
        ({"meta": {"code": 401, "status": "success"}}, True),
        ({"code": 401, "message": "Token expired"}, True),
        ({"status": True, "error": {"message": "half failed"}}, True),
        ({"status": True, "error": "oops"}, True),
        ({"status": True, "error": []}, False),
        ({"status": True, "invalid_token": 1}, True),
        ({"status": True, "invalid_token": 0}, False),
    ],
)
def test_failure_detection_table(body: dict[str, Any], is_failure: bool) -> None:
    """Failure = status false, meta.status not success, an error code, invalid_token or a
    non-empty `error`, whichever envelope the endpoint uses."""
    assert failed(body) is is_failure


def test_unreadable_2xx_is_a_bad_response_and_unknown_only_for_sends() -> None:
    """A 2xx that is not a JSON object: unknown outcome for a send, plain for a read."""
    with pytest.raises(CellcastBadResponseError) as caught:
        read_envelope(200, b"<html>oops</html>", {}, send=True)
    assert caught.value.outcome_unknown
    with pytest.raises(CellcastBadResponseError) as caught:
        read_envelope(200, b"[1, 2]", {}, send=False)
    assert not caught.value.outcome_unknown
    envelope = read_envelope(
        200, json.dumps({"status": True, "data": {"a": 1}}).encode(), {}, send=False
    )
    assert envelope.data == {"a": 1}


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server() -> AsyncIterator[SharedServer]:
    async with shared_server() as shared:
        yield shared


@ASYNC
async def test_status_false_under_http_200_raises_over_http(server: SharedServer) -> None:
    """A real HTTP 200 answer with status:false is an error, not a result."""
    client = server.canned(200, SENDER_REFUSED)
    with pytest.raises(CellcastSenderError) as caught:
        await client.send_sms(["+61412345678"], "hi")
    assert caught.value.pauses_account
    assert caught.value.message == "Your sender id is not registered."


@ASYNC
async def test_html_error_page_on_a_send_is_unavailable_and_unknown(server: SharedServer) -> None:
    """A 502 HTML page from a proxy in front of Cellcast: transient, outcome unknown."""
    client = server.canned(502, "<html>Bad gateway</html>")
    with pytest.raises(CellcastUnavailableError) as caught:
        await client.send_sms(["+61412345678"], "hi")
    assert caught.value.outcome_unknown
    assert caught.value.retryable


@ASYNC
async def test_success_without_data_on_a_send_is_unknown(server: SharedServer) -> None:
    """status:true with no data on a send may have queued the message: outcome unknown."""
    client = server.canned(200, {"status": True, "message": "SMS sent", "error": {}})
    with pytest.raises(CellcastBadResponseError) as caught:
        await client.send_sms(["+61412345678"], "hi")
    assert caught.value.outcome_unknown


@ASYNC
async def test_report_without_required_fields_is_a_bad_response(server: SharedServer) -> None:
    """A report must carry `_id` and `status`; anything less is unreadable (not unknown)."""
    client = server.canned(200, {"data": {"_id": "a" * 24}})
    with pytest.raises(CellcastBadResponseError) as caught:
        await client.report("a" * 24)
    assert not caught.value.outcome_unknown
