"""The Cellcast sandbox's own rules, over real HTTP: auth, contacts, senders, credits, opt-outs,
statuses, reports, replies, webhooks, limits, faults, billed counters and admin endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
import pytest_asyncio

from castbridge.sandbox.cellcast import (
    DEDICATED_NUMBER,
    DEFAULT_API_KEY,
    DEFAULT_SENDER,
    NO_ID_NUMBER,
    SECOND_API_KEY,
    SHARED_NUMBER,
    UNDELIVERABLE_NUMBER,
    CellcastSandbox,
)
from tests.gateways.cellcast_support import (
    ManualClock,
    SharedServer,
    make_config,
    shared_server,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

AUTH = {"Authorization": f"Bearer {DEFAULT_API_KEY}"}


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server() -> AsyncIterator[SharedServer]:
    async with shared_server() as shared:
        yield shared


def _sms(contacts: list[str] | None = None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "message": "Hello",
        "contacts": contacts if contacts is not None else ["+61412345678"],
        "countryCode": 61,
    }
    body.update(fields)
    return body


async def _post(
    server: SharedServer, path: str, body: Any, headers: dict[str, str] | None = None
) -> httpx2.Response:
    return await server.http.post(
        server.url + path, json=body, headers=AUTH if headers is None else headers
    )


async def _get(
    server: SharedServer, path: str, params: dict[str, str] | None = None
) -> httpx2.Response:
    return await server.http.get(server.url + path, params=params, headers=AUTH)


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nope-nope-nope-nope"}, {"Authorization": DEFAULT_API_KEY}],
)
async def test_bad_or_missing_keys_get_token_expired(
    server: SharedServer, headers: dict[str, str]
) -> None:
    """Every refusal of a key is 401 {code: 401, message: "Token expired"}."""
    server.sandbox()
    response = await _post(server, "/api/v1/gateway", _sms(), headers)
    assert (response.status_code, response.json()) == (
        401,
        {"code": 401, "message": "Token expired"},
    )


async def test_an_expired_account_is_refused_on_every_endpoint(server: SharedServer) -> None:
    """The `token_expired` flag makes the account and list endpoints answer 401 too."""
    env = server.sandbox()
    env.sandbox.account(DEFAULT_API_KEY).token_expired = True
    for path in ("/api/v1/apiClient/account", "/api/v1/apiClient/getResponses"):
        assert (await _get(server, path)).status_code == 401


@pytest.mark.parametrize("contact", ["+61412345678", "61412345678", "0412345678", "412345678"])
async def test_all_four_contact_forms_are_accepted(server: SharedServer, contact: str) -> None:
    """+614…, 614…, 04…, 4… are one number; Number comes back as 614…."""
    server.sandbox()
    response = await _post(server, "/api/v1/gateway", _sms([contact]))
    (item,) = response.json()["data"]["queueResponse"]
    assert (item["Contact"], item["Number"]) == (contact, "61412345678")
    assert len(item["MessageId"]) == 24


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_sms(["+6141234567"]), "contacts must start with 61/+61"),
        (_sms(["+1 555 0100"]), "contacts must start with 61/+61"),
        (_sms([]), "contacts is required"),
        (_sms(message=""), "message is required"),
        (_sms(countryCode=1), "countryCode must be 61"),
        (_sms(sender="Bad!"), "sender"),
        (_sms(sender="ABCDEFGHIJKL"), "sender"),
        (_sms(customString="has space"), "customString"),
    ],
)
async def test_validation_errors_use_the_code_message_stack_shape(
    server: SharedServer, body: dict[str, Any], message: str
) -> None:
    """Field refusals are 400 {code, message, stack}."""
    server.sandbox()
    response = await _post(server, "/api/v1/gateway", body)
    payload = response.json()
    assert response.status_code == 400
    assert set(payload) == {"code", "message", "stack"}
    assert message in payload["message"]


async def test_unregistered_sender_gets_the_refusal_body(server: SharedServer) -> None:
    """An unregistered sender ID: status:false under HTTP 200 with error.sender."""
    server.sandbox()
    response = await _post(server, "/api/v1/gateway", _sms(sender="NOTREG"))
    assert response.status_code == 200
    assert response.json() == {
        "status": False,
        "message": "Your sender id is not registered.",
        "data": [],
        "error": {"sender": "Your sender id is not registered."},
    }


async def test_credits_per_part_and_the_custom_sender_price(server: SharedServer) -> None:
    """Shared number: 1 credit a part; a custom ID or dedicated number: 1.3 a part."""
    env = server.sandbox()
    await _post(server, "/api/v1/gateway", _sms(message="x" * 200))  # 2 parts
    await _post(server, "/api/v1/gateway", _sms(sender=DEFAULT_SENDER))
    await _post(server, "/api/v1/gateway", _sms(sender=DEDICATED_NUMBER))
    assert env.sandbox.account(DEFAULT_API_KEY).sms_balance == pytest.approx(1000 - 2 - 2.6)
    account = (await _get(server, "/api/v1/apiClient/account")).json()
    assert account["meta"] == {"code": 200, "status": "success"}
    assert account["data"]["sms_balance"] == pytest.approx(995.4)


async def test_low_balance_is_a_422_refusal_and_bills_nothing(server: SharedServer) -> None:
    """Too few credits: 422 status:false with error.errorMessage; nothing is created."""
    env = server.sandbox()
    env.sandbox.account(DEFAULT_API_KEY).sms_balance = 0.5
    response = await _post(server, "/api/v1/gateway", _sms(customString="low-1"))
    assert response.status_code == 422
    assert response.json()["status"] is False
    assert "balance" in response.json()["error"]["errorMessage"]
    assert (env.sandbox.billed("low-1"), len(env.sandbox.messages)) == (0, 0)


async def test_opt_outs_answer_in_either_configured_shape(server: SharedServer) -> None:
    """ "list": unsubscribeContacts under status:true; "refusal": status:false "Contact is
    Unsubscribed…" for the whole request. Neither bills the opted-out number."""
    env = server.sandbox()
    env.sandbox.emit_optout(DEFAULT_API_KEY, "+61412345678")
    listed = (await _post(server, "/api/v1/gateway", _sms(["0412345678", "0400000001"]))).json()
    assert listed["data"]["unsubscribeContacts"] == ["0412345678"]
    assert [q["Number"] for q in listed["data"]["queueResponse"]] == ["61400000001"]
    env.sandbox.config.optout_answer = "refusal"
    refused = (await _post(server, "/api/v1/gateway", _sms())).json()
    assert refused["status"] is False
    assert "unsubscribed" in refused["message"].lower()
    assert env.sandbox.billed_to("+61412345678", "Hello") == 0
    optouts = (await _get(server, "/api/v1/apiClient/getOptout")).json()
    assert optouts["meta"]["status"] == "SUCCESS"
    assert optouts["message"] == "You have 1 optout contact(s)"
    assert optouts["data"]["items"][0]["number"] == "61412345678"


async def test_invalid_and_no_id_recipients(server: SharedServer) -> None:
    """A landline goes to invalidContacts; the no-id number gets a queue entry without a
    MessageId; neither is billed, the valid one is."""
    env = server.sandbox()
    contacts = ["61298765432", NO_ID_NUMBER, "+61412345678"]
    data = (await _post(server, "/api/v1/gateway", _sms(contacts))).json()["data"]
    assert data["invalidContacts"] == ["61298765432"]
    by_number = {q["Number"]: q["MessageId"] for q in data["queueResponse"]}
    assert by_number["61400000405"] is None
    assert by_number["61412345678"] is not None
    assert env.sandbox.account(DEFAULT_API_KEY).sms_balance == 999.0


async def test_statuses_move_and_reports_show_them(server: SharedServer) -> None:
    """queued → sent → delivered (or the configured failure); the detail's updatedAt is the
    last change; the minimal body has only _id, status, updatedAt and send_time."""
    clock = ManualClock()
    env = server.sandbox(make_config(undeliverable_status="expired"), clock=clock)
    good = (await _post(server, "/api/v1/gateway", _sms())).json()
    bad = (await _post(server, "/api/v1/gateway", _sms([UNDELIVERABLE_NUMBER]))).json()
    good_id = good["data"]["queueResponse"][0]["MessageId"]
    bad_id = bad["data"]["queueResponse"][0]["MessageId"]
    detail = (await _get(server, f"/api/v2/report/message/{good_id}")).json()
    assert (detail["status"], detail["data"]["status"], detail["data"]["send_time"]) == (
        True,
        "queued",
        None,
    )
    clock.advance(1.0)
    assert env.sandbox.status_of(good_id) == "sent"
    clock.advance(2.0)
    assert (env.sandbox.status_of(good_id), env.sandbox.status_of(bad_id)) == (
        "delivered",
        "expired",
    )
    env.sandbox.config.report_body = "minimal"
    minimal = (await _get(server, f"/api/v2/report/message/{good_id}")).json()
    assert set(minimal) == {"data"}
    assert set(minimal["data"]) == {"_id", "status", "updatedAt", "send_time"}


async def test_bad_ids_get_the_cast_error_and_foreign_ids_are_not_found(
    server: SharedServer,
) -> None:
    """A malformed id: Mongoose's CastError; another account's id: "message not found"."""
    server.sandbox()
    cast = (await _get(server, "/api/v2/report/message/fake_123")).json()
    assert (cast["status"], cast["error"]["name"]) == (False, "CastError")
    other = await server.http.post(
        server.url + "/api/v1/gateway",
        json=_sms(),
        headers={"Authorization": f"Bearer {SECOND_API_KEY}"},
    )
    foreign_id = other.json()["data"]["queueResponse"][0]["MessageId"]
    foreign = (await _get(server, f"/api/v2/report/message/{foreign_id}")).json()
    assert (foreign["status"], foreign["message"]) == (False, "message not found")


async def test_the_list_filters_pages_and_writes_receivers_without_the_zero(
    server: SharedServer,
) -> None:
    """campType is required; customString filters exactly; rows are newest first, paged, and
    `receiver` is national without the leading 0."""
    clock = ManualClock()
    env = server.sandbox(clock=clock)
    for n in range(3):
        await _post(server, "/api/v1/gateway", _sms(customString=f"ref-{n}"))
        clock.advance(1)
    missing = (await _get(server, "/api/v2/report/message")).json()
    assert missing["status"] is False
    one = (
        await _get(server, "/api/v2/report/message", {"campType": "sms", "customString": "ref-1"})
    ).json()
    assert [r["receiver"] for r in one["data"]["items"]] == ["412345678"]
    assert "customString" not in one["data"]["items"][0]
    page = (
        await _get(server, "/api/v2/report/message", {"campType": "sms", "limit": "2", "page": "1"})
    ).json()["data"]
    assert (page["total"], page["totalPages"], page["hasNextPage"], page["nextPage"]) == (
        3,
        2,
        True,
        2,
    )
    newest = env.sandbox.messages[page["items"][0]["_id"]]
    assert newest.custom_string == "ref-2"
    bad_date = await _get(
        server, "/api/v2/report/message", {"campType": "sms", "fromDate": "02/03/2026"}
    )
    assert bad_date.status_code == 400


async def test_token_verify_and_scheduled_sends_are_recorded(server: SharedServer) -> None:
    """Token verify answers status:true; a send with scheduleAt is counted and stays
    `scheduled` (castbridge never sends one; tests can check the counter)."""
    env = server.sandbox()
    verify = (await _get(server, "/api/v1/user/token/verify")).json()
    assert verify["status"] is True
    data = (await _post(server, "/api/v1/gateway", _sms(scheduleAt="2026-03-02 10:00:00"))).json()[
        "data"
    ]
    assert env.sandbox.status_of(data["queueResponse"][0]["MessageId"]) == "scheduled"
    assert env.sandbox.stats.scheduled_requests == 1


async def test_chat_endpoint_answers_numbers_only(server: SharedServer) -> None:
    """/api/v1/chat needs both templates and answers {number, message} per recipient."""
    env = server.sandbox()
    missing = await _post(
        server, "/api/v1/chat", {"number": ["+61412345678"], "message": "hi", "countryCode": "61"}
    )
    assert missing.status_code == 400
    body = {
        "sender": "#SharedNum#",
        "number": ["+61412345678"],
        "countryCode": "61",
        "message": "hi",
        "smsTemplateId": "s",
        "rmsTemplateId": "r",
    }
    answer = (await _post(server, "/api/v1/chat", body)).json()
    assert answer["message"] == "Chat message(s) sent successfully"
    assert answer["data"] == [{"number": "61412345678", "message": "hi"}]
    assert env.sandbox.billed_to("0412345678", "hi") == 1


async def test_status_webhooks_are_pushed_to_the_dashboard_url(server: SharedServer) -> None:
    """Set by the admin endpoint (the dashboard), the Status URL gets {_id, status, type,
    sender, receiver} once the message is final; non-2xx answers are retried."""
    env = server.sandbox(make_config(sent_after_seconds=0.0, final_after_seconds=0.05))
    response = await server.http.post(
        f"{server.url}/_sandbox/accounts/{DEFAULT_API_KEY}/webhooks",
        json={"status_url": server.hooks_url + "/status", "receive_url": None},
    )
    assert response.json() == {"success": True}
    server.received.status = 500
    sent = (await _post(server, "/api/v1/gateway", _sms())).json()
    message_id = sent["data"]["queueResponse"][0]["MessageId"]
    for _ in range(100):
        if len(server.received.bodies) >= 2:
            break
        await asyncio.sleep(0.02)
    server.received.status = 200
    await env.sandbox.pusher.drain(5.0)
    bodies = server.received.json("/status")
    assert bodies[0] == {
        "_id": message_id,
        "status": "delivered",
        "type": "send",
        "sender": SHARED_NUMBER,
        "receiver": "61412345678",
    }
    assert len(bodies) >= 2  # the first attempt got a 500 and was retried
    assert env.sandbox.pusher.deliveries[0].delivered


@pytest.mark.parametrize("style", ["reply", "message"])
async def test_replies_are_pushed_and_kept_for_get_responses(
    server: SharedServer, style: str
) -> None:
    """/_sandbox/reply posts the Receive URL body in the configured field style and keeps the
    reply for getResponses (newest first)."""
    env = server.sandbox(make_config(reply_field=style))
    env.sandbox.set_webhooks(DEFAULT_API_KEY, None, server.hooks_url + "/receive")
    await _post(server, "/api/v1/gateway", _sms(message="Appointment at 3"))
    result = (
        await server.http.post(
            server.url + "/_sandbox/reply", json={"from": "0412345678", "text": "OK"}
        )
    ).json()
    assert result["delivered"] is True
    await env.sandbox.pusher.drain(5.0)
    (body,) = server.received.json("/receive")
    if style == "reply":
        assert body == {
            "sender": "61412345678",
            "reply": "OK",
            "message": "Appointment at 3",
            "receiver": SHARED_NUMBER,
        }
    else:
        assert (body["type"], body["status"], body["message"], body["_id"]) == (
            "receive",
            "received",
            "OK",
            result["message_id"],
        )
    listing = (await _get(server, "/api/v1/apiClient/getResponses")).json()
    assert listing["meta"]["status"] == "SUCCESS"
    assert listing["data"]["items"][0]["body"] == "OK"


async def test_replies_to_alphanumeric_senders_never_arrive(server: SharedServer) -> None:
    """One-way: a reply to a message from a sender ID is dropped; to a number it arrives, and
    with replyStopToOptOut a STOP puts the number on the opt-out list."""
    env = server.sandbox()
    await _post(server, "/api/v1/gateway", _sms(sender=DEFAULT_SENDER))
    dropped = env.sandbox.emit_reply(DEFAULT_API_KEY, "0412345678", "hello?")
    assert dropped["delivered"] is False
    assert env.sandbox.stats.dropped_replies == 1
    await _post(server, "/api/v1/gateway", _sms(sender=DEDICATED_NUMBER, replyStopToOptOut=True))
    arrived = env.sandbox.emit_reply(DEFAULT_API_KEY, "0412345678", "STOP")
    assert arrived["delivered"] is True
    assert env.sandbox.replies[-1].receiver == DEDICATED_NUMBER
    assert env.sandbox.account(DEFAULT_API_KEY).optouts == ["61412345678"]


async def test_optout_admin_endpoint_adds_and_removes(server: SharedServer) -> None:
    """/_sandbox/optout puts a number on (and with opted_in, off) the account's list."""
    env = server.sandbox()
    added = await server.http.post(server.url + "/_sandbox/optout", json={"number": "0412345678"})
    assert added.json()["optouts"] == ["61412345678"]
    await server.http.post(
        server.url + "/_sandbox/optout", json={"number": "+61412345678", "opted_in": True}
    )
    assert env.sandbox.account(DEFAULT_API_KEY).optouts == []


async def test_per_key_rate_limit_answers_429_with_retry_after(server: SharedServer) -> None:
    """Over the key's requests per second: 429 with Retry-After; another key is unaffected."""
    config = make_config(retry_after_seconds=2)
    config.accounts[0].rate_limit = 2.0
    env = server.sandbox(config)
    statuses = [(await _get(server, "/api/v1/apiClient/account")).status_code for _ in range(4)]
    assert statuses[:2] == [200, 200]
    assert 429 in statuses
    limited = await _get(server, "/api/v1/apiClient/account")
    assert limited.headers["retry-after"] == "2"
    assert env.sandbox.stats.rate_limited >= 2
    other = await server.http.get(
        server.url + "/api/v1/apiClient/account",
        headers={"Authorization": f"Bearer {SECOND_API_KEY}"},
    )
    assert other.status_code == 200


async def test_kit_faults_apply_to_sends_and_billing_is_counted(server: SharedServer) -> None:
    """An injected 503 bills nothing; a timeout bills the send once; the admin endpoints
    expose faults, billed counters, stats and messages."""
    env = server.sandbox()
    faults = await server.http.post(server.url + "/_sandbox/faults", json={"fail_next": [503]})
    assert faults.json()["fail_next"] == [503]
    failed = await _post(server, "/api/v1/gateway", _sms(customString="f-1"))
    assert failed.status_code == 503
    assert failed.json()["status"] is False
    env.sandbox.faults.timeout_next = 1
    env.sandbox.faults.timeout_seconds = 2.0
    async with httpx2.AsyncClient(timeout=0.3) as http:
        with pytest.raises(httpx2.ReadTimeout):
            await http.post(
                server.url + "/api/v1/gateway", json=_sms(customString="f-1"), headers=AUTH
            )
    billed = await server.http.get(server.url + "/_sandbox/billed", params={"custom_string": "f-1"})
    assert billed.json() == {"billed": 1}
    by_text = await server.http.get(
        server.url + "/_sandbox/billed", params={"to": "0412345678", "text": "Hello"}
    )
    assert by_text.json() == {"billed": 1}
    stats = (await server.http.get(server.url + "/_sandbox/stats")).json()
    assert (stats["injected"], stats["timeouts"], stats["billed_refs"]) == (
        {"503": 1},
        1,
        {"f-1": 1},
    )
    messages = (await server.http.get(server.url + "/_sandbox/messages")).json()
    assert [m["custom_string"] for m in messages] == ["f-1"]


async def test_admin_accounts_and_clock(server: SharedServer) -> None:
    """Accounts can be added and changed; the clock moves statuses forward."""
    env = server.sandbox()
    new_key = "cellcast_sandbox_" + "1" * 32
    added = await server.http.post(
        server.url + "/_sandbox/accounts", json={"api_key": new_key, "sms_balance": 5}
    )
    assert added.json() == {"success": True}
    changed = await server.http.post(
        f"{server.url}/_sandbox/accounts/{new_key}", json={"sms_balance": 0}
    )
    assert changed.json() == {"success": True}
    assert env.sandbox.account(new_key).sms_balance == 0
    sent = await server.http.post(
        server.url + "/api/v1/gateway", json=_sms(), headers={"Authorization": f"Bearer {new_key}"}
    )
    assert sent.status_code == 422
    await _post(server, "/api/v1/gateway", _sms())
    await server.http.post(server.url + "/_sandbox/clock", json={"advance": 10})
    assert (await server.http.get(server.url + "/_sandbox/messages")).json()[0]["status"] == (
        "delivered"
    )


async def test_ids_are_deterministic_with_a_seed() -> None:
    """The same seed gives the same 24-hex ids."""
    first = CellcastSandbox(make_config(seed=3))
    second = CellcastSandbox(make_config(seed=3))
    assert first.new_id() == second.new_id()
    assert len(first.new_id()) == 24
