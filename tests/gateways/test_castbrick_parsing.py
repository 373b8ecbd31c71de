"""Pure CastBrick helpers: error translation, status mapping, tolerant models, webhook bodies,
settings. No network."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from castbridge.gateways.base import (
    BadResponseError,
    CredentialsError,
    PermanentGatewayError,
    ValidationFailedError,
)
from castbridge.gateways.castbrick import (
    DEFAULT_RATE_LIMIT,
    USED_EVENT_TYPES,
    CastBrickAccountSettings,
    CastBrickBadResponseError,
    CastBrickDefaults,
    CastBrickForbiddenError,
    CastBrickInvalidRequestError,
    CastBrickNoRecipientsError,
    MessagePage,
    SmsMessage,
    canonical_type,
    check_key,
    parse_retry_after,
    parse_webhook_body,
    to_delivery_status,
    translate_error,
)

# --- errors ----------------------------------------------------------------------------------


def test_messages_are_cut_and_keys_scrubbed() -> None:
    """A gateway sentence longer than 500 characters is cut, and a key or token in it masked."""
    body = (
        b'{"error": "X", "message": "Bearer abc.def key cb_live_SECRETSECRET ' + b"y" * 900 + b'"}'
    )
    error = translate_error(400, body, {}, send=True)
    assert len(error.message) == 500
    assert "SECRETSECRET" not in error.message
    assert "abc.def" not in error.message


def test_raw_text_is_kept_short() -> None:
    """A non-JSON body becomes a short sentence with the cut raw text, never the whole body."""
    error = translate_error(500, b"<html>" + b"z" * 5000 + b"</html>", {}, send=False)
    assert error.message.startswith("CastBrick answered HTTP 500: <html>")
    assert len(error.message) < 260


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("3", 3.0), ("0", 0.0), ("-5", 0.0), ("soon", None), (None, None), ("", None)],
)
def test_retry_after_seconds(header: str | None, seconds: float | None) -> None:
    """Delay-seconds are read, nonsense gives None, negatives 0."""
    assert parse_retry_after(header) == seconds


def test_retry_after_http_date() -> None:
    """An HTTP-date Retry-After becomes the seconds until then."""
    from datetime import UTC, datetime

    now = datetime(2026, 5, 7, 10, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Thu, 07 May 2026 10:00:30 GMT", now=now) == 30.0


def test_every_class_is_a_neutral_error() -> None:
    """The tree hangs under the base errors the pipeline knows."""
    assert issubclass(CastBrickInvalidRequestError, PermanentGatewayError)
    assert issubclass(CastBrickNoRecipientsError, ValidationFailedError)
    assert issubclass(CastBrickForbiddenError, CredentialsError)
    assert issubclass(CastBrickBadResponseError, BadResponseError)


# --- statuses --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "state", "terminal"),
    [
        ("pending", "pending", False),
        ("Queued", "pending", False),
        ("SCHEDULED", "pending", False),
        ("Sent", "pending", False),
        ("Delivered", "delivered", True),
        ("delivered", "delivered", True),
        ("Failed", "failed", True),
        ("Expired", "pending", False),
        ("", "pending", False),
    ],
)
def test_status_table(raw: str, state: str, terminal: bool) -> None:
    """Statuses compare case-insensitively; never "sent"; an unknown one is non-terminal."""
    status = to_delivery_status(message_id="m", raw_status=raw)
    assert (status.state, status.terminal, status.raw_status) == (state, terminal, raw)


def test_failed_status_carries_the_error_message() -> None:
    """A failure keeps CastBrick's errorMessage (cut) under code FAILED."""
    status = to_delivery_status(message_id="m", raw_status="failed", error_message="x" * 900)
    assert status.error_code == "FAILED"
    assert status.error_message is not None
    assert len(status.error_message) == 500
    assert not status.opted_out


def test_failure_by_opt_out_is_not_a_delivery_failure() -> None:
    """A failure whose sentence says the recipient opted out is reported as OPTED_OUT."""
    status = to_delivery_status(
        message_id="m", raw_status="Failed", error_message="Recipient opted out (STOP)"
    )
    assert (status.state, status.opted_out, status.error_code) == ("failed", True, "OPTED_OUT")


def test_delivered_keeps_its_time() -> None:
    """deliveredAt is kept for a delivery, dropped for anything else."""
    when = datetime(2026, 5, 7, 10, 23, 8, tzinfo=UTC)
    assert (
        to_delivery_status(message_id="m", raw_status="Delivered", delivered_at=when).delivered_at
        == when
    )
    assert (
        to_delivery_status(message_id="m", raw_status="Sent", delivered_at=when).delivered_at
        is None
    )


# --- models ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "item",
    [
        {
            "id": "m-1",
            "recipientPhone": "+244923000000",
            "message": "Hi",
            "status": "Sent",
            "retryCount": 0,
            "sentAt": "2026-05-07T10:23:05Z",
        },
        {
            "id": "m-1",
            "messageId": "m-1",
            "phone": "+244923000000",
            "content": "Hi",
            "status": "Sent",
            "createdAt": "2026-05-07T10:23:05",
        },
    ],
    ids=["sdk", "openapi"],
)
def test_message_items_read_both_spellings(item: dict[str, Any]) -> None:
    """`recipientPhone`/`phone`, `message`/`content`, `sentAt`/`createdAt` (naive = UTC)."""
    message = SmsMessage.model_validate(item)
    assert (message.key, message.phone, message.text, message.status) == (
        "m-1",
        "+244923000000",
        "Hi",
        "Sent",
    )
    assert message.when == datetime(2026, 5, 7, 10, 23, 5, tzinfo=UTC)


def test_unreadable_items_are_counted_not_fatal() -> None:
    """An item without any id is skipped and counted; the rest of the page is kept."""
    page = MessagePage.model_validate(
        {"items": [{"id": "a", "status": "Sent"}, {"status": "Sent"}, "junk"], "totalCount": 3}
    )
    assert [m.id for m in page.items] == ["a"]
    assert page.unreadable == 2


@pytest.mark.parametrize(
    ("body", "page", "more"),
    [
        ({"items": [], "hasNextPage": True}, 1, True),
        ({"items": [], "hasNextPage": False, "totalPages": 9}, 1, False),
        ({"items": [], "totalPages": 3}, 2, True),
        ({"items": [], "totalPages": 3}, 3, False),
        ({"items": [], "totalCount": 250}, 2, True),
        ({"items": [], "totalCount": 200}, 2, False),
        ({"items": []}, 1, None),
    ],
)
def test_paging_is_read_from_whatever_the_page_says(
    body: dict[str, Any], page: int, more: bool | None
) -> None:
    """hasNextPage first, then totalPages, then totalCount; nothing said → None."""
    assert MessagePage.model_validate(body).more_after(page, 100) is more


# --- webhooks --------------------------------------------------------------------------------


def _body(value: Any) -> bytes:
    return json.dumps(value).encode()


DELIVERED = {
    "messageId": "m-1",
    "recipientPhone": "+244923000000",
    "status": "Delivered",
    "deliveredAt": "2026-05-07T10:23:08Z",
}


@pytest.mark.parametrize(
    "body",
    [
        {"id": "evt_1", "eventType": "SmsDelivered", "data": DELIVERED},
        {"id": "evt_1", "event": "sms.delivered", "data": DELIVERED},
        {"id": "evt_1", "type": "SMS_DELIVERED", "payload": DELIVERED},
        {"eventId": "evt_1", "eventType": "smsdelivered", **DELIVERED},
    ],
    ids=["envelope", "event-key-dotted", "type-key-upper", "flat"],
)
def test_status_events_in_every_shape(body: dict[str, Any]) -> None:
    """The type under eventType/event/type in any case, the payload nested or flat."""
    (event,) = parse_webhook_body(_body(body), "application/json")
    assert (event.kind, event.event_type, event.key) == (
        "status",
        "SmsDelivered",
        "castbrick:event:evt_1",
    )
    assert event.status is not None
    assert (event.status.gateway_message_id, event.status.state) == ("m-1", "delivered")
    assert event.status.delivered_at == datetime(2026, 5, 7, 10, 23, 8, tzinfo=UTC)


@pytest.mark.parametrize(
    ("event_type", "payload", "state", "terminal"),
    [
        ("SmsSent", {"id": "m-1"}, "pending", False),
        ("SmsDelivered", {"id": "m-1", "status": "Sent"}, "delivered", True),
        ("SmsFailed", {"id": "m-1", "errorMessage": "Unreachable"}, "failed", True),
        ("DeliveryReceipt", {"messageId": "m-1", "status": "failed"}, "failed", True),
        ("DeliveryReceipt", {"messageId": "m-1", "status": "Rejected"}, "pending", False),
        ("DeliveryReceipt", {"messageId": "m-1"}, "pending", False),
    ],
)
def test_status_comes_from_the_event_type_or_the_receipt(
    event_type: str, payload: dict[str, Any], state: str, terminal: bool
) -> None:
    """SmsSent/Delivered/Failed imply their status; a DeliveryReceipt says it in its payload,
    and an odd or missing one stays non-terminal."""
    (event,) = parse_webhook_body(_body({"eventType": event_type, "data": payload}), None)
    assert event.status is not None
    assert (event.status.state, event.status.terminal) == (state, terminal)


def test_inbound_message_is_read_in_either_spelling() -> None:
    """InboundMessage: from, to, text (content or message), received time and id."""
    for text_key in ("content", "message", "text"):
        body = {
            "eventType": "InboundMessage",
            "data": {
                "id": "in-1",
                "from": "+244923000000",
                "to": "+244923999999",
                text_key: "Yes please",
                "receivedAt": "2026-05-07T11:00:00Z",
            },
        }
        (event,) = parse_webhook_body(_body(body), "application/json")
        assert event.kind == "inbound"
        assert event.inbound is not None
        assert (event.inbound.from_number, event.inbound.to_number, event.inbound.text) == (
            "+244923000000",
            "+244923999999",
            "Yes please",
        )
        assert event.inbound.gateway_message_id == "in-1"
        assert event.inbound.received_at == datetime(2026, 5, 7, 11, tzinfo=UTC)


@pytest.mark.parametrize(
    ("payload", "opted_in"),
    [
        ({"phone": "+244923000000", "keyword": "STOP"}, False),
        ({"phoneNumber": "+244923000000", "optedIn": True}, True),
        ({"from": "+244923000000", "action": "opt-in"}, True),
    ],
)
def test_optout_events(payload: dict[str, Any], opted_in: bool) -> None:
    """OptOut gives the phone and whether it opted back in."""
    (event,) = parse_webhook_body(_body({"eventType": "OptOut", "data": payload}), None)
    assert event.kind == "optout"
    assert event.optout is not None
    assert (event.optout.phone, event.optout.opted_in) == ("+244923000000", opted_in)


@pytest.mark.parametrize(
    "body",
    [
        {"eventType": "LowBalance", "data": {"balance": 10}},
        {"eventType": "ContactCreated", "data": {"id": "c-1"}},
        {"eventType": "SomethingNew", "data": {"id": "x"}},
        {"data": {"id": "x"}},
        {"eventType": "SmsDelivered", "data": {"status": "Delivered"}},
        {"eventType": "InboundMessage", "data": {"content": "no sender"}},
        {"eventType": "OptOut", "data": {}},
    ],
    ids=[
        "low-balance",
        "contact",
        "unknown",
        "no-type",
        "status-without-id",
        "inbound-without-sender",
        "optout-without-phone",
    ],
)
def test_other_events_are_ignored(body: dict[str, Any]) -> None:
    """LowBalance, contact/campaign, unknown types and events lacking what we need: ignored."""
    (event,) = parse_webhook_body(_body(body), None)
    assert event.kind == "ignored"
    assert (event.status, event.inbound, event.optout) == (None, None, None)


def test_dedupe_keys_are_stable_and_distinct() -> None:
    """Event id when present; else message id + type + status; else a hash of the body. The
    same body always gives the same key; different events give different keys."""
    by_message = {"eventType": "SmsFailed", "data": {"messageId": "m-1", "status": "Failed"}}
    receipt = {"eventType": "DeliveryReceipt", "data": {"messageId": "m-1", "status": "Failed"}}
    anonymous = {"eventType": "LowBalance", "data": {"balance": 10}}
    keys = [parse_webhook_body(_body(b), None)[0].key for b in (by_message, receipt, anonymous)]
    again = [parse_webhook_body(_body(b), None)[0].key for b in (by_message, receipt, anonymous)]
    assert keys == again
    assert keys[0] == "castbrick:msg:m-1:SmsFailed:failed"
    assert keys[1] == "castbrick:msg:m-1:DeliveryReceipt:failed"
    assert keys[2].startswith("castbrick:sha256:")
    assert len(set(keys)) == 3
    reordered = _body({"data": {"balance": 10}, "eventType": "LowBalance"})
    assert parse_webhook_body(reordered, None)[0].key == keys[2]


def test_flat_top_level_id_is_not_taken_for_an_event_id() -> None:
    """Flat bodies: a top-level `id` may be the message's, so the key uses message + type."""
    (event,) = parse_webhook_body(_body({"eventType": "SmsSent", "id": "m-9"}), None)
    assert event.key == "castbrick:msg:m-9:SmsSent:"


def test_batches_and_forms_are_read() -> None:
    """A JSON array, an {"events": [...]} wrapper and a form-encoded body all parse."""
    one = {"eventType": "SmsSent", "data": {"id": "m-1"}}
    two = {"eventType": "SmsSent", "data": {"id": "m-2"}}
    assert len(parse_webhook_body(_body([one, two]), None)) == 2
    assert len(parse_webhook_body(_body({"events": [one, two]}), None)) == 2
    (form,) = parse_webhook_body(
        b"eventType=SmsDelivered&messageId=m-3&status=Delivered",
        "application/x-www-form-urlencoded",
    )
    assert form.status is not None
    assert (form.kind, form.status.gateway_message_id) == ("status", "m-3")


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b"42", b'"text"', b"[1, 2]"])
def test_unreadable_bodies_raise_value_error(body: bytes) -> None:
    """Only a body that is not readable at all raises (ValueError)."""
    with pytest.raises(ValueError, match="CastBrick webhook body"):
        parse_webhook_body(body, "application/json")


def test_huge_strings_are_cut() -> None:
    """Ids and numbers from the body are bounded before they are stored."""
    (event,) = parse_webhook_body(
        _body({"eventType": "SmsSent", "eventId": "e" * 5000, "data": {"id": "m" * 5000}}), None
    )
    assert len(event.key) < 300
    assert event.status is not None
    assert len(event.status.gateway_message_id) <= 200


def test_used_event_types_canonicalise_uniquely() -> None:
    """Every type we register has its own canonical form."""
    assert len({canonical_type(t) for t in USED_EVENT_TYPES}) == len(USED_EVENT_TYPES)


# --- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("cb_live_xxxxxxxxxxxx", True),
        ("cb_test_abcdef123456", True),
        ("someotherformat_12345", True),
        ("Bearer cb_live_xxxxxxxxxxxx", False),
        ("short", False),
        ("cb_live_ xxxxxxxxx", False),
        (" cb_live_xxxxxxxxxxxx", False),
    ],
)
def test_check_key(key: str, ok: bool) -> None:
    """Only the obviously wrong is refused before any call (the real format is unpublished)."""
    assert (check_key(key) is None) is ok


def test_defaults_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """CASTBRICK_* variables; the per-key limit keeps burst headroom below the rate."""
    monkeypatch.setenv("CASTBRICK_API_URL", "https://api.example.test/")
    monkeypatch.setenv("CASTBRICK_RATE_LIMIT", "8")
    monkeypatch.setenv("CASTBRICK_SENDER_ID", "ACME")
    defaults = CastBrickDefaults(_env_file=None)  # type: ignore[call-arg]
    assert (defaults.api_url, defaults.sender_id) == ("https://api.example.test", "ACME")
    limit = defaults.rate_limits()["account"]
    assert (limit.rate, limit.burst) == (8.0, 4.0)
    monkeypatch.delenv("CASTBRICK_RATE_LIMIT")
    monkeypatch.delenv("CASTBRICK_API_URL")
    plain = CastBrickDefaults(_env_file=None)  # type: ignore[call-arg]
    assert (plain.api_url, plain.rate_limit) == ("https://api.castbrick.co", DEFAULT_RATE_LIMIT)
    assert plain.rate_limits()["account"].burst == 2.5


def test_account_settings_defaults_are_the_safe_ones() -> None:
    """Base path unknown, fallback off, one segment; unknown options and bad paths refused."""
    settings = CastBrickAccountSettings()
    assert (settings.base_path, settings.fallback, settings.max_parts) == (None, False, 1)
    assert CastBrickAccountSettings(base_path="/v1").base_path == "/v1"
    with pytest.raises(ValidationError):
        CastBrickAccountSettings(base_path="/v2")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        CastBrickAccountSettings.model_validate({"fallbak": True})
