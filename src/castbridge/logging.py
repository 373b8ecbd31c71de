"""structlog set-up: JSON in production, readable on a TTY, secrets and phone numbers masked."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO, cast

import structlog

# Keys whose values are never logged, whatever they hold.
_SECRET_KEY_PARTS = ("token", "secret", "password", "authorization", "api_key", "apikey", "key")
# Keys whose values are message text: personal data with no diagnostic value in a log line.
_TEXT_KEYS = frozenset({"message_text", "text", "body"})
# 9 to 15 digits with single separators: phone-shaped, while dates and times (8 digits at
# most between letters) are left alone.
_PHONE = re.compile(r"(?<![\w.:])[+(]?\d(?:[\s().-]{0,2}\d){8,14}(?![\w:])")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
# Gateway keys with a known shape (Cast `cast_…`, CastBrick `cb_live_…`/`cb_test_…`); keys of
# the other gateways have no published format and are kept out of logs by key names.
_CAST_KEY = re.compile(r"cast_(?:test_)?[0-9a-fA-F]{8,}")
_CASTBRICK_KEY = re.compile(r"cb_(?:live|test)_[A-Za-z0-9_-]{4,}")
# JWT-shaped tokens (Cellcast's keys look like them), wherever they appear.
_JWT = re.compile(r"eyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]{4,}")


def mask_phone(value: str) -> str:
    """`+639171234567` -> `+63917****567`: enough to tell numbers apart, not to dial them."""
    digits = [c for c in value if c.isdigit()]
    if len(digits) < 7:
        return "*" * len(value)
    keep_head = 5 if value.startswith("+") else 4
    head = "".join(digits[:keep_head])
    tail = "".join(digits[-3:])
    return (
        f"{'+' if value.startswith('+') else ''}{head}{'*' * (len(digits) - keep_head - 3)}{tail}"
    )


def scrub_text(value: str) -> str:
    """Mask phone numbers, bearer tokens and Cast keys inside free text (error messages)."""
    value = _BEARER.sub(r"\1***", value)
    value = _CAST_KEY.sub("cast_***", value)
    value = _CASTBRICK_KEY.sub("cb_***", value)
    value = _JWT.sub("***", value)
    return _PHONE.sub(lambda m: mask_phone(m.group(0)), value)


def _is_secret_key(key: str) -> bool:
    lowered = key.lower()
    if lowered in {"key_id", "idempotency_key", "job_key", "keys_configured"}:
        return False
    return any(part in lowered for part in _SECRET_KEY_PARTS)


def redact(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Any:
    """structlog processor: the last line of defence against a secret or number in a log."""
    for key in list(event_dict):
        value = event_dict[key]
        if key in {"event", "timestamp", "level"}:
            continue
        if _is_secret_key(key):
            event_dict[key] = "***" if value else value
        elif key in _TEXT_KEYS:
            event_dict[key] = f"<{len(value)} chars>" if isinstance(value, str) else "<redacted>"
        elif key in {"phone", "to", "recipient", "number"} and isinstance(value, str):
            event_dict[key] = mask_phone(value)
        elif isinstance(value, str):
            event_dict[key] = scrub_text(value)
    return event_dict


class _CurrentStderr:
    """Writes to whatever `sys.stderr` is now: a stream captured at set-up time may since have
    been closed (a CLI run in-process), and logging must never raise because of it."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(level: str = "INFO", fmt: str = "auto") -> None:
    """Route structlog (and stdlib logging) to stderr, JSON unless a person is watching."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # Exceptions are rendered to text first so that redaction sees (and masks) what
            # their messages and tracebacks carry: a number in an error, a token in a URL.
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=cast(TextIO, _CurrentStderr())),
        cache_logger_on_first_use=False,
    )
    # Libraries that log through stdlib logging (uvicorn, httpx2, SQLAlchemy) are rendered by
    # the same chain: one JSON object per line in production, redacted like castbridge's own.
    handler = logging.StreamHandler(cast(TextIO, _CurrentStderr()))
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.format_exc_info,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                redact,
                renderer,
            ],
        )
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), handlers=[handler], force=True)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
