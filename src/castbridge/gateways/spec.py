"""What a gateway package registers: its capabilities, settings models and adapter factory.

Adding a gateway means writing one package under `gateways/` that exports a `SPEC`
(`GatewaySpec`), plus its sandbox, and listing it in `registry.py`. The core reaches gateways
only through these types.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx2
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from castbridge.gateways.base import Capabilities, Gateway
from castbridge.limits import Limit, Pacer


class GatewayDefaults(BaseSettings):
    """The operator's environment defaults for one gateway, read as `<NAME>_<FIELD>`
    (`CAST_API_KEY`, `CELLCAST_API_URL`, …). A subclass sets `env_prefix` and adds fields."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
    )

    api_url: str
    api_key: SecretStr | None = None
    sender_id: str | None = None
    timeout_seconds: float = Field(15.0, gt=0)

    def rate_limits(self) -> dict[str, Limit]:
        """This gateway's buckets by scope (`account`, `ip`), from the operator's settings."""
        return {}


class AccountSettings(BaseModel):
    """Per-account options stored with a gateway account (JSON), validated by the gateway's own
    subclass. Unknown options are refused so a typo cannot silently change behaviour."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Send to numbers outside the gateway's country (off: refused with a clear reason).
    allow_international: bool = False


@dataclass(frozen=True, slots=True)
class AccountConfig:
    """One stored gateway account as an adapter needs it (the key decrypted, never logged)."""

    account_id: int
    gateway: str
    api_key: str = field(repr=False)
    api_url: str
    sender_id: str | None
    channel: str
    settings: AccountSettings


@dataclass(frozen=True, slots=True)
class GatewayContext:
    """What the core hands an adapter factory: the shared HTTP client (never build your own),
    the pacer and the names of this account's buckets, the operator defaults, and how many
    in-call attempts a request gets (the worker: 1, it keeps its own persisted backoff)."""

    http: httpx2.AsyncClient
    pacer: Pacer
    account_bucket: str  # e.g. "acct:12": one per API key
    ip_bucket: str  # e.g. "ip:cast": one per gateway per egress IP
    defaults: GatewayDefaults
    attempts: int = 1


@dataclass(frozen=True, slots=True)
class GatewaySpec:
    capabilities: Capabilities
    defaults: type[GatewayDefaults]
    account_settings: type[AccountSettings]
    build: Callable[[AccountConfig, GatewayContext], Gateway]
    # A sentence when `key` cannot be a key of this gateway (before any call), else None.
    check_key: Callable[[str], str | None]
    default_channel: str = "sms"
    # Extra defaults for new accounts' settings, taken from the operator defaults.
    settings_from_defaults: Callable[[GatewayDefaults], dict[str, Any]] = field(
        default=lambda _defaults: {}
    )

    @property
    def name(self) -> str:
        return self.capabilities.name


__all__ = ["AccountConfig", "AccountSettings", "GatewayContext", "GatewayDefaults", "GatewaySpec"]
