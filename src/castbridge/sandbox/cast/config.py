"""Configuration of the Cast.ph sandbox: accounts, delivery rules, limits and fault knobs."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from castbridge.sandbox.kit import Faults

__all__ = ["Faults"]

# The well-known keys of the default configuration (so `castbridge sandbox` works out of the
# box). "5a4db0c5" reads "SANDBOXS"; both match Cast's formats.
DEFAULT_API_KEY = "cast_" + "5a4db0c5" * 8  # a live-style key: credits, statuses, rate limits
DEFAULT_TEST_KEY = "cast_test_" + "5a4db0c5" * 8  # a cast_test_ key: instant mock, no credits
DEFAULT_SENDER_ID = "CASTBRIDGE"  # <= 11 characters, valid under both documentation revisions
# Demo recipients with a known fate (valid Philippine mobile numbers).
UNDELIVERABLE_NUMBER = "09170000404"  # ends `undelivered` with dlr_status UNDELIV
FAILING_NUMBER = "09170000500"  # ends `failed` (SMPP submission failed, credit refunded)

LIVE_KEY = re.compile(r"^cast_[0-9a-fA-F]{64}$")
# Cast documents only the prefix of sandbox keys; we accept 16-64 hex characters after it.
TEST_KEY = re.compile(r"^cast_test_[0-9a-fA-F]{16,64}$")

SandboxChannel = Literal["sms", "otp", "sim"]


def is_test_key(api_key: str) -> bool:
    return api_key.startswith("cast_test_")


def canonical_number(raw: str) -> str:
    """Digits of a Philippine number in international form, so `09171234567`,
    `+639171234567`, `639171234567` and `(0917) 123-4567` compare equal."""
    digits = "".join(ch for ch in raw if ch.isdigit())
    if digits.startswith("0") and len(digits) == 11:
        return "63" + digits[1:]
    if len(digits) == 10 and digits.startswith("9"):
        return "63" + digits
    return digits


class SenderIdSpec(BaseModel):
    sender_id: str = Field(min_length=1, max_length=20)
    label: str | None = None
    channel: Literal["sms", "sim"] = "sms"


class UnsubscribedEntry(BaseModel):
    phone: str
    sender_id: str
    unsubscribed_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    ip: str = "127.0.0.1"


class SandboxAccount(BaseModel):
    """One Cast account, identified by its API key. Mutable at runtime (tests flip flags)."""

    model_config = ConfigDict(validate_assignment=True)

    api_key: str
    id: int = 1
    name: str = "Sandbox Account"
    email: str = "sandbox@example.invalid"
    mobile: str = "09170000001"
    username: str = "sandbox"
    credits: int = 1000
    billing_type: Literal["topup", "postpaid"] = "topup"
    credit_limit: int = 0  # postpaid only: how far credits may fall below zero
    sender_ids: list[SenderIdSpec] = Field(
        default_factory=lambda: [SenderIdSpec(sender_id=DEFAULT_SENDER_ID, label="Default")]
    )
    allowed_channels: list[str] = Field(default_factory=lambda: ["sms", "otp", "bulk"])
    is_active: bool = True
    revoked: bool = False
    expired: bool = False
    rate_limit: float = Field(10.0, gt=0)  # messages/s on send endpoints; burst = rate
    ip_whitelist: list[str] | None = None  # None: any IP; else addresses or CIDR ranges
    unsubscribed: list[UnsubscribedEntry] = Field(default_factory=list)
    created_at: datetime = datetime(2025, 1, 6, tzinfo=UTC)

    @field_validator("api_key")
    @classmethod
    def _key_format(cls, value: str) -> str:
        if not (LIVE_KEY.match(value) or TEST_KEY.match(value)):
            raise ValueError("must be cast_<64 hex> or cast_test_<16-64 hex>")
        return value


class CastSandboxConfig(BaseModel):
    """Everything the sandbox does that a test or demo may want to change."""

    model_config = ConfigDict(validate_assignment=True)

    accounts: list[SandboxAccount] = Field(
        default_factory=lambda: [
            SandboxAccount(api_key=DEFAULT_API_KEY),
            SandboxAccount(
                api_key=DEFAULT_TEST_KEY,
                id=2,
                name="Sandbox Test Key",
                credits=0,
                allowed_channels=["sms", "otp", "bulk", "sim"],
                sender_ids=[
                    SenderIdSpec(sender_id=DEFAULT_SENDER_ID, label="Default"),
                    SenderIdSpec(sender_id=DEFAULT_SENDER_ID, label="SIM", channel="sim"),
                ],
            ),
        ]
    )
    # Any well-formed `cast_test_` key works without being listed (as on Cast).
    open_test_keys: bool = True
    # Whether `/sms/status` knows `SANDBOX_` ids is uncertain (gateways.md §1.7); by default we
    # model the pessimistic case, 404, so clients must not rely on polling them.
    test_ids_pollable: bool = False
    # Answer errors Rev A style, `{success:false, error}` without `error_code`.
    rev_a_errors: bool = False
    max_message_chars: int = Field(10_000, ge=1)
    max_sender_id_chars: int = Field(20, ge=1)
    ip_rate: float = Field(30.0, gt=0)  # requests/s per client IP
    ip_burst: float = Field(50.0, ge=1)
    retry_after_seconds: int = Field(1, ge=0)
    retry_after_style: Literal["seconds", "http-date"] = "seconds"
    idempotency_ttl_seconds: float = Field(24 * 3600.0, gt=0)
    # Whether error answers are cached under their idempotency key is uncertain
    # (gateways.md §1.5); caching them is the stricter case for clients.
    cache_error_responses: bool = True
    # Status timeline: `sent` -> `pending` (ACCEPTD) after pending_after -> final after
    # final_after (a failed submission shows `failed` from pending_after on).
    pending_after_seconds: float = Field(2.0, ge=0)
    final_after_seconds: float = Field(5.0, ge=0)
    undeliverable_numbers: list[str] = Field(default_factory=lambda: [UNDELIVERABLE_NUMBER])
    failing_numbers: list[str] = Field(default_factory=lambda: [FAILING_NUMBER])
    undelivered_rate: float = Field(0.0, ge=0, le=1)
    failed_rate: float = Field(0.0, ge=0, le=1)
    undelivered_dlr_status: str = "UNDELIV"
    failed_error_message: str = "SMPP submit_sm failed (ESME_RSUBMITFAIL)"
    sim_service_enabled: bool = True
    faults: Faults = Field(default_factory=Faults)
    seed: int | None = None
