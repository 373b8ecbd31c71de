"""UGSMS's settings: the operator's `UGSMS_*` defaults, one account's options, the request limit."""

from __future__ import annotations

import math

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from castbridge.gateways.spec import AccountSettings, GatewayDefaults
from castbridge.limits import Limit

# The base INCLUDES the version: endpoints are `/sms/send`, `/sms/send/bulk` and
# `/account/balance` under it. v1 (`/v1/sms/send`) accepts only username + password and refuses
# API keys (gateways.md §4), so castbridge speaks v2 only.
DEFAULT_API_URL = "https://ugsms.com/api/v2"
# UGSMS documents 60 requests per minute per key (gateways.md §4).
DOCUMENTED_REQUESTS_PER_MINUTE = 60
DEFAULT_REQUESTS_PER_MINUTE = 50
MAX_SENDER_ID_CHARS = 11
# UGSMS says only "max 160 chars per segment": that implies a message may span several
# segments, but no upper bound and no concatenation rule is documented (uncertain). Three parts
# (459 GSM-7 / 201 UCS-2 characters) cover an ordinary HighLevel message while bounding what one
# message can cost; a longer text is refused at intake with a sentence instead of being cut or
# billed as an unknown number of parts. Raise it per account after a live test.
DEFAULT_MAX_PARTS = 3
MAX_PARTS_CEILING = 10


def request_limit(per_minute: float) -> Limit:
    """The per-key request bucket for `per_minute` requests a minute.

    A token bucket that starts full grants at most `burst + 60 * rate` tokens in ANY 60-second
    interval, so with `rate = (per_minute - burst) / 60` no minute of ours, wherever UGSMS's
    window starts, carries more than `per_minute` requests. The default 50 leaves 10 of
    UGSMS's 60 as headroom for requests our bucket released a network hop earlier than UGSMS
    counts them (latency bunching) and for a window that is not aligned with ours. A small burst
    (a tenth of the minute) keeps a backlog from spending the whole minute at once.
    """
    burst = max(1.0, float(math.floor(per_minute / 10)))
    return Limit(rate=(per_minute - burst) / 60.0, burst=burst)


def _check_sender_id(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if len(value) > MAX_SENDER_ID_CHARS:
        raise ValueError(f"a UGSMS sender ID has at most {MAX_SENDER_ID_CHARS} characters")
    return value


class UgsmsDefaults(GatewayDefaults):
    """`UGSMS_API_URL`, `UGSMS_API_KEY`, `UGSMS_SENDER_ID`, `UGSMS_TIMEOUT_SECONDS`,
    `UGSMS_RATE_LIMIT` (requests per minute per key), `UGSMS_MAX_PARTS`."""

    model_config = SettingsConfigDict(env_prefix="UGSMS_")

    api_url: str = DEFAULT_API_URL
    # Requests per minute per API key, every request counted (sends and balance checks alike,
    # as UGSMS meters them). At most the documented 60: a higher value guarantees 429s.
    rate_limit: float = Field(DEFAULT_REQUESTS_PER_MINUTE, ge=2, le=DOCUMENTED_REQUESTS_PER_MINUTE)
    max_parts: int = Field(DEFAULT_MAX_PARTS, ge=1, le=MAX_PARTS_CEILING)

    @field_validator("api_url")
    @classmethod
    def _v2_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        value = value.rstrip("/")
        if value.endswith("/v1"):
            raise ValueError("UGSMS v1 refuses API keys; use the v2 base, e.g. " + DEFAULT_API_URL)
        return value

    @field_validator("sender_id")
    @classmethod
    def _sender(cls, value: str | None) -> str | None:
        return _check_sender_id(value)

    def rate_limits(self) -> dict[str, Limit]:
        # UGSMS documents no per-IP limit: only the per-key bucket.
        return {"account": request_limit(self.rate_limit)}


class UgsmsAccountSettings(AccountSettings):
    """Options of one UGSMS account.

    `bulk` enables `/sms/send/bulk`, which only one public client uses (uncertain): off until a
    live test confirms it. Even when on, the core sends one message per request (HighLevel
    sends one message per contact); only `UgsmsGateway.send_batch` uses it.
    """

    max_parts: int = Field(DEFAULT_MAX_PARTS, ge=1, le=MAX_PARTS_CEILING)
    bulk: bool = False

    @field_validator("allow_international")
    @classmethod
    def _uganda_only(cls, value: bool) -> bool:
        # UGSMS takes local Ugandan numbers (`07…`) only; a foreign number has no such form.
        if value:
            raise ValueError(
                "UGSMS sends only to Ugandan numbers; international sends cannot be on"
            )
        return value


def check_key(key: str) -> str | None:
    """UGSMS documents no key format; refuse only what cannot be a key."""
    if not key or not key.strip():
        return "Enter your UGSMS API key (from your UGSMS dashboard)."
    if any(ch.isspace() for ch in key) or not key.isascii() or not key.isprintable():
        return "A UGSMS API key has no spaces or special characters; paste it again."
    if len(key) > 255:
        return "That is too long to be a UGSMS API key."
    if key.startswith("cast_"):
        return "That is a Cast.ph key, not a UGSMS API key."
    return None
