"""The HighLevel sandbox's configuration: ids, lifetimes, windows, limits, faults and keys."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class GHLSandboxConfig(BaseModel):
    """Knobs of the sandbox; the mutable ones are copied to `GHLSandbox` and can change live."""

    model_config = ConfigDict(extra="forbid")

    client_id: str = "sbxapp00000000000001-sandbox"
    client_secret: str = "sandbox-client-secret"
    company_id: str = "sbxCompany0000000001"
    company_name: str = "Sandbox Agency"
    location_ids: list[str] = Field(default_factory=lambda: ["sbxLocation000000001"])
    conversation_provider_id: str = "sbxProvider000000001"
    # Seconds an access token lives (HighLevel: 86399).
    access_token_ttl: float = Field(86399.0, gt=0)
    code_ttl: float = Field(600.0, gt=0)
    # The 403 "No conversation provider found for this message" window after a delivery post.
    not_downstreamed_seconds: float = Field(5.0, ge=0)
    # HighLevel answered that window with 401 before June 2025, 403 since (ghl.md §8).
    not_downstreamed_status: Literal[401, 403] = 403
    # HighLevel's burst limit: this many requests per window per location (ghl.md §12).
    rate_limit_requests: int = Field(100, ge=1)
    # The most installedLocations items one page returns, whatever `limit` asks (no maximum is
    # documented, ghl.md §6.4); None: as many as asked.
    installed_locations_page_cap: int | None = Field(None, ge=1)
    rate_limit_window: float = Field(10.0, gt=0)
    # Whether 429s carry Retry-After (uncertain at HighLevel; the interval header always comes).
    send_retry_after: bool = False
    # Share of API calls answered 503, for fault-injection runs.
    fault_rate: float = Field(0.0, ge=0, le=1)
    # Answer inbound messages 201 with an empty body and drop them (issue #70).
    drop_inbound: bool = False
    # Seconds /oauth/token takes to answer (makes refresh races observable).
    token_latency: float = Field(0.0, ge=0)
    # Per issue #285 /oauth/locationToken also returns a refresh token; off = schema-faithful.
    location_token_refresh: bool = True
    seed: int | None = None
    # The app's Shared Secret: the Custom Page host encrypts each user context with it.
    sso_key: str = "sandbox-shared-secret-0001"
    # The Custom Page URL the host frames (castbridge's /app/settings); settable live.
    custom_page_url: str | None = None
    ed25519_private_pem: str | None = None
    rsa_private_pem: str | None = None
    rsa_key_size: int = Field(2048, ge=2048)

    @property
    def app_id(self) -> str:
        return self.client_id.split("-", 1)[0]
