"""Configuration of the Cellcast sandbox: accounts, senders, credits, statuses, answer styles."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from castbridge.sandbox.kit import Faults

__all__ = ["Faults"]

# Well-known values of the default configuration (so a demo works out of the box). Real
# Cellcast keys are long JWT-like tokens; these only need to be long and without spaces.
DEFAULT_API_KEY = "cellcast_sandbox_" + "5a4db0c5" * 4
SECOND_API_KEY = "cellcast_sandbox_" + "0b5e55ed" * 4
DEFAULT_SENDER = "CASTBRIDGE"  # a registered alphanumeric sender ID (one-way)
DEDICATED_NUMBER = "61400000999"  # a registered dedicated number (two-way)
SHARED_NUMBER = "61400000100"  # what #SharedNum# shows as (two-way)
# Recipients with a known fate (valid Australian mobile numbers).
UNDELIVERABLE_NUMBER = "+61400000404"  # ends with `undeliverable_status`
NO_ID_NUMBER = "+61400000405"  # answered under status:true without a MessageId (not sent)
REFUSED_NUMBER = "+61400000406"  # a valid-looking mobile Cellcast lists in invalidContacts

FinalFailure = Literal["failed", "rejected", "expired", "dead", "blocked"]


class SandboxAccount(BaseModel):
    """One Cellcast account, identified by its API key. Mutable at runtime (tests flip flags)."""

    model_config = ConfigDict(validate_assignment=True)

    api_key: str = Field(min_length=16)
    account_name: str = "Sandbox Account"
    account_email: str = "sandbox@example.invalid"
    sms_balance: float = 1000.0
    mms_balance: float = 0.0
    # Custom sender IDs and dedicated numbers registered on the account (#SharedNum# always
    # works). A custom or dedicated sender costs `custom_sender_credit` per part.
    senders: list[str] = Field(default_factory=lambda: [DEFAULT_SENDER, DEDICATED_NUMBER])
    # Opted-out numbers in any accepted form; stored as `61…` (international, no +).
    optouts: list[str] = Field(default_factory=list)
    token_expired: bool = False  # every call answers 401 {code, message: "Token expired"}
    rate_limit: float = Field(15.0, gt=0)  # requests/s per key (legacy figure), burst = rate
    # The dashboard's webhooks (profile menu → API → API KEYS → Webhook).
    status_url: str | None = None
    receive_url: str | None = None

    @field_validator("api_key")
    @classmethod
    def _no_spaces(cls, value: str) -> str:
        if any(ch.isspace() for ch in value):
            raise ValueError("an API key has no whitespace")
        return value


class CellcastSandboxConfig(BaseModel):
    """Everything the sandbox does that a test or demo may want to change."""

    model_config = ConfigDict(validate_assignment=True)

    accounts: list[SandboxAccount] = Field(
        default_factory=lambda: [
            SandboxAccount(api_key=DEFAULT_API_KEY),
            SandboxAccount(api_key=SECOND_API_KEY, account_name="Second Account"),
        ]
    )
    credit_per_part: float = Field(1.0, ge=0)
    custom_sender_credit: float = Field(1.3, ge=0)  # custom IDs and dedicated numbers
    # How a send to an opted-out number is answered: the documented `unsubscribeContacts`
    # list under status:true, or the live whole-request refusal "Contact is Unsubscribed…".
    optout_answer: Literal["list", "refusal"] = "list"
    # Report detail: the full documented envelope, or the bare live `{data: {_id, status,
    # updatedAt, send_time}}`.
    report_body: Literal["full", "minimal"] = "full"
    # Receive URL body: the live `{sender, reply, message, receiver}` or the documented
    # `{_id, status, type: "receive", message, sender, receiver}`.
    reply_field: Literal["reply", "message"] = "reply"
    # HTTP statuses of answers whose status is not documented.
    cast_error_http_status: int = Field(200, ge=200, le=599)
    refused_sender_http_status: int = Field(200, ge=200, le=599)
    low_balance_http_status: int = Field(422, ge=200, le=599)
    # Status timeline: queued → sent after `sent_after_seconds` → final after
    # `final_after_seconds` (delivered, or `undeliverable_status` for listed numbers).
    sent_after_seconds: float = Field(1.0, ge=0)
    final_after_seconds: float = Field(3.0, ge=0)
    undeliverable_numbers: list[str] = Field(default_factory=lambda: [UNDELIVERABLE_NUMBER])
    undeliverable_status: FinalFailure = "failed"
    failed_rate: float = Field(0.0, ge=0, le=1)
    no_id_numbers: list[str] = Field(default_factory=lambda: [NO_ID_NUMBER])
    # Numbers Cellcast's own validation refuses (besides non-mobiles): `invalidContacts`.
    invalid_numbers: list[str] = Field(default_factory=lambda: [REFUSED_NUMBER])
    retry_after_seconds: int = Field(1, ge=0)
    # The list's fromDate/toDate are whole days in the account's time zone (AEST, no DST here).
    report_utc_offset_hours: float = Field(10.0, ge=-12, le=14)
    # Whether list rows carry `customString` (undocumented on rows; off as documented).
    list_custom_string: bool = False
    list_max_limit: int = Field(100, ge=1)
    responses_page_size: int = Field(10, ge=1)
    optout_page_size: int = Field(20, ge=1)
    push_attempts: int = Field(3, ge=1)
    push_retry_delay: float = Field(0.2, ge=0)
    pump_interval_seconds: float = Field(0.05, gt=0)
    faults: Faults = Field(default_factory=Faults)
    seed: int | None = None
