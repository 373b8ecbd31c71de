"""The CastBrick sandbox's own rules over real HTTP on loopback: auth, base path, validation,
billing, senders, limits, statuses, lists, webhooks API, faults, admin endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import pytest
import pytest_asyncio
from fastapi import FastAPI, Request
from fastapi.responses import Response

from castbridge.sandbox.castbrick import (
    CASTBRICK_DEFAULT_SENDER,
    DEFAULT_API_KEY,
    DEFAULT_SENDER_ID,
    DEFAULT_TEST_KEY,
    CastBrickSandbox,
    CastBrickSandboxConfig,
    SandboxAccount,
    create_castbrick_sandbox,
)
from castbridge.sandbox.server import serve_app

pytestmark = pytest.mark.asyncio(loop_scope="module")

AO = "+244923000000"
AUTH = {"Authorization": f"Bearer {DEFAULT_API_KEY}"}
SMS_KEY = "cb_live_" + "5" * 32


@dataclass
class Env:
    url: str
    http: httpx2.AsyncClient
    sandbox: CastBrickSandbox
    hooks: list[bytes]
    hook_url: str

    async def send(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        return await self.http.post(self.url + "/sms/send", json=body, headers=headers or AUTH)

    async def get(self, path: str, **params: Any) -> httpx2.Response:
        return await self.http.get(self.url + path, params=params, headers=AUTH)

    async def advance(self, seconds: float) -> None:
        response = await self.http.post(self.url + "/_sandbox/clock", json={"advance": seconds})
        assert response.status_code == 200


@dataclass
class Shared:
    url: str
    http: httpx2.AsyncClient
    app: FastAPI
    hooks: list[bytes]
    hook_url: str


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def shared() -> AsyncIterator[Shared]:
    hooks: list[bytes] = []
    receiver = FastAPI()

    @receiver.post("/hook")
    async def hook(request: Request) -> Response:
        hooks.append(await request.body())
        return Response(status_code=204)

    app = create_castbrick_sandbox()
    async with (
        serve_app(app) as url,
        serve_app(receiver) as hook_base,
        httpx2.AsyncClient(timeout=5.0) as http,
    ):
        yield Shared(url, http, app, hooks, hook_base + "/hook")


def _config(**overrides: Any) -> CastBrickSandboxConfig:
    accounts = [
        SandboxAccount(api_key=DEFAULT_API_KEY, rate_limit=1000.0),
        SandboxAccount(api_key=DEFAULT_TEST_KEY, rate_limit=1000.0),
        SandboxAccount(api_key=SMS_KEY, scopes=["Sms"], rate_limit=1000.0),
    ]
    return CastBrickSandboxConfig(accounts=accounts, seed=7, **overrides)


@pytest.fixture
def fresh(shared: Shared) -> Any:
    def make(**overrides: Any) -> Env:
        state = CastBrickSandbox(_config(**overrides))
        shared.app.state.sandbox = state
        shared.hooks.clear()
        return Env(shared.url, shared.http, state, shared.hooks, shared.hook_url)

    return make


def _sms(to: str | list[str] = AO, content: str = "Hello", **extra: Any) -> dict[str, Any]:
    return {"recipients": to if isinstance(to, list) else [to], "content": content, **extra}


# --- auth and base path ------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": DEFAULT_API_KEY}, {"Authorization": "Bearer cb_live_unknown00"}],
    ids=["missing", "not-bearer", "unknown"],
)
async def test_refused_keys_get_the_mock_401(fresh: Any, headers: dict[str, str]) -> None:
    """Missing, malformed and unknown keys: 401 with the official mock's body."""
    env = fresh()
    response = await env.http.get(env.url + "/billing/balance", headers=headers)
    assert response.status_code == 401
    assert response.json() == {
        "error": "Unauthorized",
        "message": "A valid Bearer API key is required.",
        "status": 401,
    }


async def test_revoked_key_is_refused(fresh: Any) -> None:
    """A revoked key is answered like an invalid one (the docs: "invalid or revoked")."""
    env = fresh()
    env.sandbox.account(DEFAULT_API_KEY).revoked = True
    assert (await env.get("/billing/balance")).status_code == 401


async def test_the_other_base_path_is_404(fresh: Any) -> None:
    """On the bare host, `/v1/...` is a 404 NotFound (even unauthenticated), and vice versa."""
    env = fresh()
    wrong = await env.http.get(env.url + "/v1/billing/balance")
    assert (wrong.status_code, wrong.json()["error"]) == (404, "NotFound")
    assert (await env.get("/billing/balance")).status_code == 200
    env = fresh(base_path="/v1")
    assert (await env.get("/billing/balance")).status_code == 404
    assert (await env.get("/v1/billing/balance")).status_code == 200
    assert (await env.http.get(env.url + "/v1/health")).json()["status"] == "ok"


async def test_an_sms_scoped_key_may_only_use_sms(fresh: Any) -> None:
    """A key with scope `Sms` sends, but billing and webhooks answer 403 Forbidden."""
    env = fresh()
    headers = {"Authorization": f"Bearer {SMS_KEY}"}
    assert (await env.send(_sms(), headers)).status_code == 200
    for path in ("/billing/balance", "/webhooks"):
        response = await env.http.get(env.url + path, headers=headers)
        assert (response.status_code, response.json()["error"]) == (403, "Forbidden")


# --- sends -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"recipients": [AO]}, 422, "SMS.ValidationError"),
        ({"content": "hi"}, 422, "SMS.ValidationError"),
        ({"recipients": AO, "content": "hi"}, 422, "SMS.ValidationError"),
        (_sms(["+1", "923000000", "abc", "+244923456"]), 400, "SMS.NoRecipients"),
        (_sms(content="x" * 1601), 422, "SMS.ValidationError"),
        (_sms(fallback="yes"), 422, "SMS.ValidationError"),
        (_sms(contactListId="3fa85f64-5717-4562-b3fc-2c963f66afa6"), 422, "SMS.ValidationError"),
        (_sms(scheduledAt="2020-01-01T00:00:00Z"), 422, "SMS.ValidationError"),
        (_sms(senderId="NOPE", fallback=False), 422, "SMS.ValidationError"),
    ],
    ids=[
        "no-content",
        "no-recipients",
        "recipients-not-list",
        "no-valid-recipient",
        "too-long",
        "fallback-not-bool",
        "contact-list",
        "scheduled-in-past",
        "sender-refused",
    ],
)
async def test_send_refusals(fresh: Any, body: dict[str, Any], status: int, error: str) -> None:
    """Each refusal has CastBrick's status and `{error, message, status}`; nothing is billed."""
    env = fresh()
    response = await env.send(body)
    assert response.status_code == status
    assert response.json()["error"] == error
    assert response.json()["message"]
    assert env.sandbox.stats.billed == {}
    assert env.sandbox.account(DEFAULT_API_KEY).balance == 10_000.0


async def test_invalid_json_is_a_bad_request(fresh: Any) -> None:
    """An unreadable body is 400 BadRequest, like the mock."""
    env = fresh()
    response = await env.http.post(env.url + "/sms/send", content=b"{nope", headers=AUTH)
    assert response.status_code == 400
    assert response.json()["message"] == "Invalid JSON payload."


async def test_send_dedupes_recipients_and_bills_per_segment(fresh: Any) -> None:
    """Duplicates are dropped; each recipient costs cost_per_sms per segment; the answer has
    both spellings of id and count."""
    env = fresh()
    response = await env.send(_sms([AO, AO, "+244912000000"], content="x" * 161))
    body = response.json()
    assert response.status_code == 200
    assert body["messageId"] == body["id"]
    assert (body["status"], body["recipientCount"], body["recipientsCount"]) == ("Queued", 2, 2)
    assert body["costAoa"] == 40.0
    assert env.sandbox.account(DEFAULT_API_KEY).balance == 9_960.0
    assert env.sandbox.billed(AO, "x" * 161) == 1


async def test_not_enough_balance_is_402(fresh: Any) -> None:
    """Balance below the cost: 402 SMS.InsufficientCredits, nothing stored or charged."""
    env = fresh()
    env.sandbox.account(DEFAULT_API_KEY).balance = 9.0
    response = await env.send(_sms())
    assert (response.status_code, response.json()["error"]) == (402, "SMS.InsufficientCredits")
    assert env.sandbox.messages == {}
    assert env.sandbox.account(DEFAULT_API_KEY).balance == 9.0


@pytest.mark.parametrize(
    ("extra", "sender"),
    [
        ({"senderId": DEFAULT_SENDER_ID}, DEFAULT_SENDER_ID),
        ({}, CASTBRICK_DEFAULT_SENDER),
        ({"senderId": "NOPE"}, CASTBRICK_DEFAULT_SENDER),
        ({"senderId": "NOPE", "fallback": True}, CASTBRICK_DEFAULT_SENDER),
    ],
    ids=["registered", "omitted", "fallback-default-true", "fallback-true"],
)
async def test_sender_rules(fresh: Any, extra: dict[str, Any], sender: str) -> None:
    """A registered sender is used; omitted, or refused with fallback (true by default),
    CastBrick's default sender silently replaces it."""
    env = fresh()
    message_id = (await env.send(_sms(**extra))).json()["messageId"]
    assert env.sandbox.messages[message_id].sender_id == sender


async def test_rate_limit_answers_429_with_retry_after(fresh: Any) -> None:
    """Over the key's requests/s: 429 TooManyRequests with Retry-After, nothing processed."""
    env = fresh(retry_after_seconds=2)
    env.sandbox.account(DEFAULT_API_KEY).rate_limit = 2.0
    answers = [await env.send(_sms(content=f"m{n}")) for n in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].headers["retry-after"] == "2"
    assert answers[2].json()["error"] == "TooManyRequests"
    assert env.sandbox.billed(AO, "m2") == 0
    assert env.sandbox.stats.rate_limited == 1


# --- statuses and reads --------------------------------------------------------------------


async def test_status_timeline_and_case(fresh: Any) -> None:
    """Queued → Sent (1 s) → Delivered (3 s), capitalised by default, lower-case when asked;
    an undeliverable number ends Failed with its errorMessage."""
    for case, expected in (
        ("capitalized", ["Queued", "Sent", "Delivered"]),
        ("lower", ["queued", "sent", "delivered"]),
    ):
        env = fresh(status_case=case)
        message_id = (await env.send(_sms())).json()["messageId"]
        failing = (await env.send(_sms("+244923000404"))).json()["messageId"]
        seen = []
        for step in (0, 1.5, 2):
            await env.advance(step)
            seen.append((await env.get(f"/sms/{message_id}")).json()["status"])
        assert seen == expected
        item = (await env.get(f"/sms/{failing}")).json()
        assert item["status"].lower() == "failed"
        assert item["errorMessage"] == "Undeliverable: the handset is unreachable"
        delivered = (await env.get(f"/sms/{message_id}")).json()
        assert delivered["deliveredAt"]
        assert delivered["sentAt"]


async def test_list_filters_pages_and_orders(fresh: Any) -> None:
    """GET /sms filters by status, partial phone and time; pages newest first; pageSize is
    cut to the maximum."""
    env = fresh(max_page_size=2)
    for n in range(3):
        await env.send(_sms(content=f"n{n}"))
        await env.advance(10)
    await env.send(_sms("+244912000000", content="other"))
    page = (await env.get("/sms", phone="923000", pageSize=50)).json()
    assert (page["pageSize"], page["totalCount"], page["totalPages"]) == (2, 3, 2)
    assert [i["message"] for i in page["items"]] == ["n2", "n1"]
    assert (page["hasNextPage"], page["hasPreviousPage"]) == (True, False)
    last = (await env.get("/sms", phone="923000", pageSize=2, pageNumber=2)).json()
    assert ([i["content"] for i in last["items"]], last["hasNextPage"]) == (["n0"], False)
    delivered = (await env.get("/sms", status="delivered")).json()
    assert delivered["totalCount"] == 3  # n0..n2 are old enough; "other" is still queued
    now = datetime.fromtimestamp(env.sandbox.clock(), UTC)
    recent = (await env.get("/sms", **{"from": (now - timedelta(seconds=15)).isoformat()})).json()
    assert {i["content"] for i in recent["items"]} == {"n2", "other"}
    bad = await env.get("/sms", status="nonsense")
    assert (bad.status_code, bad.json()["error"]) == (400, "BadRequest")


@pytest.mark.parametrize("style", ["sdk", "openapi"])
async def test_field_styles(fresh: Any, style: str) -> None:
    """Items use the SDKs' spelling or the OpenAPI aliases, as configured."""
    env = fresh(field_style=style)
    await env.send(_sms())
    (item,) = (await env.get("/sms")).json()["items"]
    sdk = {"recipientPhone", "message"}
    openapi = {"messageId", "phone", "content", "createdAt"}
    present = sdk if style == "sdk" else openapi
    absent = openapi if style == "sdk" else sdk
    assert present <= set(item)
    assert not absent & set(item)


async def test_get_by_id_with_distinct_item_ids(fresh: Any) -> None:
    """With item ids distinct from the batch id, GET /sms/{batch} is 404 and the item id
    works; another key cannot read the message."""
    env = fresh(recipient_ids="distinct")
    batch = (await env.send(_sms())).json()["messageId"]
    (item,) = (await env.get("/sms")).json()["items"]
    assert item["messageId"] == batch != item["id"]
    assert (await env.get(f"/sms/{batch}")).status_code == 404
    assert (await env.get(f"/sms/{item['id']}")).json()["id"] == item["id"]
    other = await env.http.get(
        f"{env.url}/sms/{item['id']}", headers={"Authorization": f"Bearer {DEFAULT_TEST_KEY}"}
    )
    assert other.status_code == 404


async def test_cancel_only_scheduled(fresh: Any) -> None:
    """DELETE /sms/{id}: a scheduled message is cancelled (204, refunded); a queued one 404."""
    env = fresh()
    later = (datetime.fromtimestamp(env.sandbox.clock(), UTC) + timedelta(hours=1)).isoformat()
    scheduled = (await env.send(_sms(scheduledAt=later))).json()
    assert scheduled["status"] == "Scheduled"
    queued = (await env.send(_sms(content="now"))).json()["messageId"]
    assert env.sandbox.account(DEFAULT_API_KEY).balance == 9_980.0
    gone = await env.http.delete(f"{env.url}/sms/{scheduled['messageId']}", headers=AUTH)
    assert gone.status_code == 204
    assert env.sandbox.account(DEFAULT_API_KEY).balance == 9_990.0
    refused = await env.http.delete(f"{env.url}/sms/{queued}", headers=AUTH)
    assert refused.status_code == 404


async def test_balance_body(fresh: Any) -> None:
    """GET /billing/balance → balance, lowBalanceThreshold, alertEmail (AOA)."""
    env = fresh()
    body = (await env.get("/billing/balance")).json()
    assert body["balance"] == 10_000.0
    assert (body["currency"], body["lowBalanceThreshold"]) == ("AOA", 500.0)
    assert body["alertEmail"]


# --- webhooks API and pushes ---------------------------------------------------------------


async def test_webhooks_crud(fresh: Any) -> None:
    """Create (201, id as a JSON string), list, get, toggle, delete; unknown types and plain
    http on a public host are refused; another key sees nothing."""
    env = fresh()
    url = env.url + "/webhooks"
    created = await env.http.post(
        url, json={"endpoint": "https://example.com/h/1", "eventType": "smsdelivered"}, headers=AUTH
    )
    assert created.status_code == 201
    webhook_id = created.json()
    assert isinstance(webhook_id, str)
    listed = (await env.get("/webhooks", pageNumber=1, pageSize=10)).json()
    assert [(w["id"], w["eventType"], w["isActive"]) for w in listed["items"]] == [
        (webhook_id, "SmsDelivered", True)
    ]
    toggled = await env.http.put(f"{url}/{webhook_id}/toggle", headers=AUTH)
    assert toggled.status_code == 204
    assert (await env.get(f"/webhooks/{webhook_id}")).json()["isActive"] is False
    other = await env.http.get(
        f"{url}/{webhook_id}", headers={"Authorization": f"Bearer {DEFAULT_TEST_KEY}"}
    )
    assert other.status_code == 404
    assert (await env.http.delete(f"{url}/{webhook_id}", headers=AUTH)).status_code == 204
    assert (await env.get(f"/webhooks/{webhook_id}")).status_code == 404
    for body in (
        {"endpoint": "https://example.com/h", "eventType": "Nope"},
        {"endpoint": "http://example.com/h", "eventType": "SmsSent"},
        {"endpoint": "not a url", "eventType": "SmsSent"},
    ):
        refused = await env.http.post(url, json=body, headers=AUTH)
        assert refused.status_code == 422


async def _wait(hooks: list[bytes], count: int) -> None:
    for _ in range(500):
        if len(hooks) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"expected {count} pushes, got {len(hooks)}")


async def test_events_go_to_each_registration_of_their_type(fresh: Any) -> None:
    """A send posts SmsSent, SmsDelivered and DeliveryReceipt to the registrations of those
    types only; logs record each delivery; an inactive registration gets nothing."""
    env = fresh(sent_after_seconds=0, final_after_seconds=0)
    for event_type in ("SmsSent", "SmsDelivered", "DeliveryReceipt", "SmsFailed"):
        await env.http.post(
            env.url + "/webhooks",
            json={"endpoint": env.hook_url, "eventType": event_type},
            headers=AUTH,
        )
    muted = (
        await env.http.post(
            env.url + "/webhooks",
            json={"endpoint": env.hook_url + "?muted", "eventType": "SmsSent"},
            headers=AUTH,
        )
    ).json()
    await env.http.put(f"{env.url}/webhooks/{muted}/toggle", headers=AUTH)
    await env.send(_sms())
    await _wait(env.hooks, 3)
    await env.sandbox.pusher.drain(2.0)
    assert len(env.hooks) == 3
    types = sorted(e.event_type for e in env.sandbox.events)
    assert types == ["DeliveryReceipt", "SmsDelivered", "SmsSent"]
    delivered_id = next(
        w.id for w in env.sandbox.webhooks.values() if w.event_type == "SmsDelivered"
    )
    (log,) = (await env.get(f"/webhooks/{delivered_id}/logs")).json()
    assert (log["eventType"], log["statusCode"], log["attempt"]) == ("SmsDelivered", 204, 1)


async def test_webhook_test_posts_the_callers_payload(fresh: Any) -> None:
    """POST /webhooks/test sends the given payload as is."""
    env = fresh()
    webhook_id = (
        await env.http.post(
            env.url + "/webhooks",
            json={"endpoint": env.hook_url, "eventType": "SmsSent"},
            headers=AUTH,
        )
    ).json()
    response = await env.http.post(
        env.url + "/webhooks/test",
        json={"webhookId": webhook_id, "payload": '{"hello": 1}'},
        headers=AUTH,
    )
    assert response.status_code == 204
    await _wait(env.hooks, 1)
    assert env.hooks == [b'{"hello": 1}']


async def test_low_balance_event_when_crossing_the_threshold(fresh: Any) -> None:
    """Only the send that takes the balance below the threshold emits LowBalance."""
    env = fresh()
    env.sandbox.account(DEFAULT_API_KEY).balance = 515.0
    for n in range(3):
        await env.send(_sms(content=f"m{n}"))
    low = [e for e in env.sandbox.events if e.event_type == "LowBalance"]
    assert len(low) == 1
    assert low[0].body["data"]["balance"] == 495.0


# --- faults --------------------------------------------------------------------------------


async def test_faults_before_and_after_billing(fresh: Any) -> None:
    """A garbled answer follows a billed send; a cut-before answer bills nothing; injected
    gateway errors can be a proxy's HTML page."""
    env = fresh(html_gateway_errors=True)
    env.sandbox.faults.garble_next = 1
    garbled = await env.send(_sms(content="garbled"))
    assert (garbled.status_code, garbled.headers["content-type"]) == (200, "text/html")
    assert env.sandbox.billed(AO, "garbled") == 1
    env.sandbox.faults.cut_before_next = 1
    with pytest.raises(httpx2.TransportError):
        await env.send(_sms(content="cut"))
    assert env.sandbox.billed(AO, "cut") == 0
    env.sandbox.faults.fail_next = [502, 500]
    proxy = await env.send(_sms(content="x"))
    assert (proxy.status_code, proxy.headers["content-type"].split(";")[0]) == (502, "text/html")
    json_error = await env.send(_sms(content="x"))
    assert json_error.json() == {
        "error": "InternalServerError",
        "message": "An unexpected error occurred.",
        "status": 500,
    }


# --- admin and determinism -----------------------------------------------------------------


async def test_admin_endpoints(fresh: Any) -> None:
    """billed counters, messages, account updates, stats and emitters for another process."""
    env = fresh()
    await env.send(_sms(content="count me"))
    admin = env.url + "/_sandbox"
    billed = await env.http.get(admin + "/billed", params={"to": AO, "text": "count me"})
    assert billed.json() == {"count": 1}
    (message,) = (await env.http.get(admin + "/messages")).json()
    assert (message["recipientPhone"], message["fate"], message["parts"]) == (AO, "delivered", 1)
    updated = await env.http.post(f"{admin}/accounts/{DEFAULT_API_KEY}", json={"balance": 0})
    assert updated.status_code == 200
    assert (await env.send(_sms(content="broke"))).status_code == 402
    stats = (await env.http.get(admin + "/stats")).json()
    assert stats["sends"] == 1
    assert stats["calls"]["POST /sms/send"] == 2
    assert stats["billed"][0]["count"] == 1
    inbound = await env.http.post(admin + "/inbound", json={"from": AO, "text": "hi"})
    assert inbound.json()["event_type"] == "InboundMessage"
    assert inbound.json()["body"]["data"]["from"] == AO
    optout = await env.http.post(admin + "/optout", json={"phone": AO})
    assert optout.json()["body"]["data"]["keyword"] == "STOP"
    assert env.sandbox.account(DEFAULT_API_KEY).opted_out == [AO]
    events = (await env.http.get(admin + "/events")).json()
    assert [e["event_type"] for e in events] == ["InboundMessage", "OptOut"]
    assert (await env.http.post(admin + "/emit")).json() == {"emitted": 0}
    assert (await env.http.post(admin + "/inbound", json={"text": "x"})).status_code == 400
    missing = await env.http.post(admin + "/accounts/cb_live_nobody000", json={})
    assert missing.status_code == 404
    bad = await env.http.post(admin + "/accounts", json={"api_key": "nope"})
    assert bad.status_code == 400


async def test_same_seed_same_ids() -> None:
    """Message ids come from the seeded generator: the same seed replays the same ids."""
    ids = []
    for _ in range(2):
        sandbox = CastBrickSandbox(_config())
        account = sandbox.account(DEFAULT_API_KEY)
        ids.append([sandbox.send(account, _sms(content=f"{n}"))["messageId"] for n in range(3)])
    assert ids[0] == ids[1]
    assert len(set(ids[0])) == 3


def _pure_emit() -> tuple[int, int]:
    sandbox = CastBrickSandbox(_config())
    account = sandbox.account(DEFAULT_API_KEY)
    sandbox.create_webhook(account, {"endpoint": "https://example.com/h", "eventType": "OptOut"})
    event = sandbox.emit_optout(account, AO)
    return len(sandbox.events), len(event.deliveries)


async def test_pure_state_records_events_without_a_loop() -> None:
    """Used without a server (no running loop), events are recorded but never posted."""
    assert await asyncio.to_thread(_pure_emit) == (1, 0)
