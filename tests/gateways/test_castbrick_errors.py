"""Every CastBrick error answer, sandbox-made or canned, and every transport failure becomes the
right CastBrickError, with the outcome of a send classified right."""

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
    NotFoundError,
    OptedOutError,
    RateLimitedError,
    UnavailableError,
    ValidationFailedError,
)
from castbridge.gateways.castbrick import (
    CastBrickBadResponseError,
    CastBrickClient,
    CastBrickError,
    CastBrickForbiddenError,
    CastBrickInvalidRequestError,
    CastBrickNoRecipientsError,
    CastBrickPermanentError,
    CastBrickUnavailableError,
    CastBrickValidationError,
)
from castbridge.sandbox.castbrick import DEFAULT_API_KEY, CastBrickSandbox
from tests.gateways.castbrick_support import (
    AO,
    SMS_ONLY_KEY,
    UNKNOWN_KEY,
    SharedServer,
    make_config,
    shared_server,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

Call = Callable[[CastBrickClient], Awaitable[object]]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server() -> AsyncIterator[SharedServer]:
    async with shared_server() as shared:
        yield shared


def _send(to: str = AO, sender_id: str | None = None) -> Call:
    async def call(client: CastBrickClient) -> object:
        return await client.send(to, "Hello", sender_id=sender_id, fallback=False)

    return call


async def _twice(client: CastBrickClient) -> object:
    await client.balance()
    return await client.balance()


def _account(**changes: Any) -> Callable[[CastBrickSandbox], None]:
    def setup(sandbox: CastBrickSandbox) -> None:
        account = sandbox.account(DEFAULT_API_KEY)
        for name, value in changes.items():
            setattr(account, name, value)

    return setup


def _faults(**changes: Any) -> Callable[[CastBrickSandbox], None]:
    def setup(sandbox: CastBrickSandbox) -> None:
        for name, value in changes.items():
            setattr(sandbox.faults, name, value)

    return setup


def _nothing(sandbox: CastBrickSandbox) -> None:
    return None


@dataclass
class Case:
    name: str
    code: str
    status: int
    kind: type[GatewayError]
    setup: Callable[[CastBrickSandbox], None] = _nothing
    call: Call = field(default_factory=_send)
    api_key: str = DEFAULT_API_KEY
    retryable: bool = False
    pauses: bool = False
    unknown: bool = False  # outcome_unknown


SANDBOX_CASES = [
    Case("unknown key", "Unauthorized", 401, CredentialsError, api_key=UNKNOWN_KEY, pauses=True),
    Case("revoked key", "Unauthorized", 401, CredentialsError, _account(revoked=True), pauses=True),
    Case(
        "no credits",
        "SMS.InsufficientCredits",
        402,
        InsufficientCreditsError,
        _account(balance=5.0),
        pauses=True,
    ),
    Case("no recipients", "SMS.NoRecipients", 400, CastBrickNoRecipientsError, call=_send("+1")),
    Case(
        "sender refused",
        "SMS.ValidationError",
        422,
        CastBrickValidationError,
        call=_send(sender_id="NOPE"),
    ),
    Case(
        "scope on balance",
        "Forbidden",
        403,
        CastBrickForbiddenError,
        call=lambda c: c.balance(),
        api_key=SMS_ONLY_KEY,
    ),
    Case("unknown message", "NotFound", 404, NotFoundError, call=lambda c: c.get_message("nope")),
    Case(
        "rate limited",
        "TooManyRequests",
        429,
        RateLimitedError,
        _account(rate_limit=1.0),
        _twice,
        retryable=True,
    ),
    Case(
        "injected 500",
        "InternalServerError",
        500,
        UnavailableError,
        _faults(fail_next=[500]),
        retryable=True,
        unknown=True,
    ),
    Case(
        "injected 502",
        "BadGateway",
        502,
        UnavailableError,
        _faults(fail_next=[502]),
        retryable=True,
        unknown=True,
    ),
    Case(
        "injected 503 on a read",
        "ServiceUnavailable",
        503,
        UnavailableError,
        _faults(fail_next=[503], targets="all"),
        lambda c: c.balance(),
        retryable=True,
    ),
]


@pytest.mark.parametrize("case", SANDBOX_CASES, ids=lambda c: c.name)
async def test_sandbox_error_maps_to_gateway_error(server: SharedServer, case: Case) -> None:
    """Each refusal the sandbox produces becomes the right error class, code and flags, and
    never carries the API key."""
    env = server.sandbox()
    case.setup(env.sandbox)
    with pytest.raises(CastBrickError) as caught:
        await case.call(env.client(case.api_key, base_path=""))
    error = caught.value
    assert isinstance(error, case.kind)
    assert (error.code, error.http_status) == (case.code, case.status)
    assert error.retryable is case.retryable
    assert error.pauses_account is case.pauses
    assert error.outcome_unknown is case.unknown
    assert error.gateway == "castbrick"
    assert error.message
    for text in (str(error), repr(error), error.message):
        assert DEFAULT_API_KEY not in text
        assert UNKNOWN_KEY not in text


CANNED = [
    # (status, body, code, kind, retryable)
    (
        400,
        {"error": "BadRequest", "message": "Invalid JSON payload."},
        "BadRequest",
        CastBrickInvalidRequestError,
        False,
    ),
    (400, {"error": "SomethingNew", "message": "?"}, "SomethingNew", ValidationFailedError, False),
    (
        422,
        {"error": "OpenApiContractViolation", "message": "Missing required field 'content'"},
        "OpenApiContractViolation",
        CastBrickValidationError,
        False,
    ),
    (
        422,
        {
            "type": "https://tools.ietf.org/html/rfc4918#section-11.2",
            "title": "Validation",
            "status": 422,
            "errors": [{"code": "SMS.ValidationError", "description": "bad"}],
        },
        "SMS.ValidationError",
        CastBrickValidationError,
        False,
    ),
    (
        400,
        {"error": "SMS.InsufficientCredits", "message": "top up"},
        "SMS.InsufficientCredits",
        InsufficientCreditsError,
        False,
    ),
    (
        403,
        {"error": "Forbidden", "message": "Recipient has opted out"},
        "Forbidden",
        OptedOutError,
        False,
    ),
    (401, "Unauthorized", "UNAUTHORIZED", CredentialsError, False),
    (
        418,
        {"error": "Teapot", "message": "short and stout"},
        "Teapot",
        CastBrickPermanentError,
        False,
    ),
    (502, "<html><body>502 Bad Gateway</body></html>", "HTTP_502", CastBrickUnavailableError, True),
    (504, b"", "HTTP_504", CastBrickUnavailableError, True),
    (
        408,
        {"error": "RequestTimeout", "message": "slow"},
        "RequestTimeout",
        CastBrickUnavailableError,
        True,
    ),
    (429, {"error": "TooManyRequests"}, "TooManyRequests", RateLimitedError, True),
]


@pytest.mark.parametrize(("status", "body", "code", "kind", "retryable"), CANNED)
async def test_canned_answers_are_classified_by_status(
    server: SharedServer,
    status: int,
    body: Any,
    code: str,
    kind: type[GatewayError],
    retryable: bool,
) -> None:
    """Bodies the sandbox never makes (other shapes, HTML, empty) classify by HTTP status; the
    code comes from `error`/`code`/`errors[0].code`, a raw body is cut, a send's 5xx or 408
    leaves the outcome unknown."""
    client = server.canned(status, body)
    with pytest.raises(kind) as caught:
        await client.send(AO, "x", sender_id=None, fallback=False)
    error = caught.value
    assert (error.code, error.http_status, error.retryable) == (code, status, retryable)
    assert len(error.message) <= 500
    assert error.outcome_unknown is (status >= 500 or status == 408)


async def test_a_403_to_a_send_pauses_the_account(server: SharedServer) -> None:
    """A key that may not send fails every send: the 403 pauses the account."""
    client = server.canned(403, {"error": "Forbidden", "message": "no Sms scope"})
    with pytest.raises(CastBrickForbiddenError) as caught:
        await client.send(AO, "x", sender_id=None, fallback=False)
    assert caught.value.pauses_account is True


# --- 2xx answers that are not a success ----------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code", "kind", "unknown"),
    [
        ("<html>ok</html>", "INVALID_RESPONSE", CastBrickBadResponseError, True),
        (["not", "an", "object"], "INVALID_RESPONSE", CastBrickBadResponseError, True),
        ({"status": "Queued"}, "INVALID_RESPONSE", CastBrickBadResponseError, True),
        (
            {"messageId": "m-1", "error": "Provider down"},
            "SEND_ERROR_IN_SUCCESS",
            CastBrickBadResponseError,
            True,
        ),
        (
            {"messageId": "m-1", "recipientCount": 0},
            "SMS.NoRecipients",
            CastBrickValidationError,
            False,
        ),
    ],
)
async def test_odd_success_answers(
    server: SharedServer, body: Any, code: str, kind: type[GatewayError], unknown: bool
) -> None:
    """A 2xx that is not JSON, not an object, without an id or with an `error` may hide a
    send CastBrick took (unknown outcome); an explicit zero recipient count is a refusal."""
    client = server.canned(200, body)
    with pytest.raises(kind) as caught:
        await client.send(AO, "x", sender_id=None, fallback=False)
    assert caught.value.code == code
    assert caught.value.outcome_unknown is unknown
    assert not caught.value.retryable


async def test_id_alias_is_accepted(server: SharedServer) -> None:
    """The OpenAPI file's `id` (without `messageId`) and `recipientsCount` are read too."""
    client = server.canned(200, {"id": "m-7", "status": "queued", "recipientsCount": 1})
    result = await client.send(AO, "x", sender_id=None, fallback=False)
    assert (result.message_id, result.recipient_count) == ("m-7", 1)


async def test_unreadable_read_is_not_an_unknown_outcome(server: SharedServer) -> None:
    """Only sends have outcomes: an unreadable balance is a plain bad response."""
    client = server.canned(200, "<html>")
    with pytest.raises(BadResponseError) as caught:
        await client.balance()
    assert caught.value.outcome_unknown is False


# --- transport failures --------------------------------------------------------------------


async def test_connection_refused_never_reached_castbrick() -> None:
    """A refused connection is retryable and, even for a send, a known outcome."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with httpx2.AsyncClient() as http:
        client = CastBrickClient(
            http, api_key=DEFAULT_API_KEY, api_url=f"http://127.0.0.1:{port}", base_path=""
        )
        with pytest.raises(CastBrickUnavailableError) as caught:
            await client.send(AO, "x", sender_id=None, fallback=False)
    error = caught.value
    assert (error.code, error.retryable, error.outcome_unknown) == ("CONNECTION_ERROR", True, False)


@pytest.mark.parametrize(
    ("faults", "kind", "code", "billed"),
    [
        ({"timeout_next": 1, "timeout_seconds": 5.0}, CastBrickUnavailableError, "TIMEOUT", 1),
        ({"drop_next": 1}, CastBrickUnavailableError, "CONNECTION_ERROR", 1),
        ({"cut_before_next": 1}, CastBrickUnavailableError, "CONNECTION_ERROR", 0),
        ({"garble_next": 1}, CastBrickBadResponseError, "INVALID_RESPONSE", 1),
    ],
    ids=["timeout-after-billing", "dropped-after-billing", "cut-before-billing", "garbled"],
)
async def test_ambiguous_send_outcomes_are_unknown(
    server: SharedServer,
    faults: dict[str, Any],
    kind: type[GatewayError],
    code: str,
    billed: int,
) -> None:
    """A read timeout, a cut answer (before or after CastBrick billed: the client cannot tell)
    and an unreadable 2xx all leave a send's outcome unknown, and are never retried."""
    env = server.sandbox(make_config())
    for name, value in faults.items():
        setattr(env.sandbox.faults, name, value)
    client = env.client(base_path="", timeout_seconds=0.3)
    with pytest.raises(kind) as caught:
        await client.send(AO, "ambiguous", sender_id=None, fallback=False)
    assert caught.value.code == code
    assert caught.value.outcome_unknown is True
    assert env.sandbox.billed(AO, "ambiguous") == billed


async def test_read_timeouts_are_known_outcomes(server: SharedServer) -> None:
    """A timed-out read is retryable and not an unknown outcome (nothing to reconcile)."""
    env = server.sandbox(make_config())
    env.sandbox.faults.targets = "all"
    env.sandbox.faults.timeout_next = 1
    env.sandbox.faults.timeout_seconds = 5.0
    with pytest.raises(CastBrickUnavailableError) as caught:
        await env.client(base_path="", timeout_seconds=0.3).balance()
    assert (caught.value.code, caught.value.outcome_unknown) == ("TIMEOUT", False)
