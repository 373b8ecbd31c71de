"""Cast.ph's settings: the operator's `CAST_*` defaults and the options of one Cast account."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from castbridge.gateways.cast.retry import ip_limit, send_limit
from castbridge.gateways.spec import AccountSettings, GatewayDefaults
from castbridge.limits import Limit

Channel = Literal["sms", "otp", "sim"]

# Rev A's hard limit; raise per account once it is confirmed on Rev B (gateways.md §1.10).
DEFAULT_MAX_CHARS = 450
KEY_FORMAT = re.compile(r"^cast_(test_)?[0-9A-Za-z]{16,64}$")


class CastDefaults(GatewayDefaults):
    """`CAST_API_URL`, `CAST_API_KEY`, `CAST_SENDER_ID`, `CAST_RATE_LIMIT`, `CAST_IP_RATE_LIMIT`,
    `CAST_CHANNEL`, `CAST_MAX_CHARS`, `CAST_TIMEOUT_SECONDS`."""

    model_config = SettingsConfigDict(env_prefix="CAST_")

    api_url: str = "https://api.cast.ph"
    # Messages per second per Cast account (Cast's default is 10); requests per second per IP
    # (Cast allows 30, burst 50).
    rate_limit: float = Field(10.0, gt=0)
    ip_rate_limit: float = Field(25.0, gt=0)
    channel: Channel = "sms"
    # Rev A of Cast's docs caps a message at 450 characters, Rev B at 10,000 (gateways.md
    # §1.10); the safe default is the lower one until the account is confirmed on Rev B.
    max_chars: int = Field(DEFAULT_MAX_CHARS, ge=1, le=10_000)

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    def rate_limits(self) -> dict[str, Limit]:
        return {"account": send_limit(self.rate_limit), "ip": ip_limit(self.ip_rate_limit)}


class CastAccountSettings(AccountSettings):
    """Options of one Cast account."""

    max_chars: int = Field(DEFAULT_MAX_CHARS, ge=1, le=10_000)


def check_key(key: str) -> str | None:
    if not KEY_FORMAT.match(key):
        return "A Cast.ph API key looks like cast_ followed by 64 letters and digits."
    return None
