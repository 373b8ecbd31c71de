"""CastBrick's settings: the operator's `CASTBRICK_*` defaults and the options of one account."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from castbridge.gateways.spec import AccountSettings, GatewayDefaults
from castbridge.limits import Limit

BasePath = Literal["", "/v1"]

DEFAULT_API_URL = "https://api.castbrick.co"
# CastBrick publishes no rate limit, only "429 + Retry-After" (gateways.md §2, uncertain): start
# at a conservative 5 requests/s per key and let operators raise it once they know better.
DEFAULT_RATE_LIMIT = 5.0
# The docs say a message is "up to 160 GSM-7 chars / 70 UCS-2"; an SDK comment says 1,600
# characters. Whether CastBrick sends (and bills) multipart messages is uncertain, so the safe
# default is one segment, raised per account after testing (sms-text.md §4.5).
DEFAULT_MAX_PARTS = 1
MAX_PARTS_LIMIT = 10
MAX_KEY_CHARS = 512
MIN_KEY_CHARS = 8


def account_limit(rate: float) -> Limit:
    """The per-key request bucket. Our tokens are taken a network hop before CastBrick meters
    the request, and uneven latency can bunch calls together; a burst of half a second's worth
    (at least 1) leaves that much headroom in a gateway bucket whose burst is its rate."""
    return Limit(rate, burst=max(1.0, rate / 2))


class CastBrickDefaults(GatewayDefaults):
    """`CASTBRICK_API_URL`, `CASTBRICK_API_KEY`, `CASTBRICK_SENDER_ID`,
    `CASTBRICK_TIMEOUT_SECONDS`, `CASTBRICK_RATE_LIMIT` (requests/s per API key)."""

    model_config = SettingsConfigDict(env_prefix="CASTBRICK_")

    api_url: str = DEFAULT_API_URL
    rate_limit: float = Field(DEFAULT_RATE_LIMIT, gt=0)

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    def rate_limits(self) -> dict[str, Limit]:
        # Only a per-key limit: CastBrick documents nothing per IP.
        return {"account": account_limit(self.rate_limit)}


class CastBrickAccountSettings(AccountSettings):
    """Options of one CastBrick account (one API key)."""

    # Which path prefix this account's API answers on (gateways.md §2: the docs and the JS/C#
    # SDKs use none, Dart, PyPI and the OpenAPI file use `/v1`; uncertain). None: not probed
    # yet; `verify_credentials()` probes and returns the answer to store here, and an adapter
    # built without it probes once, in memory, before its first call.
    base_path: BasePath | None = None
    # CastBrick's own default is `fallback: true`, which silently swaps a sender ID it cannot
    # use for its default sender: replies then go to another sender and the brand changes
    # without anyone noticing. We send `fallback: false` unless the location opts in, so a
    # refused sender is a visible error instead (gateways.md §2, uncertain).
    fallback: bool = False
    # Segments a message may have (see DEFAULT_MAX_PARTS).
    max_parts: int = Field(DEFAULT_MAX_PARTS, ge=1, le=MAX_PARTS_LIMIT)
    # How long after a send's window closes CastBrick's list is trusted to show it: only
    # then does "not listed" prove the send never happened. How quickly a send is listed is
    # not documented (uncertain); two minutes is the safe default, lower it after testing.
    reconcile_settle_seconds: float = Field(120.0, ge=0, le=3600)


def check_key(key: str) -> str | None:
    """A sentence when `key` cannot be a CastBrick key. The only published shape is the
    docs' example `cb_live_…`, so anything else printable is let through to the credential
    check rather than refused on a guess."""
    stripped = key.strip()
    if stripped.lower().startswith("bearer "):
        return "Paste only the CastBrick API key, without the word Bearer."
    if not MIN_KEY_CHARS <= len(key) <= MAX_KEY_CHARS or not key.isprintable() or key != stripped:
        return "A CastBrick API key is one word of letters, digits and underscores, like cb_live_…"
    if any(ch.isspace() for ch in key):
        return "A CastBrick API key contains no spaces."
    return None
