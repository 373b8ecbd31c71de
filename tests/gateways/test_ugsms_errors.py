"""Every UGSMS refusal, server error and unreadable or cut answer becomes the right UgsmsError,
with the right `outcome_unknown` for a gateway that must never send twice."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx2
import pytest
import pytest_asyncio

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
from castbridge.gateways.ugsms import (
    UgsmsClient,
    UgsmsError,
    UgsmsRefusedError,
    UgsmsUnavailableError,
    UgsmsValidationError,
)
from castbridge.sandbox.ugsms import DEFAULT_API_KEY, UgsmsSandbox, UgsmsSandboxConfig
from tests.gateways.ugsms_support import UG_LOCAL, SharedServer, shared_server

pytestmark = pytest.mark.asyncio(loop_scope="module")

UNKNOWN_KEY = "ugsk_" + "0" * 40
Call = Callable[[UgsmsClient], Awaitable[object]]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server() -> AsyncIterator[SharedServer]:
    async with shared_server() as shared:
        yield shared


def _send(to: str = UG_LOCAL, text: str = "Hello", **kwargs: Any) -> Call:
    async def call(client: UgsmsClient) -> object:
        return await client.send(to, text, **kwargs)

    return call


async def _balance(client: UgsmsClient) -> object:
    return await client.balance()


async def _bulk(client: UgsmsClient) -> object:
    return await client.send_bulk([(UG_LOCAL, "a")])


async def _twice(client: UgsmsClient) -> object:
    await client.send(UG_LOCAL, "a")
    return await client.send(UG_LOCAL, "b")


def _account(**changes: Any) -> Callable[[UgsmsSandbox], None]:
    def setup(sandbox: UgsmsSandbox) -> None:
        for name, value in changes.items():
            setattr(sandbox.account(DEFAULT_API_KEY), name, value)

    return setup


def _config(**changes: Any) -> Callable[[UgsmsSandbox], None]:
    def setup(sandbox: UgsmsSandbox) -> None:
        for name, value in changes.items():
            setattr(sandbox.config, name, value)

    return setup


def _faults(**changes: Any) -> Callable[[UgsmsSandbox], None]:
    def setup(sandbox: UgsmsSandbox) -> None:
        for name, value in changes.items():
            setattr(sandbox.faults, name, value)

    return setup


def _both(
    first: Callable[[UgsmsSandbox], None], second: Callable[[UgsmsSandbox], None]
) -> Callable[[UgsmsSandbox], None]:
    def setup(sandbox: UgsmsSandbox) -> None:
        first(sandbox)
        second(sandbox)

    return setup


def _nothing(sandbox: UgsmsSandbox) -> None:
    return None


@dataclass
class Case:
    id: str
    code: str
    status: int
    kind: type[GatewayError]
    setup: Callable[[UgsmsSandbox], None] = _nothing
    call: Call = field(default_factory=_send)
    api_key: str = DEFAULT_API_KEY
    base: str = "/api/v2"
    retryable: bool = False
    pauses: bool = False  # the account is refused: key or balance (gateways.md §6)
    unknown: bool = False  # the send may have happened
    reason: str | None = None


SANDBOX_CASES = [
    Case("unknown-key", "INVALID_API_KEY", 401, CredentialsError, api_key=UNKNOWN_KEY,
         pauses=True, reason="Invalid API key"),
    Case("revoked", "INVALID_API_KEY", 401, CredentialsError, _account(revoked=True),
         pauses=True, reason="API key has been revoked"),
    Case("expired", "INVALID_API_KEY", 401, CredentialsError, _account(expired=True),
         pauses=True, reason="API key has expired"),
    Case("inactive", "ACCOUNT_INACTIVE", 403, CredentialsError, _account(is_active=False),
         pauses=True, reason="Account is inactive"),
    Case("key-to-v1", "CREDENTIALS_REQUIRED", 401, CredentialsError, base="/v1", pauses=True,
         reason="Credentials are required... Provide username and password"),
    Case("no-balance", "INSUFFICIENT_BALANCE", 402, InsufficientCreditsError,
         _account(balance=0), pauses=True, reason="Insufficient balance"),
    Case("no-balance-400", "INSUFFICIENT_BALANCE", 400, InsufficientCreditsError,
         _both(_account(balance=10), _config(insufficient_balance_status=400)), pauses=True,
         call=_send(text="x" * 1000)),
    Case("bad-number", "INVALID_NUMBER", 400, ValidationFailedError, call=_send("0812345678"),
         reason="Invalid phone number format. (Use local format, e.g. 0701***567)"),
    Case("kenya-style", "INVALID_NUMBER", 400, ValidationFailedError,
         call=_send("+254712345678")),
    Case("too-long", "VALIDATION_ERROR", 400, ValidationFailedError, _config(max_parts=1),
         call=_send(text="y" * 200)),
    Case("bulk-off", "NOT_FOUND", 404, UgsmsRefusedError, _config(bulk_enabled=False),
         call=_bulk),
    Case("rate-limit", "RATE_LIMITED", 429, RateLimitedError, _account(rate_limit=1),
         _twice, retryable=True),
    Case("send-500", "SERVER_ERROR", 500, UnavailableError, _faults(fail_next=[500]),
         retryable=True, unknown=True, reason="Server Error"),
    Case("send-503", "HTTP_503", 503, UnavailableError, _faults(fail_next=[503]),
         retryable=True, unknown=True),
    Case("balance-500", "SERVER_ERROR", 500, UnavailableError,
         _faults(fail_next=[500], targets="all"), _balance, retryable=True),
]  # fmt: skip


def _check(error: UgsmsError, case: Case) -> None:
    assert isinstance(error, case.kind)
    assert (error.code, error.http_status) == (case.code, case.status)
    assert error.retryable is case.retryable
    assert error.pauses_account is case.pauses
    assert error.outcome_unknown is case.unknown
    assert error.gateway == "ugsms"
    if case.reason is not None:
        assert error.message == case.reason
    for text in (str(error), repr(error), error.message):
        assert DEFAULT_API_KEY not in text
        assert UNKNOWN_KEY not in text


@pytest.mark.parametrize("case", SANDBOX_CASES, ids=lambda c: c.id)
async def test_sandbox_answer_maps_to_gateway_error(server: SharedServer, case: Case) -> None:
    """Each refusal the sandbox produces, in UGSMS's own shape, maps to one error class and code;
    the sentence (`error` plus `help`) is kept as the reason."""
    env = server.sandbox()
    case.setup(env.sandbox)
    client = UgsmsClient(env.http, api_key=case.api_key, base_url=env.url + case.base)
    with pytest.raises(UgsmsError) as caught:
        await case.call(client)
    _check(caught.value, case)


CANNED = [
    # The documented v2 answer to a request without a key (seed).
    (401, {"error": "API key is required", "help": "Provide X-API-Key header or api_key parameter"},
     "API_KEY_REQUIRED", CredentialsError, True),
    # v1's documented bodies.
    (401, {"error": "Unauthorized."}, "INVALID_API_KEY", CredentialsError, True),
    (400, {"error": "Invalid phone number format."}, "INVALID_NUMBER", ValidationFailedError,
     False),
    # Refusals under HTTP 200, by their sentence.
    (200, {"success": False, "message": "Insufficient balance"}, "INSUFFICIENT_BALANCE",
     InsufficientCreditsError, True),
    (200, {"success": False, "message": "Invalid API key"}, "INVALID_API_KEY", CredentialsError,
     True),
    (200, {"success": False, "message": "Something unexpected"}, "REFUSED", UgsmsRefusedError,
     False),
    (200, {"success": "false", "error": {"message": "Sender ID not approved"}},
     "INVALID_SENDER_ID", ValidationFailedError, False),
    # Laravel-style validation bodies.
    (422, {"message": "The numbers field is required.", "errors": {"numbers": ["x"]}},
     "INVALID_NUMBER", ValidationFailedError, False),
    (422, {"errors": {"message_body": ["The message body field is required."]}},
     "VALIDATION_ERROR", ValidationFailedError, False),
    (400, {"error": "The sender id may not be greater than 11 characters."}, "INVALID_SENDER_ID",
     UgsmsValidationError, False),
    # Statuses without a sentence we know.
    (402, {}, "INSUFFICIENT_BALANCE", InsufficientCreditsError, True),
    (403, "Forbidden", "INVALID_API_KEY", CredentialsError, True),
    (418, {"success": False}, "HTTP_418", UgsmsRefusedError, False),
    (409, {"error": "Duplicate"}, "HTTP_409", UgsmsRefusedError, False),
]  # fmt: skip


@pytest.mark.parametrize(("status", "body", "code", "kind", "pauses"), CANNED)
async def test_refusal_bodies_are_classified(
    server: SharedServer,
    status: int,
    body: Any,
    code: str,
    kind: type[GatewayError],
    pauses: bool,
) -> None:
    """A refusal is classified by its sentence, else by HTTP status; a refused key or an
    insufficient balance pauses the account; none of them is an unknown outcome."""
    with pytest.raises(kind) as caught:
        await server.canned(status, body).client.send(UG_LOCAL, "x")
    error = caught.value
    assert (error.code, error.http_status, error.pauses_account) == (code, status, pauses)
    assert not error.retryable
    assert not error.outcome_unknown


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (502, "<html><body>502 Bad Gateway</body></html>", "HTTP_502"),
        (504, "Gateway Timeout", "HTTP_504"),
        (500, b"", "SERVER_ERROR"),
        (500, {"error": "Insufficient balance"}, "SERVER_ERROR"),
    ],
)
async def test_server_errors_to_a_send_are_unknown_outcomes(
    server: SharedServer, status: int, body: Any, code: str
) -> None:
    """Any 5xx to a send may follow a send UGSMS took: transient, outcome unknown, never the
    body's HTML in the message; a sentence under a 5xx does not make it a refusal."""
    with pytest.raises(UgsmsUnavailableError) as caught:
        await server.canned(status, body).client.send(UG_LOCAL, "x")
    error = caught.value
    assert (error.code, error.retryable, error.outcome_unknown) == (code, True, True)
    assert "<html>" not in error.message
    assert not error.pauses_account


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, "<html>ok</html>"),
        (200, b""),
        (200, {"message": "Message sent successfully"}),  # no success flag
        (200, {"success": "maybe", "data": {"message_id": "x"}}),
        (201, b"[1, 2, 3]"),
    ],
)
async def test_unreadable_success_is_an_unknown_outcome(
    server: SharedServer, status: int, body: Any
) -> None:
    """A 2xx without a readable `success == true` may hide an accepted send: permanent (not to
    be retried), outcome unknown."""
    with pytest.raises(BadResponseError) as caught:
        await server.canned(status, body).client.send(UG_LOCAL, "x")
    assert caught.value.code == "INVALID_RESPONSE"
    assert caught.value.outcome_unknown
    assert not caught.value.retryable


async def test_unreadable_balance_is_not_an_unknown_outcome(server: SharedServer) -> None:
    """A read has no outcome to lose: an unreadable balance is just a bad response."""
    with pytest.raises(BadResponseError) as caught:
        await server.canned(200, {"success": True, "data": {}}).client.balance()
    assert not caught.value.outcome_unknown


async def test_long_reasons_are_cut_and_numbers_masked(server: SharedServer) -> None:
    """Every gateway string is unbounded: the reason is at most 500 characters and phone
    numbers in it are masked."""
    sentence = "Invalid phone number format: 0702913454 " + "z" * 2000
    with pytest.raises(ValidationFailedError) as caught:
        await server.canned(400, {"error": sentence}).client.send(UG_LOCAL, "x")
    message = caught.value.message
    assert len(message) <= 500
    assert message.endswith("…")
    assert "0702913454" not in message


@pytest.mark.parametrize(
    ("fault", "billed"),
    [("timeout_next", 1), ("drop_next", 1), ("garble_next", 1), ("cut_before_next", 0)],
)
async def test_ambiguous_answers_to_a_send_are_unknown(
    server: SharedServer, fault: str, billed: int
) -> None:
    """A timeout after sending, a cut answer or an unreadable 200 all say "outcome unknown",
    whether or not UGSMS actually billed it (a cut before processing looks the same)."""
    env = server.sandbox(UgsmsSandboxConfig())
    setattr(env.sandbox.faults, fault, 1)
    async with httpx2.AsyncClient(timeout=0.3) as http:
        with pytest.raises(GatewayError) as caught:
            await env.client(http=http).send(UG_LOCAL, "maybe")
    error = caught.value
    assert error.outcome_unknown
    assert isinstance(error, UnavailableError | BadResponseError)
    if fault == "timeout_next":
        assert error.code == "TIMEOUT"
    assert env.sandbox.billed(UG_LOCAL, "maybe") == billed


async def test_timeout_on_a_read_is_not_an_unknown_outcome(server: SharedServer) -> None:
    """Only sends have an outcome to lose."""
    env = server.sandbox()
    env.sandbox.faults.targets = "all"
    env.sandbox.faults.timeout_next = 1
    async with httpx2.AsyncClient(timeout=0.3) as http:
        with pytest.raises(UgsmsUnavailableError) as caught:
            await env.client(http=http).balance()
    assert (caught.value.code, caught.value.outcome_unknown) == ("TIMEOUT", False)


async def test_connection_refused_never_reached_ugsms() -> None:
    """A connect error is retryable and, even for a send, provably never sent."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with httpx2.AsyncClient() as http:
        client = UgsmsClient(http, api_key=DEFAULT_API_KEY, base_url=f"http://127.0.0.1:{port}")
        with pytest.raises(UgsmsUnavailableError) as caught:
            await client.send(UG_LOCAL, "x")
    error = caught.value
    assert (error.code, error.retryable, error.outcome_unknown) == ("CONNECTION_ERROR", True, False)


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (_send(sender_id="TWELVE_CHARS"), "INVALID_SENDER_ID"),
        (_send(text=""), "VALIDATION_ERROR"),
        (_send(to=""), "VALIDATION_ERROR"),
        (lambda c: c.send_bulk([]), "VALIDATION_ERROR"),
        (lambda c: c.send_bulk([(UG_LOCAL, "")]), "VALIDATION_ERROR"),
    ],
)
async def test_what_ugsms_would_refuse_is_refused_before_any_request(
    server: SharedServer, call: Call, code: str
) -> None:
    """An over-long sender (UGSMS allows 11 characters), an empty text, number or batch are
    refused locally as validation errors: nothing is sent."""
    canned = server.canned(200, {"success": True})
    with pytest.raises(UgsmsValidationError) as caught:
        await call(canned.client)
    assert caught.value.code == code
    assert isinstance(caught.value, PermanentGatewayError)
    assert canned.requests == []
