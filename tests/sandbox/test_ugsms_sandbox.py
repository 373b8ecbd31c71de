"""The UGSMS sandbox over raw HTTP: v2 auth and bodies, v1 refusing keys, balance, numbers,
sender IDs, the per-key minute window, bulk, faults, billed counters and admin endpoints."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
import pytest_asyncio

from castbridge.sandbox.ugsms import (
    DEFAULT_API_KEY,
    DEFAULT_PASSWORD,
    DEFAULT_SENDER_ID,
    DEFAULT_USERNAME,
    V1_CREDENTIALS_REQUIRED,
    SandboxAccount,
    UgsmsSandbox,
    UgsmsSandboxConfig,
    create_ugsms_sandbox,
)
from tests.gateways.ugsms_support import UG_LOCAL, SharedServer, UgsmsEnv, shared_server

pytestmark = pytest.mark.asyncio(loop_scope="module")

KEY = {"X-API-Key": DEFAULT_API_KEY}
SEND = "/api/v2/sms/send"
BALANCE = "/api/v2/account/balance"
OTHER_KEY = "ugsk_other_key_0001"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server() -> AsyncIterator[SharedServer]:
    async with shared_server() as shared:
        yield shared


@pytest.fixture
def env(server: SharedServer) -> UgsmsEnv:
    return server.sandbox()


async def _post(
    env: UgsmsEnv, path: str, body: Any = None, headers: dict[str, str] | None = None, **kw: Any
) -> httpx2.Response:
    return await env.http.post(
        env.url + path, json=body, headers=KEY if headers is None else headers, **kw
    )


async def _get(
    env: UgsmsEnv, path: str, headers: dict[str, str] | None = None, **kw: Any
) -> httpx2.Response:
    return await env.http.get(env.url + path, headers=KEY if headers is None else headers, **kw)


def _body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"numbers": UG_LOCAL, "message_body": "Hello"}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


async def test_default_config_works_out_of_the_box() -> None:
    """One account with a key, a v1 login, 10,000 UGX at 35 UGX a part and 60 requests/min."""
    sandbox = create_ugsms_sandbox().state.sandbox
    assert isinstance(sandbox, UgsmsSandbox)
    account = sandbox.account(DEFAULT_API_KEY)
    assert (account.username, account.password) == (DEFAULT_USERNAME, DEFAULT_PASSWORD)
    assert (account.balance, account.currency, account.sms_cost, account.rate_limit) == (
        10_000.0,
        "UGX",
        35.0,
        60,
    )


async def test_successful_send_body(env: UgsmsEnv) -> None:
    """200 {success, message, data:{message_id UUID, recipients, estimated_cost,
    remaining_balance}} plus the rate-limit headers."""
    response = await _post(env, SEND, _body(sender_id=DEFAULT_SENDER_ID))
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"success", "message", "data"}
    assert (body["success"], body["message"]) == (True, "Message sent successfully")
    data = body["data"]
    assert uuid.UUID(data["message_id"]).version == 4
    assert (data["recipients"], data["estimated_cost"], data["remaining_balance"]) == (
        1,
        35.0,
        9965.0,
    )
    assert response.headers["x-ratelimit-limit"] == "60"
    assert response.headers["x-ratelimit-remaining"] == "59"
    assert env.sandbox.billed(UG_LOCAL, "Hello", DEFAULT_API_KEY) == 1


@pytest.mark.parametrize("via", ["header", "query", "body", "form", "get"])
async def test_the_key_is_accepted_where_v2_documents_it(env: UgsmsEnv, via: str) -> None:
    """`X-API-Key` (preferred), or `api_key` as a query or body parameter (JSON or form); GET
    /sms/send with query parameters sends too."""
    if via == "header":
        response = await _post(env, SEND, _body())
    elif via == "query":
        response = await _post(env, SEND, _body(), headers={}, params={"api_key": DEFAULT_API_KEY})
    elif via == "body":
        response = await _post(env, SEND, _body(api_key=DEFAULT_API_KEY), headers={})
    elif via == "form":
        response = await env.http.post(env.url + SEND, data={**_body(), "api_key": DEFAULT_API_KEY})
    else:
        response = await _get(env, SEND, headers={}, params={**_body(), "api_key": DEFAULT_API_KEY})
    assert response.status_code == 200, response.text
    expected = "query" if via == "get" else ("body" if via == "form" else via)
    assert dict(env.sandbox.stats.auth_via) == {expected: 1}
    assert env.sandbox.billed(UG_LOCAL, "Hello") == 1


async def test_missing_key_answers_exactly_as_documented(env: UgsmsEnv) -> None:
    """401 {error, help} with the rate-limit headers (seed): even a refused request counts."""
    for path in (SEND, BALANCE):
        response = await env.http.request(
            "POST" if path == SEND else "GET", env.url + path, headers={"Authorization": "Bearer x"}
        )
        assert response.status_code == 401
        assert response.json() == {
            "error": "API key is required",
            "help": "Provide X-API-Key header or api_key parameter",
        }
        assert response.headers["x-ratelimit-limit"] == "60"
    assert response.headers["x-ratelimit-remaining"] == "58"


@pytest.mark.parametrize(
    ("change", "status", "error"),
    [
        ({}, 401, "Invalid API key"),
        ({"revoked": True}, 401, "API key has been revoked"),
        ({"expired": True}, 401, "API key has expired"),
        ({"is_active": False}, 403, "Account is inactive"),
    ],
)
async def test_refused_keys(env: UgsmsEnv, change: dict[str, Any], status: int, error: str) -> None:
    """An unknown, revoked or expired key, or an inactive account: v2's `{error}` shape."""
    headers = {"X-API-Key": "nope"} if not change else KEY
    for name, value in change.items():
        setattr(env.sandbox.account(DEFAULT_API_KEY), name, value)
    response = await _post(env, SEND, _body(), headers=headers)
    assert (response.status_code, response.json()) == (status, {"error": error})
    assert env.sandbox.billed() == 0


@pytest.mark.parametrize(
    "offer",
    [
        {"headers": {"X-API-Key": DEFAULT_API_KEY}},
        {"headers": {"Authorization": f"Bearer {DEFAULT_API_KEY}"}},
        {"params": {"api_key": DEFAULT_API_KEY}},
    ],
)
async def test_v1_refuses_api_keys(env: UgsmsEnv, offer: dict[str, Any]) -> None:
    """v1 takes only username + password: a key (header, Bearer or api_key) gets the answer a
    first-hand test recorded, and nothing is sent."""
    response = await env.http.post(env.url + "/v1/sms/send", json=_body(), **offer)
    assert (response.status_code, response.json()) == (401, {"error": V1_CREDENTIALS_REQUIRED})
    assert env.sandbox.stats.v1_key_refusals == 1
    assert env.sandbox.billed() == 0


async def test_v1_with_username_and_password(env: UgsmsEnv) -> None:
    """v1 sends with its credentials as form or query parameters; wrong ones are `Unauthorized.`;
    a bad number is its documented 400."""
    login = {"username": DEFAULT_USERNAME, "password": DEFAULT_PASSWORD}
    ok = await env.http.post(env.url + "/v1/sms/send", data={**_body(), **login})
    assert ok.status_code == 200
    assert ok.json()["data"]["recipients"] == 1
    wrong = await env.http.get(
        env.url + "/v1/sms/send", params={**_body(), **login, "password": "bad"}
    )
    assert (wrong.status_code, wrong.json()) == (401, {"error": "Unauthorized."})
    bad = await env.http.post(env.url + "/v1/sms/send", data={**_body(numbers="123"), **login})
    assert (bad.status_code, bad.json()) == (400, {"error": "Invalid phone number format."})
    assert [m.api_version for m in env.sandbox.messages.values()] == ["v1"]


async def test_comma_separated_numbers_bill_every_recipient(env: UgsmsEnv) -> None:
    """`numbers` is a comma-separated string of local numbers (spaces tolerated); each
    recipient is billed 35 UGX a part."""
    response = await _post(env, SEND, _body(numbers=f"{UG_LOCAL}, 0776913451"))
    data = response.json()["data"]
    assert (data["recipients"], data["estimated_cost"]) == (2, 70.0)
    assert env.sandbox.billed(UG_LOCAL) == 1
    assert env.sandbox.billed("0776913451") == 1


@pytest.mark.parametrize(
    "numbers",
    ["+256702913454", "256702913454", "0812345678", "070291345", f"{UG_LOCAL},abc", ","],
)
async def test_only_local_ugandan_numbers_are_accepted(env: UgsmsEnv, numbers: str) -> None:
    """The docs use local `07…` numbers; anything else refuses the whole request."""
    response = await _post(env, SEND, _body(numbers=numbers))
    assert response.status_code == 400
    assert response.json() == {
        "error": "Invalid phone number format.",
        "help": "Use local format, e.g. 0701234567",
    }
    assert env.sandbox.billed() == 0


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (_body(numbers=None), "The numbers field is required."),
        (_body(numbers=[UG_LOCAL]), "The numbers field must be a comma-separated string."),
        (_body(message_body=None), "The message body field is required."),
        (_body(sender_id="TWELVE_CHARS"), "The sender id may not be greater than 11 characters."),
    ],
)
async def test_field_errors(env: UgsmsEnv, body: dict[str, Any], error: str) -> None:
    """Missing or malformed fields and a sender ID over 11 characters: 400 {error}."""
    response = await _post(env, SEND, body)
    assert (response.status_code, response.json()) == (400, {"error": error})


async def test_an_eleven_character_sender_is_fine(env: UgsmsEnv) -> None:
    """Exactly 11 characters is allowed."""
    response = await _post(env, SEND, _body(sender_id="ELEVENCHARS"))
    assert response.status_code == 200


async def test_multipart_texts_cost_per_part(env: UgsmsEnv) -> None:
    """161 GSM-7 characters are 2 parts: 70 UGX."""
    response = await _post(env, SEND, _body(message_body="a" * 161))
    assert response.json()["data"]["estimated_cost"] == 70.0


@pytest.mark.parametrize("status", [402, 400])
async def test_insufficient_balance(server: SharedServer, status: int) -> None:
    """A send the balance does not cover is refused whole, nothing billed or charged; the
    status is configurable because the docs do not give it."""
    env = server.sandbox(UgsmsSandboxConfig(insufficient_balance_status=status))
    env.sandbox.account(DEFAULT_API_KEY).balance = 50.0
    response = await _post(env, SEND, _body(numbers=f"{UG_LOCAL},0776913451"))
    assert (response.status_code, response.json()) == (status, {"error": "Insufficient balance"})
    assert env.sandbox.account(DEFAULT_API_KEY).balance == 50.0
    assert env.sandbox.billed() == 0


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ("data", {"success": True, "data": {"balance": 10_000.0, "currency": "UGX"}}),
        ("top_level", {"success": True, "balance": 10_000.0, "currency": "UGX"}),
    ],
)
async def test_balance_shapes(server: SharedServer, shape: str, expected: dict[str, Any]) -> None:
    """The undocumented balance body in both shapes a client must read."""
    env = server.sandbox(UgsmsSandboxConfig(balance_body=shape))  # type: ignore[arg-type]
    response = await _get(env, BALANCE)
    assert response.json() == expected


async def test_sixty_requests_a_minute_per_key(server: SharedServer) -> None:
    """Requests count down `x-ratelimit-remaining`; the 61st in the window is 429 with
    Retry-After and nothing is billed; another key has its own window; the next minute is
    fresh."""
    config = UgsmsSandboxConfig(
        accounts=[SandboxAccount(api_key=DEFAULT_API_KEY), SandboxAccount(api_key=OTHER_KEY)]
    )
    env = server.sandbox(config)
    remaining = []
    for _ in range(60):
        response = await _get(env, BALANCE)
        remaining.append(int(response.headers["x-ratelimit-remaining"]))
    assert remaining == list(range(59, -1, -1))
    over = await _post(env, SEND, _body())
    assert over.status_code == 429
    assert over.json() == {"message": "Too Many Attempts."}
    assert 1 <= int(over.headers["retry-after"]) <= 60
    assert over.headers["x-ratelimit-remaining"] == "0"
    assert env.sandbox.billed() == 0
    other = await _get(env, BALANCE, headers={"X-API-Key": OTHER_KEY})
    assert other.headers["x-ratelimit-remaining"] == "59"
    env.sandbox.advance(60)
    again = await _post(env, SEND, _body())
    assert (again.status_code, again.headers["x-ratelimit-remaining"]) == (200, "59")
    assert env.sandbox.stats.rate_limited == 1


async def test_the_bucket_model_limits_too(server: SharedServer) -> None:
    """The kit's DebtBucket model (burst 60, 1 a second) also answers 429 + Retry-After."""
    env = server.sandbox(UgsmsSandboxConfig(rate_limit_model="bucket"))
    for _ in range(60):
        assert (await _get(env, BALANCE)).status_code == 200
    over = await _get(env, BALANCE)
    assert over.status_code == 429
    assert int(over.headers["retry-after"]) >= 1


async def test_bulk_maps_results_by_index(env: UgsmsEnv) -> None:
    """`/sms/send/bulk`: good messages in `successful_messages`, bad ones in
    `failed_messages`, each by index; the batch reference is counted."""
    response = await _post(
        env,
        "/api/v2/sms/send/bulk",
        {
            "messages": [
                {"number": UG_LOCAL, "message_body": "a"},
                {"number": "0812345678", "message_body": "b"},
                {"number": "0776913451"},
            ],
            "sender_id": DEFAULT_SENDER_ID,
            "reference": "ref-1",
        },
    )
    body = response.json()
    assert body["success"] is True
    assert body["data"]["successful_messages"] == [
        {"index": 0, "number": UG_LOCAL, "number_of_messages": 1}
    ]
    assert body["data"]["failed_messages"] == [
        {"index": 1, "number": "0812345678", "error": "Invalid phone number"},
        {"index": 2, "number": "0776913451", "error": "Message body is required"},
    ]
    assert env.sandbox.billed_reference("ref-1") == 1
    assert env.sandbox.billed() == 1


async def test_bulk_without_failures_and_when_disabled(server: SharedServer) -> None:
    """`failed_messages` is null when none failed; with bulk off the route does not exist."""
    env = server.sandbox()
    ok = await _post(
        env, "/api/v2/sms/send/bulk", {"messages": [{"number": UG_LOCAL, "message_body": "a"}]}
    )
    assert ok.json()["data"]["failed_messages"] is None
    env.sandbox.config.bulk_enabled = False
    off = await _post(env, "/api/v2/sms/send/bulk", {"messages": []})
    assert (off.status_code, off.json()) == (404, {"message": "Not Found"})


@pytest.mark.parametrize(
    "path", ["/api/v2/sms/status/abc", "/api/v2/sms/messages", "/api/v2/webhooks"]
)
async def test_there_are_no_statuses_or_webhooks(env: UgsmsEnv, path: str) -> None:
    """UGSMS documents no status, list or webhook API: the sandbox has none."""
    assert (await _get(env, path)).status_code == 404


async def test_the_swagger_route_is_a_server_error(env: UgsmsEnv) -> None:
    """`GET /api/v2` answers 500 {"message": "Server Error"}, as UGSMS's docs show."""
    response = await _get(env, "/api/v2")
    assert (response.status_code, response.json()) == (500, {"message": "Server Error"})


async def test_injected_errors_answer_before_billing(env: UgsmsEnv) -> None:
    """An injected 500 is answered in Laravel's shape and nothing is sent."""
    env.sandbox.faults.fail_next = [500]
    response = await _post(env, SEND, _body())
    assert (response.status_code, response.json()) == (500, {"message": "Server Error"})
    assert env.sandbox.billed() == 0


async def test_faults_after_billing_and_before(env: UgsmsEnv) -> None:
    """A garbled 200 and a timeout bill the send; a cut before processing does not; faults
    target sends only by default, so the balance is untouched by them."""
    env.sandbox.faults.garble_next = 1
    garbled = await _post(env, SEND, _body(message_body="g"))
    assert (garbled.status_code, garbled.text) == (200, "<html>Bad gateway</html>")
    env.sandbox.faults.timeout_next = 1
    with pytest.raises(httpx2.ReadTimeout):
        await _post(env, SEND, _body(message_body="t"), timeout=0.3)
    env.sandbox.faults.cut_before_next = 1
    with pytest.raises(httpx2.TransportError):
        await _post(env, SEND, _body(message_body="c"))
    env.sandbox.faults.fail_next = [503]
    assert (await _get(env, BALANCE)).status_code == 200
    assert [env.sandbox.billed(text=t) for t in ("g", "t", "c")] == [1, 1, 0]
    stats = env.sandbox.snapshot()
    assert (stats["garbled"], stats["timeouts"], stats["cut_before"]) == (1, 1, 1)


async def test_billed_counters_prove_nothing_was_sent_twice(env: UgsmsEnv) -> None:
    """Counters per (key, recipient, text): the same text to the same number twice shows up in
    `sent_twice`, readable from another process through the admin API."""
    await _post(env, SEND, _body(message_body="once"))
    stats = (await _get(env, "/_sandbox/stats")).json()
    assert (stats["billed_total"], stats["sent_twice"]) == (1, 0)
    await _post(env, SEND, _body(message_body="once"))
    stats = (await _get(env, "/_sandbox/stats")).json()
    assert (stats["billed_total"], stats["sent_twice"]) == (2, 1)
    billed = await _get(env, "/_sandbox/billed", params={"to": UG_LOCAL, "text": "once"})
    assert billed.json() == {"count": 2}
    by_key = await _get(env, "/_sandbox/billed", params={"api_key": OTHER_KEY})
    assert by_key.json() == {"count": 0}


async def test_admin_endpoints(env: UgsmsEnv) -> None:
    """Messages, accounts (add, update, list with masked keys), faults, clock and reset."""
    await _post(env, SEND, _body())
    messages = (await _get(env, "/_sandbox/messages")).json()
    assert [(m["numbers"], m["text"], m["via"]) for m in messages] == [
        ([UG_LOCAL], "Hello", "send")
    ]
    added = await _post(env, "/_sandbox/accounts", {"api_key": OTHER_KEY, "balance": 5})
    assert added.json() == {"success": True}
    updated = await _post(env, f"/_sandbox/accounts/{OTHER_KEY}", {"balance": 0})
    assert updated.json() == {"success": True}
    assert env.sandbox.account(OTHER_KEY).balance == 0
    missing = await _post(env, "/_sandbox/accounts/unknown", {"balance": 0})
    assert missing.status_code == 404
    invalid = await _post(env, f"/_sandbox/accounts/{OTHER_KEY}", {"balance": -1})
    assert invalid.status_code == 400
    accounts = (await _get(env, "/_sandbox/accounts")).json()
    assert all("password" not in a and "…" in a["api_key"] for a in accounts)
    faults = await _post(env, "/_sandbox/faults", {"fail_next": [502]})
    assert faults.json()["fail_next"] == [502]
    assert (await _post(env, "/_sandbox/clock", {"advance": 61})).status_code == 200
    assert (await _post(env, "/_sandbox/reset", {})).json() == {"success": True}
    assert env.sandbox.faults.fail_next == []
    assert env.sandbox.stats.requests == 0


async def test_a_seed_makes_message_ids_deterministic(server: SharedServer) -> None:
    """Two sandboxes with the same seed hand out the same ids."""
    ids = []
    for _ in range(2):
        env = server.sandbox(UgsmsSandboxConfig(seed=42))
        response = await _post(env, SEND, _body())
        ids.append(response.json()["data"]["message_id"])
    assert ids[0] == ids[1]
