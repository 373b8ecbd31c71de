"""Configuration of the UGSMS sandbox: accounts, prices, limits, body shapes and fault knobs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from castbridge.sandbox.kit import Faults

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_PASSWORD",
    "DEFAULT_SENDER_ID",
    "DEFAULT_USERNAME",
    "Faults",
    "SandboxAccount",
    "UgsmsSandboxConfig",
]

# UGSMS documents no key format; "5a4db0c5" reads "SANDBOXS".
DEFAULT_API_KEY = "ugsk_" + "5a4db0c5" * 5
DEFAULT_USERNAME = "sandbox"  # v1 credentials of the default account
DEFAULT_PASSWORD = "sandbox-pass"
DEFAULT_SENDER_ID = "CASTBRIDGE"  # <= 11 characters


class SandboxAccount(BaseModel):
    """One UGSMS account: a v2 API key and the v1 username/password of the same user.

    Mutable at runtime (tests flip flags and change the balance)."""

    model_config = ConfigDict(validate_assignment=True)

    api_key: str = Field(min_length=1)
    username: str = DEFAULT_USERNAME
    password: str = DEFAULT_PASSWORD
    name: str = "Sandbox Account"
    balance: float = Field(10_000.0, ge=0)  # UGX
    currency: str = "UGX"
    sms_cost: float = Field(35.0, ge=0)  # UGX per SMS part per recipient
    revoked: bool = False
    expired: bool = False
    is_active: bool = True
    rate_limit: int = Field(60, ge=1)  # requests per window per key (documented: 60 a minute)


class UgsmsSandboxConfig(BaseModel):
    """Everything the sandbox does that a test or demo may want to change."""

    model_config = ConfigDict(validate_assignment=True)

    accounts: list[SandboxAccount] = Field(
        default_factory=lambda: [SandboxAccount(api_key=DEFAULT_API_KEY)]
    )
    max_sender_id_chars: int = Field(11, ge=1)
    # UGSMS says only "max 160 chars per segment"; the sandbox bills GSM-7/UCS-2 parts and
    # refuses texts longer than this many parts.
    max_parts: int = Field(10, ge=1)
    rate_window_seconds: float = Field(60.0, gt=0)
    # "window": a fixed window per key from its first request, as the `x-ratelimit-*` headers
    # of UGSMS's framework count (on the sandbox clock, so `advance` resets it); "bucket": the
    # kit's DebtBucket at rate_limit per window, burst rate_limit.
    rate_limit_model: Literal["window", "bucket"] = "window"
    # The v2 send answer is undocumented: "full" is v1's documented body, "bare" is
    # `{success, message}` without `data` (no message_id).
    success_body: Literal["full", "bare"] = "full"
    # The v2 balance answer is undocumented too: `{data: {balance, currency}}` or top-level.
    balance_body: Literal["data", "top_level"] = "data"
    # HTTP status of the "Insufficient balance" refusal (not documented).
    insufficient_balance_status: int = Field(402, ge=400, le=499)
    # The optional `/api/v2/sms/send/bulk` endpoint (one public client uses it).
    bulk_enabled: bool = True
    bulk_max_messages: int = Field(1000, ge=1)
    faults: Faults = Field(default_factory=Faults)
    seed: int | None = None
