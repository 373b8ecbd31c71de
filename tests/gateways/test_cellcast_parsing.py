"""Pure Cellcast helpers: webhook bodies, statuses, customString, senders, numbers, settings."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from castbridge.gateways.cellcast import (
    SPEC,
    CellcastAccountSettings,
    CellcastDefaults,
    Cursor,
    check_key,
    crlf,
    custom_string,
    is_two_way_sender,
    parse_webhook,
    read_number,
    sender_problem,
    to_delivery_status,
)
from castbridge.gateways.cellcast.inbound import Mark


def _body(payload: Any) -> bytes:
    return json.dumps(payload).encode()


STATUS = {
    "_id": "a" * 24,
    "status": "delivered",
    "type": "send",
    "sender": "61400000100",
    "receiver": "61412345678",
}
RECEIVE_DOCS = {
    "_id": "b" * 24,
    "status": "received",
    "type": "receive",
    "message": "Yes",
    "sender": "61412345678",
    "receiver": "61400000100",
}
RECEIVE_LIVE = {
    "sender": "61412345678",
    "reply": "Yes please",
    "message": "Your appt is at 3",
    "receiver": "61400000100",
}


def test_status_webhook_becomes_a_status_event() -> None:
    """A Status URL body maps through the status table; its key includes the status."""
    (event,) = parse_webhook(_body(STATUS), "application/json")
    assert event.kind == "status"
    assert event.status is not None
    assert (event.status.state, event.status.terminal) == ("delivered", True)
    assert event.status.gateway_message_id == "a" * 24
    assert event.key == f"status:{'a' * 24}:delivered"
    failed = parse_webhook(_body({**STATUS, "status": "Expired"}), None)[0]
    assert failed.status is not None
    assert (failed.status.state, failed.status.error_code) == ("failed", "EXPIRED")
    assert failed.key != event.key


def test_receive_webhook_documented_field_is_message() -> None:
    """Docs shape: `type: receive` with the text in `message`."""
    (event,) = parse_webhook(_body(RECEIVE_DOCS), "application/json")
    assert event.kind == "inbound"
    assert event.inbound is not None
    assert (event.inbound.text, event.inbound.from_number, event.inbound.to_number) == (
        "Yes",
        "61412345678",
        "61400000100",
    )
    assert event.inbound.gateway_message_id == "b" * 24


def test_receive_webhook_live_field_is_reply_not_the_outbound_copy() -> None:
    """Live shape: the customer's words are in `reply`; `message` is our original text."""
    (event,) = parse_webhook(_body(RECEIVE_LIVE), "application/json")
    assert event.kind == "inbound"
    assert event.inbound is not None
    assert event.inbound.text == "Yes please"
    empty_reply = parse_webhook(_body({**RECEIVE_LIVE, "reply": "  "}), None)[0]
    assert empty_reply.inbound is not None
    assert empty_reply.inbound.text == "Your appt is at 3"


def test_stop_reply_is_just_an_inbound() -> None:
    """castbridge decides opt-outs from inbound text; the parser never makes an optout."""
    (event,) = parse_webhook(_body({**RECEIVE_LIVE, "reply": "STOP"}), None)
    assert (event.kind, event.optout) == ("inbound", None)
    assert event.inbound is not None
    assert event.inbound.text == "STOP"


def test_dedupe_keys_are_stable_and_distinct() -> None:
    """The same body twice gives the same key; two replies sharing an `_id` do not collide;
    bodies without `_id` are keyed by their content."""
    first = parse_webhook(_body(RECEIVE_DOCS), None)[0].key
    assert parse_webhook(_body(RECEIVE_DOCS), None)[0].key == first
    other = parse_webhook(_body({**RECEIVE_DOCS, "message": "No"}), None)[0].key
    assert other != first
    live = parse_webhook(_body(RECEIVE_LIVE), None)[0].key
    assert live == parse_webhook(_body(dict(reversed(RECEIVE_LIVE.items()))), None)[0].key
    assert live.startswith("inbound:")


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "mms", "_id": "c" * 24},
        {"type": "send", "status": "delivered"},  # no _id
        {"hello": "world"},
        "just a string",
        42,
    ],
)
def test_unknown_items_are_ignored(payload: Any) -> None:
    """Unknown types and unusable items come back as `ignored`, never an error."""
    (event,) = parse_webhook(_body([payload]), None)
    assert event.kind == "ignored"
    assert event.key.startswith("ignored:")


def test_arrays_and_form_bodies_are_accepted() -> None:
    """A JSON array carries several events; a form-encoded body is read as one object."""
    events = parse_webhook(_body([STATUS, RECEIVE_LIVE]), "application/json")
    assert [e.kind for e in events] == ["status", "inbound"]
    form = b"sender=61412345678&reply=Hi&message=orig&receiver=61400000100"
    (event,) = parse_webhook(form, "application/x-www-form-urlencoded")
    assert event.inbound is not None
    assert event.inbound.text == "Hi"


@pytest.mark.parametrize("body", [b"", b"<html>", b"null", b'"text"'])
def test_unreadable_bodies_raise_value_error(body: bytes) -> None:
    """Only a body that is not a JSON object or array raises."""
    with pytest.raises(ValueError, match="Cellcast webhook body"):
        parse_webhook(body, "application/json")


@pytest.mark.parametrize(
    ("raw", "state", "terminal", "code"),
    [
        ("queued", "pending", False, None),
        ("sent", "pending", False, None),
        ("scheduled", "pending", False, None),
        ("delivered", "delivered", True, None),
        ("DELIVERED", "delivered", True, None),
        ("failed", "failed", True, "FAILED"),
        ("rejected", "failed", True, "REJECTED"),
        ("expired", "failed", True, "EXPIRED"),
        ("dead", "failed", True, "DEAD"),
        ("blocked", "failed", True, "BLOCKED"),
        ("canceled", "failed", True, "CANCELED"),
        ("received", "pending", False, None),
        ("teleported", "pending", False, None),
    ],
)
def test_status_table(raw: str, state: str, terminal: bool, code: str | None) -> None:
    """gateways.md §3's mapping; unknown values are non-terminal."""
    status = to_delivery_status("a" * 24, raw)
    assert (status.state, status.terminal, status.error_code) == (state, terminal, code)
    assert (status.error_message is not None) is (state == "failed")


def test_updated_at_is_the_delivery_time_only_when_delivered() -> None:
    """`updatedAt` on a failed or pending report is not a delivery time."""
    when = datetime(2026, 1, 1, tzinfo=UTC)
    assert to_delivery_status("x", "delivered", updated_at=when).delivered_at == when
    assert to_delivery_status("x", "failed", updated_at=when).delivered_at is None
    assert to_delivery_status("x", "sent", updated_at=when).delivered_at is None


def test_crlf_normalises_every_newline_style() -> None:
    """\\n, \\r\\n and \\r all become \\r\\n, and nothing is doubled."""
    assert crlf("a\nb\r\nc\rd") == "a\r\nb\r\nc\r\nd"
    assert crlf(crlf("a\nb")) == "a\r\nb"


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("ve9EPM428h8vShlRW1KT:4Tx3MW2ZG2WaIcLyrTFa", "ve9EPM428h8vShlRW1KT-4Tx3MW2ZG2WaIcLyrTFa"),
        ("loc:msg", "loc-msg"),
    ],
)
def test_custom_string_maps_references(reference: str, expected: str) -> None:
    """`:` becomes `-`; HighLevel's alphanumeric ids pass unchanged."""
    assert custom_string(reference) == expected


def test_custom_string_is_deterministic_and_fits_the_alphabet() -> None:
    """Odd characters or long references get a hash suffix; different inputs stay different."""
    odd = custom_string("loc:msg/with spaces")
    assert odd == custom_string("loc:msg/with spaces")
    assert all(ch.isalnum() or ch == "-" for ch in odd)
    assert odd != custom_string("loc:msg/with_spaces")
    long = custom_string("L" * 40 + ":" + "M" * 40)
    assert len(long) <= 64
    assert long != custom_string("L" * 40 + ":" + "M" * 39)


@pytest.mark.parametrize(
    ("sender", "ok", "two_way"),
    [
        ("#SharedNum#", True, True),
        ("CASTBRIDGE", True, False),
        ("My Shop-1", True, False),
        ("ABCDEFGHIJKL", False, False),
        ("61400000999", True, True),
        ("12345678901234567", False, True),
        ("Shop!", False, False),
    ],
)
def test_sender_rules(sender: str, ok: bool, two_way: bool) -> None:
    """Letters, digits, space and dash; 11 characters, or 16 digits; only numbers and the
    shared number are two-way."""
    assert (sender_problem(sender) is None) is ok
    assert is_two_way_sender(sender) is two_way


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("+61412345678", "+61412345678"),
        ("61412345678", "+61412345678"),
        ("0412345678", "+61412345678"),
        ("412345678", "+61412345678"),
        ("491570156", "+61491570156"),
        ("junk", None),
        (None, None),
    ],
)
def test_numbers_in_every_cellcast_form(raw: str | None, e164: str | None) -> None:
    """All four accepted forms and the list's national-without-0 form read as E.164 (AU)."""
    assert read_number(raw) == e164


def test_defaults_and_account_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """CELLCAST_* env defaults; rate limit with headroom; international sending refused."""
    monkeypatch.setenv("CELLCAST_RATE_LIMIT", "8")
    monkeypatch.setenv("CELLCAST_API_URL", "https://example.test/")
    defaults = CellcastDefaults(_env_file=None)
    assert defaults.api_url == "https://example.test"
    limit = defaults.rate_limits()["account"]
    assert (limit.rate, limit.burst) == (8.0, 4.0)
    monkeypatch.delenv("CELLCAST_RATE_LIMIT")
    monkeypatch.delenv("CELLCAST_API_URL")
    fresh = CellcastDefaults(_env_file=None)
    assert (fresh.api_url, fresh.rate_limit) == ("https://api.cellcast.com", 12.0)
    settings = CellcastAccountSettings()
    assert (settings.max_parts, settings.reply_stop_to_opt_out) == (6, False)
    with pytest.raises(ValidationError, match="only to Australian"):
        CellcastAccountSettings(allow_international=True)
    with pytest.raises(ValidationError):
        CellcastAccountSettings(unknown_option=1)  # type: ignore[call-arg]
    assert SPEC.name == "cellcast"
    assert SPEC.account_settings is CellcastAccountSettings


def test_check_key() -> None:
    """A plausible bearer token passes; spaces or a short string get a sentence."""
    assert check_key("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.payload.sig") is None
    assert check_key("short") is not None
    assert check_key("has a space in it somewhere") is not None


def test_cursor_round_trip_and_bare_times() -> None:
    """Our JSON cursor survives a round trip; a bare ISO time starts from there; junk raises."""
    at = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    cursor = Cursor(Mark(at, frozenset({"a", "b"})), 3, Mark(at, frozenset({"c"})))
    assert Cursor.decode(cursor.encode()) == cursor
    assert Cursor.decode("2026-03-02T01:00:00Z").mark.at == at
    assert Cursor.decode(None) == Cursor()
    with pytest.raises(ValueError, match="cursor"):
        Cursor.decode("yesterday")
    with pytest.raises(ValueError, match="cursor"):
        Cursor.decode('{"at": 5}')
