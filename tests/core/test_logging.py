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


def test_exception_text_is_redacted_after_it_is_formatted(capsys: object) -> None:
    """An exception's message and traceback go through the same redaction as fields: a phone
    number or a token inside an error never reaches the log line (redaction used to run
    before the traceback was rendered, so it never saw it)."""
    import sys

    import structlog

    from castbridge.logging import configure_logging, get_logger

    configure_logging("INFO", "json")
    try:
        try:
            raise RuntimeError(
                "gateway refused +639171234567 with Authorization: Bearer s3cr3tT0kenValue"
            )
        except RuntimeError:
            get_logger("test").exception("send_failed")
        err = sys.stderr
        err.flush()
        out = capsys.readouterr().err  # type: ignore[attr-defined]
    finally:
        structlog.reset_defaults()
    assert "send_failed" in out
    assert "RuntimeError" in out
    assert "9171234567" not in out
    assert "s3cr3tT0kenValue" not in out


def test_cli_tables_show_markup_like_text_as_it_is() -> None:
    """A contact phone like `[/x]` or a gateway error with `[bold]` is printed literally; rich
    read it as markup and `messages list` crashed with a MarkupError."""
    from rich.console import Console

    from castbridge.cli import _common

    console = Console(record=True, width=120)
    saved = _common.console
    _common.console = console
    try:
        _common.emit([{"to": "[/x]", "error": "[bold]oops[/bold]"}], as_json=False)
    finally:
        _common.console = saved
    text = console.export_text()
    assert "[/x]" in text
    assert "[bold]oops[/bold]" in text
