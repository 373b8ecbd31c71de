"""Cellcast's settings: the operator's `CELLCAST_*` defaults and the options of one account."""

from __future__ import annotations

import re

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from castbridge.gateways.spec import AccountSettings, GatewayDefaults
from castbridge.limits import Limit

DEFAULT_API_URL = "https://api.cellcast.com"
# The legacy v3 API allowed 15 requests/s per key; the new API publishes no limit (gateways.md
# §3, **uncertain**). Safe behaviour: start below the legacy figure, with headroom, and honour
# every 429 (the client pauses the account's bucket for its Retry-After).
DEFAULT_RATE_LIMIT = 12.0
# The legacy API's ceiling was 918 GSM / 402 UCS-2 characters, i.e. 6 parts; the new API states
# none (**uncertain**). Safe behaviour: refuse longer texts at intake, configurable per account;
# the parts Cellcast really billed come back as `smsDetail.smscount` in its reports.
DEFAULT_MAX_PARTS = 6
MAX_PARTS_LIMIT = 10

_KEY_SHAPE = re.compile(r"^[\x21-\x7e]{16,4096}$")


class CellcastDefaults(GatewayDefaults):
    """`CELLCAST_API_URL`, `CELLCAST_API_KEY`, `CELLCAST_SENDER_ID`, `CELLCAST_TIMEOUT_SECONDS`,
    `CELLCAST_RATE_LIMIT` (requests per second per API key)."""

    model_config = SettingsConfigDict(env_prefix="CELLCAST_")

    api_url: str = DEFAULT_API_URL
    rate_limit: float = Field(DEFAULT_RATE_LIMIT, gt=0)

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    def rate_limits(self) -> dict[str, Limit]:
        return {"account": request_limit(self.rate_limit)}


def request_limit(rate: float) -> Limit:
    """Every request of one key (sends, polls, lists) shares this bucket. A burst of half a
    second's worth keeps uneven latency from bunching requests past Cellcast's own limit."""
    return Limit(rate, burst=max(1.0, rate / 2))


class CellcastAccountSettings(AccountSettings):
    """Options of one Cellcast account.

    `sms_template_id` / `rms_template_id` are needed only for the `chat` channel (Cellcast's
    `/api/v1/chat` takes both). `reply_stop_to_opt_out` is sent as `replyStopToOptOut`.
    """

    sms_template_id: str | None = Field(None, min_length=1, max_length=100)
    rms_template_id: str | None = Field(None, min_length=1, max_length=100)
    max_parts: int = Field(DEFAULT_MAX_PARTS, ge=1, le=MAX_PARTS_LIMIT)
    # Off by default: castbridge handles STOP replies itself (its keyword list, the suppression
    # list and the contact's DND in HighLevel). With it on, Cellcast also unsubscribes the
    # number on its side and later sends come back as opt-outs, which castbridge handles too;
    # an operator may want that when replies are not polled or pushed to castbridge.
    reply_stop_to_opt_out: bool = False
    # How long after a send's window closes the report list is trusted to show it, before
    # "not listed" proves the send never happened (its lag is undocumented: uncertain).
    reconcile_settle_seconds: float = Field(120.0, ge=0, le=3600)

    @field_validator("allow_international")
    @classmethod
    def _australia_only(cls, value: bool) -> bool:
        if value:
            raise ValueError(
                "Cellcast's API sends only to Australian numbers (countryCode 61); "
                "international sending is not available"
            )
        return value


def check_key(key: str) -> str | None:
    """Cellcast keys are long bearer tokens (JWT-like); their exact format is not documented,
    so only the obvious mistakes are refused."""
    if not _KEY_SHAPE.match(key):
        return (
            "A Cellcast API key is a long token without spaces: copy it from Cellcast's "
            "dashboard (profile menu → API → API KEYS)."
        )
    return None
