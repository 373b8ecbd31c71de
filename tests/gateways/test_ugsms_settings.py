"""Pure parts of UGSMS: operator defaults, account settings, the key check, the request limit,
Retry-After parsing and the reason extracted from an error body."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from pydantic import ValidationError

from castbridge.gateways.ugsms import (
    SPEC,
    UGSMS_CAPABILITIES,
    UgsmsAccountSettings,
    UgsmsDefaults,
    check_key,
    parse_retry_after,
    request_limit,
)
from castbridge.gateways.ugsms.errors import reason_of
from castbridge.limits import Limit


def _defaults(**values: Any) -> UgsmsDefaults:
    return UgsmsDefaults(_env_file=None, **values)  # type: ignore[call-arg]


def test_defaults_point_at_the_v2_base() -> None:
    """The base includes /api/v2; 50 requests a minute (under UGSMS's 60), 3 parts."""
    defaults = _defaults()
    assert defaults.api_url == "https://ugsms.com/api/v2"
    assert (defaults.rate_limit, defaults.max_parts) == (50, 3)
    assert defaults.rate_limits() == {"account": Limit(rate=0.75, burst=5.0)}


@pytest.mark.parametrize("per_minute", [2.0, 10.0, 50.0, 60.0])
def test_request_limit_never_allows_more_than_per_minute(per_minute: float) -> None:
    """A full bucket grants burst + 60 * rate tokens in any 60 s: exactly `per_minute`."""
    limit = request_limit(per_minute)
    assert limit.burst + 60.0 * limit.rate == pytest.approx(per_minute)
    assert limit.burst >= 1


def test_defaults_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """`UGSMS_*` variables set the defaults; a trailing slash is dropped."""
    monkeypatch.setenv("UGSMS_API_URL", "http://127.0.0.1:9/api/v2/")
    monkeypatch.setenv("UGSMS_RATE_LIMIT", "30")
    monkeypatch.setenv("UGSMS_SENDER_ID", "SHOP")
    monkeypatch.setenv("UGSMS_TIMEOUT_SECONDS", "4")
    defaults = _defaults()
    assert (defaults.api_url, defaults.sender_id, defaults.timeout_seconds) == (
        "http://127.0.0.1:9/api/v2",
        "SHOP",
        4.0,
    )
    assert defaults.rate_limits()["account"] == request_limit(30)


@pytest.mark.parametrize(
    "values",
    [
        {"rate_limit": 61},  # over the documented 60 a minute
        {"rate_limit": 0},
        {"sender_id": "TWELVE_CHARS"},
        {"api_url": "https://ugsms.com/v1"},  # v1 refuses API keys
        {"api_url": "ugsms.com/api/v2"},
        {"max_parts": 0},
    ],
)
def test_bad_defaults_are_refused(values: dict[str, Any]) -> None:
    """Each impossible operator setting fails at start-up with its field named."""
    with pytest.raises(ValidationError):
        _defaults(**values)


def test_account_settings() -> None:
    """Bulk is off by default; international sends cannot be turned on; typos are refused."""
    settings = UgsmsAccountSettings()
    assert (settings.max_parts, settings.bulk, settings.allow_international) == (3, False, False)
    with pytest.raises(ValidationError, match="only to Ugandan numbers"):
        UgsmsAccountSettings(allow_international=True)
    with pytest.raises(ValidationError):
        UgsmsAccountSettings.model_validate({"bulkk": True})


def test_spec_registers_ugsms() -> None:
    """The registry entry: name, models, and max_parts carried from the operator defaults."""
    assert SPEC.name == "ugsms"
    assert SPEC.capabilities is UGSMS_CAPABILITIES
    assert (SPEC.defaults, SPEC.account_settings) == (UgsmsDefaults, UgsmsAccountSettings)
    assert SPEC.settings_from_defaults(_defaults(max_parts=5)) == {"max_parts": 5}


@pytest.mark.parametrize(
    ("key", "refused"),
    [
        ("ugsk_abcdef0123456789", False),
        ("plainkey", False),
        ("", True),
        ("   ", True),
        ("has space", True),
        ("x" * 256, True),
        ("cast_" + "0" * 64, True),
    ],
)
def test_check_key(key: str, refused: bool) -> None:
    """No format is documented: only what cannot be a key is refused, with a sentence."""
    assert (check_key(key) is not None) is refused


NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("1", 1.0),
        (" 60 ", 60.0),
        ("-3", 0.0),
        (format_datetime(NOW + timedelta(seconds=30), usegmt=True), 30.0),
        (format_datetime(NOW - timedelta(seconds=30), usegmt=True), 0.0),
        ("soon", None),
        ("", None),
        (None, None),
        ("inf", None),
    ],
)
def test_retry_after(header: str | None, expected: float | None) -> None:
    """Delay-seconds or an HTTP-date; junk gives None so a whole window is waited."""
    assert parse_retry_after(header, now=NOW) == expected


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"error": "API key is required", "help": "Provide X-API-Key header"},
         "API key is required (Provide X-API-Key header)"),
        ({"success": False, "message": "  Insufficient   balance "}, "Insufficient balance"),
        ({"error": "", "message": "fallback"}, "fallback"),
        ({"error": {"message": "nested"}}, "nested"),
        ({"errors": {"numbers": ["The numbers field is required."]}},
         "The numbers field is required."),
        ({"success": False}, None),
        (["not", "a", "dict"], None),
    ],
)  # fmt: skip
def test_reason_of(payload: Any, reason: str | None) -> None:
    """`error` (+ `help`), else `message`, else the first `errors` entry, whitespace folded."""
    assert reason_of(payload) == reason
