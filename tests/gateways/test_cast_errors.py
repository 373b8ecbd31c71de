"""Every Cast error, Rev B code or Rev A sentence or non-JSON body, becomes the right CastError."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx2
import pytest
import pytest_asyncio

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
from castbridge.gateways.cast import (
    CastAlreadyUnsubscribedError,
    CastBadResponseError,
    CastChannelNotAllowedError,
    CastClient,
    CastError,
    CastInvalidRequestError,
    CastPermanentError,
    CastSenderIdError,
    CastUnavailableError,
)
from castbridge.sandbox.cast import DEFAULT_API_KEY, CastSandbox, UnsubscribedEntry
from tests.gateways.cast_support import NO_RETRY, SharedServer, make_config, shared_server

pytestmark = pytest.mark.asyncio(loop_scope="module")

UNKNOWN_KEY = "cast_" + "0" * 64
Call = Callable[[CastClient], Awaitable[object]]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server() -> AsyncIterator[SharedServer]:
    async with shared_server() as shared:
        yield shared


def _send(to: str = "09171234567", **kwargs: Any) -> Call:
    async def call(client: CastClient) -> object:
        return await client.send(to, "Hello", idempotency_key="err-key", **kwargs)

    return call


async def _twice(client: CastClient) -> object:
    await client.send_sms("09171234567", "a", idempotency_key="r1")
    return await client.send_sms("09171234567", "b", idempotency_key="r2")


def _account(**changes: Any) -> Callable[[CastSandbox], None]:
    def setup(sandbox: CastSandbox) -> None:
        account = sandbox.account(DEFAULT_API_KEY)
        for name, value in changes.items():
            setattr(account, name, value)

    return setup


def _config(**changes: Any) -> Callable[[CastSandbox], None]:
    def setup(sandbox: CastSandbox) -> None:
        for name, value in changes.items():
            setattr(sandbox.config, name, value)

    return setup


def _faults(**changes: Any) -> Callable[[CastSandbox], None]:
    def setup(sandbox: CastSandbox) -> None:
        for name, value in changes.items():
            setattr(sandbox.faults, name, value)

    return setup


def _nothing(sandbox: CastSandbox) -> None:
    return None


@dataclass
class Case:
    code: str
    status: int
    kind: type[GatewayError]
    setup: Callable[[CastSandbox], None] = _nothing
    call: Call = field(default_factory=_send)
    api_key: str = DEFAULT_API_KEY
    retryable: bool = False
    pauses: bool = False  # the account is refused: credentials or credits (gateways.md §6)


SANDBOX_CASES = [
    Case("VALIDATION_ERROR", 400, ValidationFailedError, call=_send("12345")),
    Case("INVALID_API_KEY", 401, CredentialsError, api_key=UNKNOWN_KEY, pauses=True),
    Case("INSUFFICIENT_CREDITS", 402, InsufficientCreditsError, _account(credits=0), pauses=True),
    Case(
        "CREDIT_LIMIT_REACHED",
        402,
        InsufficientCreditsError,
        _account(billing_type="postpaid", credits=0, credit_limit=0),
        pauses=True,
    ),
    Case("API_KEY_REVOKED", 403, CredentialsError, _account(revoked=True), pauses=True),
    Case("API_KEY_EXPIRED", 403, CredentialsError, _account(expired=True), pauses=True),
    Case("USER_INACTIVE", 403, CredentialsError, _account(is_active=False), pauses=True),
    Case(
        "IP_NOT_WHITELISTED",
        403,
        CredentialsError,
        _account(ip_whitelist=["10.0.0.0/8"]),
        pauses=True,
    ),
    Case(
        "CHANNEL_NOT_ALLOWED",
        403,
        CastChannelNotAllowedError,
        _account(allowed_channels=["sms", "otp", "bulk"]),
        _send(channel="sim"),
    ),
    Case("NOT_FOUND", 404, NotFoundError, call=lambda c: c.status("CAST000000000000")),
    Case(
        "ALREADY_UNSUBSCRIBED",
        422,
        CastAlreadyUnsubscribedError,
        _account(unsubscribed=[UnsubscribedEntry(phone="09171234567", sender_id="CASTBRIDGE")]),
        lambda c: c.unsubscribe_token("09171234567", "CASTBRIDGE"),
    ),
    Case(
        "RATE_LIMIT_EXCEEDED",
        429,
        RateLimitedError,
        _account(rate_limit=1.0),
        _twice,
        retryable=True,
    ),
    Case("INTERNAL_ERROR", 500, UnavailableError, _faults(fail_next=[500]), retryable=True),
    Case("PROVIDER_ERROR", 502, UnavailableError, _faults(fail_next=[502]), retryable=True),
    Case(
        "SERVICE_UNAVAILABLE",
        503,
        UnavailableError,
        _config(sim_service_enabled=False),
        _send(channel="sim", sender_id="CASTSIM"),
        retryable=True,
    ),
    Case("SENDER_ID_NOT_ALLOWED", 403, CastSenderIdError, call=_send(sender_id="NOPE")),
    Case("NO_SENDER_IDS", 403, CastSenderIdError, _account(sender_ids=[])),
]


def _check(error: CastError, case: Case) -> None:
    assert isinstance(error, case.kind)
    assert (error.code, error.http_status) == (case.code, case.status)
    assert error.retryable is case.retryable
    assert error.pauses_account is case.pauses
    assert error.gateway == "cast"
    assert error.message
    assert not error.message.startswith("Cast answered")
    for text in (str(error), repr(error), error.message):
        assert DEFAULT_API_KEY not in text
        assert UNKNOWN_KEY not in text


@pytest.mark.parametrize("rev_a", [False, True], ids=["rev-b-code", "rev-a-sentence"])
@pytest.mark.parametrize("case", SANDBOX_CASES, ids=lambda c: c.code)
async def test_sandbox_error_maps_to_gateway_error(
    server: SharedServer, case: Case, rev_a: bool
) -> None:
    """Each condition the sandbox produces maps by error_code, and the same by Rev A sentence."""
    env = server.sandbox(make_config(rev_a_errors=rev_a))
    case.setup(env.sandbox)
    with pytest.raises(CastError) as caught:
        await case.call(env.client(case.api_key, retry=NO_RETRY))
    _check(caught.value, case)


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (400, "INVALID_REQUEST", CastInvalidRequestError),
        (405, "METHOD_NOT_ALLOWED", CastInvalidRequestError),
    ],
)
async def test_codes_the_sandbox_cannot_provoke(
    server: SharedServer, status: int, code: str, kind: type[CastError]
) -> None:
    """Malformed JSON and a wrong method are our bugs: permanent, never retried."""
    client = server.canned(status, {"success": False, "error": "bad", "error_code": code})
    with pytest.raises(kind) as caught:
        await client.send_sms("09171234567", "x", idempotency_key="k")
    assert (caught.value.code, caught.value.retryable) == (code, False)


REV_A_ONLY = [
    (401, "missing X-API-Key header", "INVALID_API_KEY", CredentialsError),
    (400, "to is required", "VALIDATION_ERROR", ValidationFailedError),
    (400, "to must be 7-15 characters", "VALIDATION_ERROR", ValidationFailedError),
    (400, "message is required", "VALIDATION_ERROR", ValidationFailedError),
    (400, "message is too long (max 450 characters)", "VALIDATION_ERROR", ValidationFailedError),
    (400, "sender ID is too long (max 11 characters)", "VALIDATION_ERROR", ValidationFailedError),
    (402, "insufficient credits: need 6, have 3", "INSUFFICIENT_CREDITS", InsufficientCreditsError),
    (403, "no sender IDs assigned to this user", "NO_SENDER_IDS", CastSenderIdError),
    (403, "sender_id 'X' is not allowed for this user", "SENDER_ID_NOT_ALLOWED", CastSenderIdError),
    (403, "sim channel not enabled for this account", "CHANNEL_NOT_ALLOWED", PermanentGatewayError),
    (503, "sim service is disabled", "SERVICE_UNAVAILABLE", UnavailableError),
]


@pytest.mark.parametrize(("status", "sentence", "code", "kind"), REV_A_ONLY)
async def test_rev_a_sentences_are_classified(
    server: SharedServer, status: int, sentence: str, code: str, kind: type[GatewayError]
) -> None:
    """A Rev A body `{success:false, error}` is classified by its sentence, which is kept."""
    client = server.canned(status, {"success": False, "error": sentence})
    with pytest.raises(kind) as caught:
        await client.send_sms("09171234567", "x", idempotency_key="k")
    assert (caught.value.code, caught.value.message) == (code, sentence)


@pytest.mark.parametrize(
    ("status", "body", "code", "kind", "retryable"),
    [
        (
            502,
            "<html><body>502 Bad Gateway</body></html>",
            "PROVIDER_ERROR",
            CastUnavailableError,
            True,
        ),
        (504, "Gateway Timeout", "HTTP_504", CastUnavailableError, True),
        (500, b"", "INTERNAL_ERROR", CastUnavailableError, True),
        (401, "Unauthorized", "INVALID_API_KEY", CredentialsError, False),
        (418, {"success": False}, "HTTP_418", CastPermanentError, False),
        (
            403,
            {"success": False, "error": "recipient blocked"},
            "HTTP_403",
            CastPermanentError,
            False,
        ),
        (
            400,
            {"success": False, "error": "??", "error_code": "NEW_CODE"},
            "NEW_CODE",
            ValidationFailedError,
            False,
        ),
    ],
)
async def test_unusual_bodies_fall_back_to_the_http_status(
    server: SharedServer,
    status: int,
    body: Any,
    code: str,
    kind: type[GatewayError],
    retryable: bool,
) -> None:
    """Non-JSON and unknown bodies: 5xx transient, known 4xx by status, other 4xx permanent."""
    client = server.canned(status, body)
    with pytest.raises(kind) as caught:
        await client.send_sms("09171234567", "x", idempotency_key="k")
    error = caught.value
    assert (error.code, error.http_status, error.retryable) == (code, status, retryable)
    assert "<html>" not in error.message  # never the whole body
    assert error.outcome_unknown is (status >= 500)


async def test_unreadable_success_is_a_bad_response_with_unknown_outcome(
    server: SharedServer,
) -> None:
    """A 200 that is not JSON may hide an accepted send: permanent, outcome unknown."""
    client = server.canned(200, "<html>ok</html>")
    with pytest.raises(CastBadResponseError) as caught:
        await client.send_sms("09171234567", "x", idempotency_key="k")
    assert caught.value.outcome_unknown
    assert not caught.value.retryable


async def test_success_false_with_http_200_is_an_error(server: SharedServer) -> None:
    """Rev A may answer 200 with success false; that is still an error, by its sentence."""
    client = server.canned(200, {"success": False, "error": "invalid api key"})
    with pytest.raises(CredentialsError):
        await client.balance()


async def test_replayed_error_is_final(server: SharedServer) -> None:
    """An error answered from the idempotency cache is the message's final result: no retry."""
    client = server.canned(
        500,
        {"success": False, "error": "boom", "error_code": "INTERNAL_ERROR"},
        {"X-Idempotent-Replay": "true"},
    )
    with pytest.raises(CastUnavailableError) as caught:
        await client.send_sms("09171234567", "x", idempotency_key="k")
    assert caught.value.replayed
    assert not caught.value.retryable


async def test_connection_refused_never_reached_cast() -> None:
    """A connect error is retryable and, even for a send, not an unknown outcome."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with httpx2.AsyncClient() as http:
        client = CastClient(
            http, api_key=DEFAULT_API_KEY, base_url=f"http://127.0.0.1:{port}", retry=NO_RETRY
        )
        with pytest.raises(CastUnavailableError) as caught:
            await client.send_sms("09171234567", "x", idempotency_key="k")
    error = caught.value
    assert (error.code, error.retryable, error.outcome_unknown) == ("CONNECTION_ERROR", True, False)
