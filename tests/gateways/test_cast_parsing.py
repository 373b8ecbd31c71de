"""Pure parts of the Cast error handling: Retry-After parsing and the code table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from castbridge.gateways.cast import KNOWN_ERROR_CODES, parse_retry_after
from tests.gateways.test_cast_errors import SANDBOX_CASES


def test_every_documented_code_is_covered() -> None:
    """The parametrised cases plus the canned ones exercise every code the reference lists."""
    covered = {case.code for case in SANDBOX_CASES} | {"INVALID_REQUEST", "METHOD_NOT_ALLOWED"}
    assert covered == KNOWN_ERROR_CODES


NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("1", 1.0),
        (" 60 ", 60.0),
        ("0.5", 0.5),
        ("-3", 0.0),
        (format_datetime(NOW + timedelta(seconds=30), usegmt=True), 30.0),
        ("Sun, 01 Mar 2026 12:00:05 GMT", 5.0),
        (format_datetime(NOW - timedelta(seconds=30), usegmt=True), 0.0),
        ("soon", None),
        ("", None),
        (None, None),
        ("nan", None),
    ],
)
def test_retry_after_parses_seconds_and_http_dates(
    header: str | None, expected: float | None
) -> None:
    """Retry-After is delay-seconds or an HTTP-date; junk gives None so a default applies."""
    assert parse_retry_after(header, now=NOW) == expected
