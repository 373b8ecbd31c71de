"""The Cast sandbox over raw HTTP: rules, error bodies, limits, idempotency, faults, admin."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
import pytest_asyncio

from castbridge.sandbox.cast import (
    DEFAULT_API_KEY,
    DEFAULT_SENDER_ID,
    DEFAULT_TEST_KEY,
    FAILING_NUMBER,
    UNDELIVERABLE_NUMBER,
    CastSandbox,
    CastSandboxConfig,
    UnsubscribedEntry,
    create_cast_sandbox,
)
from tests.gateways.cast_support import CastEnv, SharedServer, make_config, shared_server

pytestmark = pytest.mark.asyncio(loop_scope="module")

KEY = {"X-API-Key": DEFAULT_API_KEY}
SMS = "/api/v1/sms/send"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server() -> AsyncIterator[SharedServer]:
    async with shared_server() as shared:
        yield shared


@pytest.fixture
def env(server: SharedServer) -> CastEnv:
    return server.sandbox()


async def _post(
    env: CastEnv, path: str, body: Any, headers: dict[str, str] | None = None
) -> httpx2.Response:
    return await env.http.post(env.url + path, json=body, headers=headers or KEY)


async def _get(env: CastEnv, path: str, headers: dict[str, str] | None = None) -> httpx2.Response:
    return await env.http.get(env.url + path, headers=headers or KEY)


def _send_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"to": "09171234567", "message": "Hello", "sender_id": DEFAULT_SENDER_ID}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def _is_error(response: httpx2.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"success", "error", "error_code"}
    assert (body["success"], body["error_code"]) == (False, code)
    return str(body["error"])


async def test_default_config_works_out_of_the_box() -> None:
    """The default sandbox knows the documented live-style key, the test key and demo numbers."""
    sandbox = create_cast_sandbox().state.sandbox
    assert isinstance(sandbox, CastSandbox)
    assert sandbox.account(DEFAULT_API_KEY).credits == 1000
    assert sandbox.account(DEFAULT_API_KEY).sender_ids[0].sender_id == DEFAULT_SENDER_ID
    assert DEFAULT_TEST_KEY in sandbox.accounts
    assert UNDELIVERABLE_NUMBER in sandbox.config.undeliverable_numbers
    assert FAILING_NUMBER in sandbox.config.failing_numbers


async def test_successful_send_body(env: CastEnv) -> None:
    """200 {success, message_id CAST + 12 hex, parts}; no sandbox flag on a live key."""
    response = await _post(env, SMS, _send_body())
    body = response.json()
    assert response.status_code == 200
    assert set(body) == {"success", "message_id", "parts"}
    assert body["message_id"].startswith("CAST")
    assert len(body["message_id"]) == 16
    assert body["parts"] == 1


async def test_legacy_unversioned_paths_are_aliases(env: CastEnv) -> None:
    """/api/sms/send and /api/account/balance are served by the same handlers."""
    assert (await _post(env, "/api/sms/send", _send_body())).status_code == 200
    assert (await _get(env, "/api/account/balance")).json()["credits"] == 999


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing X-API-Key header"),
        ({"X-API-Key": "cast_abc"}, "invalid api key"),
        ({"X-API-Key": "cast_" + "f" * 64}, "invalid api key"),
    ],
)
async def test_unknown_or_malformed_keys_are_401(
    env: CastEnv, headers: dict[str, str], message: str
) -> None:
    """Keys must be known cast_<64 hex> keys."""
    response = await env.http.post(env.url + SMS, json=_send_body(), headers=headers)
    assert _is_error(response, 401, "INVALID_API_KEY") == message


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"revoked": True}, "API_KEY_REVOKED"),
        ({"expired": True}, "API_KEY_EXPIRED"),
        ({"is_active": False}, "USER_INACTIVE"),
        ({"ip_whitelist": ["192.0.2.0/24"]}, "IP_NOT_WHITELISTED"),
    ],
)
async def test_account_state_refusals_are_403(
    env: CastEnv, change: dict[str, Any], code: str
) -> None:
    """Revoked, expired, inactive and IP-restricted accounts are refused on every endpoint."""
    for name, value in change.items():
        setattr(env.sandbox.account(DEFAULT_API_KEY), name, value)
    _is_error(await _get(env, "/api/v1/account/balance"), 403, code)


async def test_ip_allow_list_admits_listed_addresses(env: CastEnv) -> None:
    """An allow-list that contains loopback lets us in."""
    env.sandbox.account(DEFAULT_API_KEY).ip_whitelist = ["127.0.0.1/32"]
    assert (await _get(env, "/api/v1/account/balance")).status_code == 200


async def test_malformed_json_is_invalid_request(env: CastEnv) -> None:
    """A body that is not a JSON object is 400 INVALID_REQUEST."""
    response = await env.http.post(
        env.url + SMS, content=b"{not json", headers={**KEY, "Content-Type": "application/json"}
    )
    _is_error(response, 400, "INVALID_REQUEST")
    _is_error(await _post(env, SMS, ["a list"]), 400, "INVALID_REQUEST")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_send_body(to=None), "to is required"),
        (_send_body(to="123456"), "to must be 7-20 characters (digits, +, (, ), -)"),
        (_send_body(to="0917 123 4567"), "to must be 7-20 characters (digits, +, (, ), -)"),
        (_send_body(to="+" + "6" * 20), "to must be 7-20 characters (digits, +, (, ), -)"),
        (_send_body(message=None), "message is required"),
        (_send_body(message="x" * 10_001), "message is too long (max 10000 characters)"),
        (_send_body(sender_id="S" * 21), "sender ID is too long (max 20 characters)"),
        (
            _send_body(scheduled_at="2020-01-01T00:00:00Z"),
            "scheduled_at must be at least 30 seconds in the future",
        ),
    ],
)
async def test_field_validation(env: CastEnv, body: dict[str, Any], message: str) -> None:
    """Each bad field is 400 VALIDATION_ERROR with Cast's sentence."""
    assert _is_error(await _post(env, SMS, body), 400, "VALIDATION_ERROR") == message


async def test_accepted_number_formats(env: CastEnv) -> None:
    """Local, E.164 and punctuated numbers of 7-20 characters are accepted."""
    for number in ("09171234567", "+639171234567", "(0917)123-4567"):
        assert (await _post(env, SMS, _send_body(to=number))).status_code == 200


async def test_message_limit_is_configurable(server: SharedServer) -> None:
    """A Rev A-style 450-character limit can be configured."""
    env = server.sandbox(make_config(max_message_chars=450))
    response = await _post(env, SMS, _send_body(message="x" * 451))
    assert (
        _is_error(response, 400, "VALIDATION_ERROR") == "message is too long (max 450 characters)"
    )


async def test_otp_refuses_scheduling(env: CastEnv) -> None:
    """/otp/send has no scheduled_at."""
    body = _send_body(scheduled_at="2099-01-01T00:00:00Z")
    _is_error(await _post(env, "/api/v1/otp/send", body), 400, "VALIDATION_ERROR")


async def test_scheduled_send_has_no_message_id(env: CastEnv) -> None:
    """A scheduled send is 202 {success, scheduled_at} and is not dispatched or charged."""
    response = await _post(env, SMS, _send_body(scheduled_at="2099-01-01T00:00:00Z"))
    assert response.status_code == 202
    assert response.json() == {"success": True, "scheduled_at": "2099-01-01T00:00:00Z"}
    assert env.sandbox.account(DEFAULT_API_KEY).credits == 1000


async def test_sender_ids_must_be_approved(env: CastEnv) -> None:
    """An unapproved sender is 403 (our code SENDER_ID_NOT_ALLOWED); none given uses the first."""
    response = await _post(env, SMS, _send_body(sender_id="OTHER"))
    message = _is_error(response, 403, "SENDER_ID_NOT_ALLOWED")
    assert message == "sender_id 'OTHER' is not allowed for this user"
    ok = await _post(env, SMS, _send_body(sender_id=None))
    assert env.sandbox.messages[ok.json()["message_id"]].sender_id == DEFAULT_SENDER_ID
    env.sandbox.account(DEFAULT_API_KEY).sender_ids = []
    response = await _post(env, SMS, _send_body(sender_id=None))
    assert _is_error(response, 403, "NO_SENDER_IDS") == "no sender IDs assigned to this user"


async def test_parts_are_counted_with_segments_and_charged(env: CastEnv) -> None:
    """Each part costs a credit: 161 GSM characters or 71 UCS-2 characters are 2 parts."""
    gsm = await _post(env, SMS, _send_body(message="a" * 161))
    ucs2 = await _post(env, SMS, _send_body(message="😀" * 36))
    assert (gsm.json()["parts"], ucs2.json()["parts"]) == (2, 2)
    assert env.sandbox.account(DEFAULT_API_KEY).credits == 996


async def test_insufficient_credits_is_402(env: CastEnv) -> None:
    """Fewer credits than parts: 402 with Cast's "need X, have Y" sentence, nothing charged."""
    env.sandbox.account(DEFAULT_API_KEY).credits = 1
    response = await _post(env, SMS, _send_body(message="a" * 200))
    assert (
        _is_error(response, 402, "INSUFFICIENT_CREDITS") == "insufficient credits: need 2, have 1"
    )
    assert env.sandbox.account(DEFAULT_API_KEY).credits == 1


async def test_postpaid_accounts_go_negative_up_to_their_limit(env: CastEnv) -> None:
    """Postpaid credits may fall to -credit_limit; beyond that CREDIT_LIMIT_REACHED."""
    account = env.sandbox.account(DEFAULT_API_KEY)
    account.billing_type, account.credits, account.credit_limit = "postpaid", 0, 1
    assert (await _post(env, SMS, _send_body())).status_code == 200
    assert (await _get(env, "/api/v1/account/balance")).json()["credits"] == -1
    _is_error(await _post(env, SMS, _send_body()), 402, "CREDIT_LIMIT_REACHED")


async def test_sim_channel_needs_enabling_and_the_service(server: SharedServer) -> None:
    """SIM is 403 CHANNEL_NOT_ALLOWED by default, and 503 when the SIM service is down."""
    env = server.sandbox(CastSandboxConfig(ip_rate=1000, ip_burst=1000))
    body = _send_body(sender_id=None)
    message = _is_error(await _post(env, "/api/v1/sim/send", body), 403, "CHANNEL_NOT_ALLOWED")
    assert message == "sim channel not enabled for this account"
    env.sandbox.account(DEFAULT_API_KEY).allowed_channels = ["sms", "sim"]
    env.sandbox.config.sim_service_enabled = False
    _is_error(await _post(env, "/api/v1/sim/send", body), 503, "SERVICE_UNAVAILABLE")
    _is_error(await _post(env, "/api/v1/viber/send", body), 403, "CHANNEL_NOT_ALLOWED")


async def test_bulk_limits_and_credit_reservation(env: CastEnv) -> None:
    """Bulk takes 1-1,000 numbers and checks credits for the whole batch up front."""
    too_many = _send_body(to=["09171234567"] * 1001)
    _is_error(await _post(env, "/api/v1/sms/bulk", too_many), 400, "VALIDATION_ERROR")
    env.sandbox.account(DEFAULT_API_KEY).credits = 2
    response = await _post(env, "/api/v1/sms/bulk", _send_body(to=["09171234567"] * 3))
    assert (
        _is_error(response, 402, "INSUFFICIENT_CREDITS") == "insufficient credits: need 3, have 2"
    )
    assert "results" not in response.json()


async def test_idempotent_replay_returns_the_cached_answer_free(env: CastEnv) -> None:
    """Same key, same account: cached body with X-Idempotent-Replay, billed once."""
    headers = {**KEY, "X-Idempotency-Key": "ghl:loc:msg-1"}
    first = await _post(env, SMS, _send_body(), headers)
    second = await _post(env, SMS, _send_body(message="changed"), headers)
    assert second.json() == first.json()
    assert "x-idempotent-replay" not in first.headers
    assert second.headers["x-idempotent-replay"] == "true"
    assert env.sandbox.billed("ghl:loc:msg-1") == 1
    assert env.sandbox.account(DEFAULT_API_KEY).credits == 999


async def test_idempotency_is_scoped_per_api_key(env: CastEnv) -> None:
    """Another key with the same idempotency key is a different send."""
    env.sandbox.add_account(
        env.sandbox.account(DEFAULT_API_KEY).model_copy(update={"api_key": "cast_" + "1" * 64})
    )
    await _post(env, SMS, _send_body(), {**KEY, "X-Idempotency-Key": "k"})
    other = await _post(
        env, SMS, _send_body(), {"X-API-Key": "cast_" + "1" * 64, "X-Idempotency-Key": "k"}
    )
    assert "x-idempotent-replay" not in other.headers
    assert env.sandbox.billed("k") == 2


async def test_idempotency_expires_after_24_hours(env: CastEnv) -> None:
    """After the TTL the same key is processed (and billed) again."""
    headers = {**KEY, "X-Idempotency-Key": "old"}
    await _post(env, SMS, _send_body(), headers)
    env.sandbox.advance(24 * 3600 + 1)
    again = await _post(env, SMS, _send_body(), headers)
    assert "x-idempotent-replay" not in again.headers
    assert env.sandbox.billed("old") == 2


async def test_error_answers_are_cached_too(env: CastEnv) -> None:
    """A refused send replays its error under the same key, even once the cause is fixed."""
    env.sandbox.account(DEFAULT_API_KEY).credits = 0
    headers = {**KEY, "X-Idempotency-Key": "poor"}
    _is_error(await _post(env, SMS, _send_body(), headers), 402, "INSUFFICIENT_CREDITS")
    env.sandbox.account(DEFAULT_API_KEY).credits = 10
    replay = await _post(env, SMS, _send_body(), headers)
    _is_error(replay, 402, "INSUFFICIENT_CREDITS")
    assert replay.headers["x-idempotent-replay"] == "true"


async def test_overlong_idempotency_key_is_refused(env: CastEnv) -> None:
    """X-Idempotency-Key is at most 255 characters."""
    response = await _post(env, SMS, _send_body(), {**KEY, "X-Idempotency-Key": "k" * 256})
    _is_error(response, 400, "VALIDATION_ERROR")


async def test_account_rate_limit_is_429_with_retry_after(server: SharedServer) -> None:
    """Over the account's msg/s: 429 RATE_LIMIT_EXCEEDED with an integer Retry-After."""
    config = make_config(retry_after_seconds=2)
    config.accounts[0].rate_limit = 2.0
    env = server.sandbox(config)
    statuses = [(await _post(env, SMS, _send_body())).status_code for _ in range(2)]
    response = await _post(env, SMS, _send_body())
    assert statuses == [200, 200]
    _is_error(response, 429, "RATE_LIMIT_EXCEEDED")
    assert response.headers["retry-after"] == "2"
    assert env.sandbox.stats.rate_limited == 1
    assert (await _get(env, "/api/v1/account/balance")).status_code == 200  # reads are not metered


async def test_ip_rate_limit_covers_every_request(server: SharedServer) -> None:
    """The per-IP bucket (burst then rate) applies to reads as well as sends."""
    env = server.sandbox(make_config(ip_rate=1.0, ip_burst=2.0))
    statuses = [(await _get(env, "/api/v1/account/balance")).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


async def test_test_keys_are_free_instant_mocks(env: CastEnv) -> None:
    """Any cast_test_ key: sandbox true, SANDBOX_<16 hex> ids, no credits; status unknown."""
    key = {"X-API-Key": "cast_test_" + "ab" * 16}
    body = (await _post(env, SMS, _send_body(), key)).json()
    assert body["sandbox"] is True
    assert body["message_id"].startswith("SANDBOX_")
    assert len(body["message_id"]) == 24
    bulk = (await _post(env, "/api/v1/sms/bulk", _send_body(to=["09171234567"]), key)).json()
    assert bulk["sandbox"] is True
    _is_error(await _get(env, f"/api/v1/sms/status/{body['message_id']}", key), 404, "NOT_FOUND")
    env.sandbox.config.test_ids_pollable = True
    polled = await _get(env, f"/api/v1/sms/status/{body['message_id']}", key)
    assert polled.json()["status"] == "sent"


async def test_status_timeline_and_fields(env: CastEnv) -> None:
    """sent (no DLR fields), pending ACCEPTD, then delivered, undelivered or failed."""
    ids = {}
    for name, number in (
        ("ok", "09171234567"),
        ("undeliv", UNDELIVERABLE_NUMBER),
        ("fail", FAILING_NUMBER),
    ):
        ids[name] = (await _post(env, SMS, _send_body(to=number))).json()["message_id"]

    async def status(name: str) -> dict[str, Any]:
        return dict((await _get(env, f"/api/v1/sms/status/{ids[name]}")).json())

    first = await status("ok")
    assert set(first) == {"success", "message_id", "status", "sent_at"}
    assert first["status"] == "sent"
    env.sandbox.advance(2)
    assert ((await status("ok"))["status"], (await status("ok"))["dlr_status"]) == (
        "pending",
        "ACCEPTD",
    )
    failed = await status("fail")
    assert (failed["status"], failed["error_message"]) == (
        "failed",
        env.sandbox.config.failed_error_message,
    )
    env.sandbox.advance(3)
    delivered = await status("ok")
    assert (delivered["status"], delivered["dlr_status"]) == ("delivered", "DELIVRD")
    assert "delivered_at" in delivered
    undelivered = await status("undeliv")
    assert (undelivered["status"], undelivered["dlr_status"]) == ("undelivered", "UNDELIV")
    assert "delivered_at" not in undelivered


async def test_status_of_unknown_or_foreign_message_is_404(env: CastEnv) -> None:
    """Unknown ids and SMS ids asked on the SIM endpoint are NOT_FOUND."""
    sent = (await _post(env, SMS, _send_body())).json()["message_id"]
    _is_error(await _get(env, "/api/v1/sms/status/CASTnothing"), 404, "NOT_FOUND")
    _is_error(await _get(env, f"/api/v1/sim/status/{sent}"), 404, "NOT_FOUND")


async def test_unknown_path_and_wrong_method(env: CastEnv) -> None:
    """404 NOT_FOUND and 405 METHOD_NOT_ALLOWED in Cast's body shape."""
    _is_error(await _get(env, "/api/v1/nowhere"), 404, "NOT_FOUND")
    _is_error(await _get(env, SMS), 405, "METHOD_NOT_ALLOWED")


async def test_account_endpoints(env: CastEnv) -> None:
    """profile, sender-ids, usage, logs and sender-ID requests answer in Cast's shapes."""
    await _post(env, SMS, _send_body(message="a" * 200))
    profile = (await _get(env, "/api/v1/account/profile")).json()
    assert profile["billing_type"] == "topup"
    assert profile["allowed_channels"] == ["sms", "otp", "bulk", "sim"]
    senders = (await _get(env, "/api/v1/account/sender-ids")).json()["sender_ids"]
    assert senders[0] == {"sender_id": DEFAULT_SENDER_ID, "label": "Default", "channel": "sms"}
    usage = (await _get(env, "/api/v1/account/usage")).json()
    assert (usage["total"], usage["total_sent"], usage["total_parts"]) == (1, 1, 2)
    logs = (await _get(env, "/api/v1/sms/logs?status=sent&limit=10")).json()
    assert logs["count"] == 1
    assert logs["logs"][0]["smpp_message_id"].startswith("CAST")
    _is_error(await _get(env, "/api/v1/sms/logs?limit=501"), 400, "VALIDATION_ERROR")
    request = {"sender_id": "NEWBRAND", "company_name": "Acme", "reason": "brand"}
    answer = (await _post(env, "/api/v1/account/sender-ids/request", request)).json()
    assert answer["status"] == "pending_review"


async def test_opt_outs(env: CastEnv) -> None:
    """Opted-out numbers get 422 on token requests and are refused on send (our code)."""
    account = env.sandbox.account(DEFAULT_API_KEY)
    account.unsubscribed = [UnsubscribedEntry(phone="+639171234567", sender_id=DEFAULT_SENDER_ID)]
    token = {"phone": "09171234567", "sender_id": DEFAULT_SENDER_ID}
    _is_error(await _post(env, "/api/v1/unsubscribe/token", token), 422, "ALREADY_UNSUBSCRIBED")
    _is_error(await _post(env, SMS, _send_body()), 403, "RECIPIENT_UNSUBSCRIBED")
    fresh = await _post(env, "/api/v1/unsubscribe/token", {**token, "phone": "09181234567"})
    assert fresh.json()["link"].startswith("u.cast.ph/")
    listed = (await _get(env, "/api/v1/account/unsubscribed")).json()["data"]
    assert listed[0]["phone"] == "+639171234567"


async def test_faults_and_stats_through_the_admin_endpoints(env: CastEnv) -> None:
    """POST /_sandbox/faults injects errors and latency; GET /_sandbox/stats reports them."""
    answer = await env.http.post(
        env.url + "/_sandbox/faults", json={"fail_next": [503], "latency_seconds": 0.2}
    )
    assert answer.json()["fail_next"] == [503]
    started = time.monotonic()
    _is_error(await _post(env, SMS, _send_body()), 503, "SERVICE_UNAVAILABLE")
    assert time.monotonic() - started >= 0.2
    await _post(env, SMS, _send_body(), {**KEY, "X-Idempotency-Key": "stat-1"})
    stats = (await env.http.get(env.url + "/_sandbox/stats")).json()
    assert stats["injected"] == {"503": 1}
    assert stats["billed"] == {"stat-1": 1}
    assert stats["messages_by_status"] == {"sent": 1}
    bad = await env.http.post(env.url + "/_sandbox/faults", json={"error_rate": 2})
    assert bad.status_code == 400
    await env.http.post(env.url + "/_sandbox/reset")
    assert env.sandbox.faults.latency_seconds == 0
    assert env.sandbox.stats.requests == 0


async def test_random_error_rate_draws_from_the_status_mix(env: CastEnv) -> None:
    """error_rate 1 with a one-status mix fails every send with that status."""
    env.sandbox.faults.error_rate = 1.0
    env.sandbox.faults.error_statuses = [502]
    _is_error(await _post(env, SMS, _send_body()), 502, "PROVIDER_ERROR")
    assert (await _get(env, "/api/v1/account/balance")).status_code == 200  # reads untouched


async def test_admin_clock_and_accounts(env: CastEnv) -> None:
    """/_sandbox/clock moves status timelines; /_sandbox/accounts/{key} edits an account."""
    sent = (await _post(env, SMS, _send_body())).json()["message_id"]
    await env.http.post(env.url + "/_sandbox/clock", json={"advance": 60})
    assert (await _get(env, f"/api/v1/sms/status/{sent}")).json()["status"] == "delivered"
    await env.http.post(env.url + f"/_sandbox/accounts/{DEFAULT_API_KEY}", json={"credits": 5})
    assert (await _get(env, "/api/v1/account/balance")).json()["credits"] == 5
    messages = (await env.http.get(env.url + "/_sandbox/messages")).json()
    assert messages[0]["message_id"] == sent
