"""Configuration of the CastBrick sandbox: accounts, base path, wire styles, timelines, faults."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from castbridge.sandbox.kit import Faults

__all__ = ["Faults"]

# Well-known keys of the default configuration. Only the `cb_live_` shape is published (the
# docs' example); `cb_test_` is our guess by analogy and behaves exactly like a live key here,
# because CastBrick documents no test mode (capability matrix: "Sandbox: no").
DEFAULT_API_KEY = "cb_live_" + "5a4db0c5" * 4
DEFAULT_TEST_KEY = "cb_test_" + "5a4db0c5" * 4
DEFAULT_SENDER_ID = "CASTBRIDGE"
# What CastBrick sends from when `senderId` is omitted, or refused with `fallback: true`.
CASTBRICK_DEFAULT_SENDER = "CastBrick"
# The number replies appear to be sent to (the account's two-way number).
DEFAULT_INBOUND_NUMBER = "+244923999999"
UNDELIVERABLE_NUMBER = "+244923000404"  # ends Failed with `failed_error_message`

KEY_FORMAT = re.compile(r"^cb_(live|test)_[A-Za-z0-9]{8,64}$")

Scope = Literal["Sms", "Full"]
StatusCase = Literal["capitalized", "lower"]
# Which spelling list items and GET /sms/{id} use: the SDKs' (`recipientPhone`, `message`),
# the OpenAPI aliases (`messageId`, `phone`, `content`, `createdAt`), or both (the mock).
FieldStyle = Literal["both", "sdk", "openapi"]


def _full_scope() -> list[Scope]:
    return ["Full"]


class SandboxAccount(BaseModel):
    """One CastBrick workspace key. Mutable at runtime (tests flip flags)."""

    model_config = ConfigDict(validate_assignment=True)

    api_key: str
    name: str = "Sandbox Workspace"
    balance: float = 10_000.0  # AOA
    cost_per_sms: float = Field(10.0, ge=0)  # AOA per segment per recipient (mock: costAoa 10)
    low_balance_threshold: float = 500.0
    alert_email: str = "alerts@example.invalid"
    sender_ids: list[str] = Field(default_factory=lambda: [DEFAULT_SENDER_ID])
    default_sender: str = CASTBRICK_DEFAULT_SENDER
    inbound_number: str = DEFAULT_INBOUND_NUMBER
    # SDK types name the scopes `Sms` and `Full`: an `Sms` key may use /sms only.
    scopes: list[Scope] = Field(default_factory=_full_scope)
    revoked: bool = False
    rate_limit: float = Field(10.0, gt=0)  # requests/s per key; burst = rate
    opted_out: list[str] = Field(default_factory=list)  # E.164 numbers that sent STOP

    @field_validator("api_key")
    @classmethod
    def _key_format(cls, value: str) -> str:
        if not KEY_FORMAT.match(value):
            raise ValueError("must be cb_live_<8-64 letters/digits> or cb_test_<…>")
        return value


class CastBrickSandboxConfig(BaseModel):
    """Everything the sandbox does that a test or demo may want to change."""

    model_config = ConfigDict(validate_assignment=True)

    accounts: list[SandboxAccount] = Field(
        default_factory=lambda: [
            SandboxAccount(api_key=DEFAULT_API_KEY),
            SandboxAccount(api_key=DEFAULT_TEST_KEY, name="Sandbox Test Key"),
        ]
    )
    # The one prefix the API answers on; every path under the other answers 404 NotFound, so
    # castbridge's probe can be tested both ways (gateways.md §2, uncertain).
    base_path: Literal["", "/v1"] = ""
    status_case: StatusCase = "capitalized"  # "Queued" like the official mock, or "queued"
    field_style: FieldStyle = "both"
    # "same": a message's `id` is the send's batch `messageId` (one recipient per send);
    # "distinct": items carry their own `id` and the batch id under `messageId` only, and
    # GET /sms/{id} knows only the item id (the uncertain case of gateways.md §2).
    recipient_ids: Literal["same", "distinct"] = "same"
    # Which time GET /sms `from`/`to` filter on. "sentAt" hides messages still queued.
    date_filter: Literal["createdAt", "sentAt"] = "createdAt"
    max_page_size: int = Field(100, ge=1)  # larger pageSize values are cut to this
    max_content_chars: int = Field(1600, ge=1)  # an SDK comment's "1,600 chars"
    retry_after_seconds: int = Field(1, ge=0)
    # Status timeline: Queued → Sent after sent_after → Delivered/Failed after final_after.
    sent_after_seconds: float = Field(1.0, ge=0)
    final_after_seconds: float = Field(3.0, ge=0)
    undeliverable_numbers: list[str] = Field(default_factory=lambda: [UNDELIVERABLE_NUMBER])
    failed_rate: float = Field(0.0, ge=0, le=1)
    failed_error_message: str = "Undeliverable: the handset is unreachable"
    opted_out_error_message: str = "Recipient opted out (STOP)"
    # Webhook bodies (undocumented; see castbridge.sandbox.castbrick.events).
    webhook_envelope: bool = True  # payload under `data`; False: fields at the top level
    webhook_type_key: Literal["eventType", "event", "type"] = "eventType"
    webhook_attempts: int = Field(3, ge=1)
    webhook_retry_delay: float = Field(0.2, ge=0)
    # Registrations need https://, except loopback hosts (local tests) unless this is set.
    allow_plain_http: bool = False
    # Injected 502/503/504 answered as a proxy's HTML page instead of CastBrick JSON.
    html_gateway_errors: bool = False
    faults: Faults = Field(default_factory=Faults)
    seed: int | None = None
