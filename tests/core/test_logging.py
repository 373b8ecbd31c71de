"""Log redaction: tokens, keys, message text and phone numbers never reach a log line."""

from __future__ import annotations

from castbridge.logging import mask_phone, redact, scrub_text


def test_secret_fields_and_text_are_redacted() -> None:
    """Fields named like secrets become ***, message text becomes its length."""
    event = redact(
        None,
        "info",
        {
            "event": "x",
            "access_token": "abc",
            "api_key": "cast_" + "1" * 64,
            "text": "hello there",
            "phone": "+639171234567",
            "idempotency_key": "msg-1",
        },
    )
    assert event["access_token"] == "***"
    assert event["api_key"] == "***"
    assert event["text"] == "<11 chars>"
    assert event["phone"] == "+63917****567"
    assert event["idempotency_key"] == "msg-1"


def test_free_text_is_scrubbed() -> None:
    """Numbers, bearer tokens and Cast keys inside an error string are masked."""
    line = scrub_text(
        "send to +639171234567 failed: Authorization: Bearer eyJabc.def with key cast_" + "f" * 64
    )
    assert "9171234567" not in line
    assert "eyJabc" not in line
    assert "f" * 64 not in line


def test_mask_keeps_numbers_distinguishable() -> None:
    """Two different numbers still look different once masked."""
    assert mask_phone("+639171234567") != mask_phone("+639181234568")


def test_dates_and_short_numbers_are_left_alone() -> None:
    """Timestamps, ids and durations are not mistaken for phone numbers."""
    line = "2026-11-22T02:12:57.977Z took 1234 ms for job 12345"
    assert scrub_text(line) == line
