"""SQLAlchemy 2 typed models: installations, gateway accounts, locations, messages, jobs, events."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import text as sql_text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use datetime.now(UTC)")
        from datetime import UTC

        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        from datetime import UTC

        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON,
        list[str]: JSON,
    }


class Installation(Base):
    """One OAuth grant: a Location token, or an agency's Company token (location_id empty)."""

    __tablename__ = "installations"
    __table_args__ = (UniqueConstraint("user_type", "resource_id", name="uq_installation"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_type: Mapped[str] = mapped_column(String(16))  # "Location" | "Company"
    resource_id: Mapped[str] = mapped_column(String(64))  # location id or company id
    location_id: Mapped[str | None] = mapped_column(String(64), index=True)
    company_id: Mapped[str | None] = mapped_column(String(64), index=True)
    access_token_enc: Mapped[str | None] = mapped_column(Text)
    refresh_token_enc: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime | None]
    scope: Mapped[str] = mapped_column(Text, default="")
    # active | paused | needs_reinstall | uninstalled
    state: Mapped[str] = mapped_column(String(24), default="active")
    state_reason: Mapped[str | None] = mapped_column(Text)
    # Bumped by every token change: the compare-and-swap that makes refresh single-flight.
    token_version: Mapped[int] = mapped_column(Integer, default=0)
    # Cross-process refresh lease: whoever sets it (conditionally) may call /oauth/token; only
    # the owner named here may release it.
    refresh_lock_until: Mapped[datetime | None]
    refresh_lock_owner: Mapped[str | None] = mapped_column(String(64))
    # When the current tokens were obtained: app events older than this are ignored (ghl.md §4).
    granted_at: Mapped[datetime | None]
    retry_after: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class GatewayAccount(Base):
    """One gateway API key and how to send with it. Locations point at one; every message is
    pinned to the account that first may have sent it (idempotency and reconciliation are
    scoped per key, gateways.md §6). `origin` "env" marks the operator's default account of a
    gateway (from its <NAME>_API_KEY); a changed env key makes a new row and retires the old."""

    __tablename__ = "gateway_accounts"
    __table_args__ = (
        # One current default account per gateway: processes starting together agree on it.
        Index(
            "uq_env_account",
            "gateway",
            unique=True,
            sqlite_where=sql_text("origin = 'env' AND state <> 'retired'"),
            postgresql_where=sql_text("origin = 'env' AND state <> 'retired'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    gateway: Mapped[str] = mapped_column(String(24))
    origin: Mapped[str] = mapped_column(String(16))  # env | location
    owner_location_id: Mapped[str | None] = mapped_column(String(64), index=True)
    label: Mapped[str] = mapped_column(String(100), default="")
    api_key_enc: Mapped[str] = mapped_column(Text)
    key_fingerprint: Mapped[str | None] = mapped_column(String(32), index=True)
    sender_id: Mapped[str | None] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16), default="sms")
    region: Mapped[str | None] = mapped_column(String(2))
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # active | paused | retired
    state: Mapped[str] = mapped_column(String(16), default="active")
    state_code: Mapped[str | None] = mapped_column(String(64))
    state_reason: Mapped[str | None] = mapped_column(Text)
    paused_at: Mapped[datetime | None]
    next_probe_at: Mapped[datetime | None]
    probes: Mapped[int] = mapped_column(Integer, default=0)
    # The unguessable path segment of this account's gateway webhook URL.
    webhook_token: Mapped[str] = mapped_column(String(64), unique=True)
    webhooks: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Bumped by every change: in-process caches compare it to stay correct.
    version: Mapped[int] = mapped_column(Integer, default=1)
    # Polling a gateway for replies: the adapter's opaque cursor, stored only after the replies
    # it covers are saved.
    inbound_cursor: Mapped[str | None] = mapped_column(Text)
    inbound_polled_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Location(Base):
    """A HighLevel sub-account's sending set-up: its own account (if any), region, sender."""

    __tablename__ = "locations"

    location_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("gateway_accounts.id"))
    # Once a location had an account of its own it never falls back to the operator's default.
    had_own_account: Mapped[bool] = mapped_column(default=False)
    sender_id: Mapped[str | None] = mapped_column(String(32))
    channel: Mapped[str | None] = mapped_column(String(16))
    region: Mapped[str | None] = mapped_column(String(2))
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime]


class KeyringEntry(Base):
    """Keys castbridge makes for itself (the blind-index key for phone lookups), encrypted
    under CASTBRIDGE_SECRET_KEYS like every other secret."""

    __tablename__ = "keyring"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value_enc: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class RateBucket(Base):
    """A token bucket shared by every process (PostgreSQL); times are database epoch seconds."""

    __tablename__ = "rate_buckets"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class GatewayEvent(Base):
    """A gateway webhook event, stored once (raw body encrypted: it holds phone numbers) and
    applied by a job."""

    __tablename__ = "gateway_events"
    __table_args__ = (UniqueConstraint("account_id", "event_key", name="uq_gateway_event"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("gateway_accounts.id"), index=True)
    event_key: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))  # status | inbound | optout | ignored
    event_type: Mapped[str] = mapped_column(String(64))
    body_enc: Mapped[str] = mapped_column(Text)
    # received | applied | ignored | unmatched
    state: Mapped[str] = mapped_column(String(16), default="received")
    detail: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(index=True)
    applied_at: Mapped[datetime | None]


class InboundEvent(Base):
    """A handset's reply, opt-out or opt-in as a gateway reported it (webhook or poll), stored
    once per account and handed to HighLevel by a job: the routing decision, the contact and
    conversation found, and HighLevel's answer are kept on it for `castbridge inbound show`."""

    __tablename__ = "inbound_events"
    __table_args__ = (
        UniqueConstraint("key_scope", "dedupe_key", name="uq_inbound_event"),
        Index("ix_inbound_events_status", "status", "arrived_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("gateway_accounts.id"), index=True)
    gateway: Mapped[str] = mapped_column(String(24))
    # Whose events these are: the gateway key (several account rows may hold one key, e.g. a
    # location configured with the operator's own: each event then arrives once per row).
    key_scope: Mapped[str] = mapped_column(String(64))
    # The gateway's message id, else a hash of sender, text and received time (gateways.md).
    dedupe_key: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))  # reply | optout | optin
    source: Mapped[str] = mapped_column(String(16))  # webhook | poll
    gateway_message_id: Mapped[str | None] = mapped_column(String(64))
    phone_enc: Mapped[str] = mapped_column(Text)
    phone_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    phone_masked: Mapped[str] = mapped_column(String(24), default="")
    e164: Mapped[bool] = mapped_column(default=False)
    text: Mapped[str] = mapped_column(Text, default="")
    attachments: Mapped[list[str]] = mapped_column(default=list)
    received_at: Mapped[datetime]  # the gateway's time, else when it arrived
    arrived_at: Mapped[datetime]
    gateway_event_id: Mapped[int | None] = mapped_column(Integer)
    location_id: Mapped[str | None] = mapped_column(String(64), index=True)
    # owner | last_sender | primary | operator, or why it could not be routed
    route: Mapped[str | None] = mapped_column(String(32))
    # received | delivered | unroutable | dead
    status: Mapped[str] = mapped_column(String(16), default="received")
    keyword: Mapped[str | None] = mapped_column(String(32))  # the STOP/START word it matched
    ghl_contact_id: Mapped[str | None] = mapped_column(String(64))
    ghl_conversation_id: Mapped[str | None] = mapped_column(String(64))
    ghl_message_id: Mapped[str | None] = mapped_column(String(64))
    # An add was attempted whose outcome is unknown: look for our altId before adding again.
    post_attempted: Mapped[bool] = mapped_column(default=False)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime]


class OptOut(Base):
    """A number that opted out of a location's SMS (or back in: kept, `opted_out` False), from a
    STOP/START reply, a gateway's signal, an import or an operator. Sends to an opted-out number
    are refused by castbridge itself, whatever HighLevel's DND says."""

    __tablename__ = "optouts"
    __table_args__ = (UniqueConstraint("location_id", "phone_hash", name="uq_optout"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    location_id: Mapped[str] = mapped_column(String(64), index=True)
    phone_hash: Mapped[str] = mapped_column(String(64))
    phone_enc: Mapped[str] = mapped_column(Text)
    phone_masked: Mapped[str] = mapped_column(String(24), default="")
    opted_out: Mapped[bool] = mapped_column(default=True)
    source: Mapped[str] = mapped_column(String(16))  # keyword | gateway | import | operator
    detail: Mapped[str] = mapped_column(String(200), default="")
    at: Mapped[datetime]  # when the number opted out (or back in)
    # What HighLevel's contact DND was last set to: active | inactive | None (not yet)
    ghl_dnd: Mapped[str | None] = mapped_column(String(16))
    updated_at: Mapped[datetime]


class ContactLink(Base):
    """Which HighLevel contact and conversation a location's phone number belongs to: saves
    three HighLevel calls per reply after the first."""

    __tablename__ = "contact_links"

    location_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    phone_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    contact_id: Mapped[str] = mapped_column(String(64))
    conversation_id: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime]


class OAuthState(Base):
    """A single-use `state` for the install redirect; consumed with one DELETE ... RETURNING."""

    __tablename__ = "oauth_states"

    state: Mapped[str] = mapped_column(String(128), primary_key=True)
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime]


class SeenWebhook(Base):
    """`webhookId`s already processed, so a replayed signed body is dropped."""

    __tablename__ = "seen_webhooks"

    webhook_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(index=True)


class AuditEvent(Base):
    """Lasting record of install, uninstall and operator actions."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    action: Mapped[str] = mapped_column(String(64))
    location_id: Mapped[str | None] = mapped_column(String(64))
    company_id: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Message(Base):
    """An outbound SMS as HighLevel handed it to us, and everything we learned since."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("location_id", "ghl_message_id", name="uq_message_location"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ghl_message_id: Mapped[str] = mapped_column(String(64), index=True)
    location_id: Mapped[str] = mapped_column(String(64), index=True)
    contact_id: Mapped[str | None] = mapped_column(String(64))
    # Phone numbers are personal data: stored encrypted, found again by a keyed hash.
    phone_enc: Mapped[str] = mapped_column(Text)
    phone_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    phone_masked: Mapped[str] = mapped_column(String(24), default="")
    e164: Mapped[bool] = mapped_column(default=False)  # phone_enc holds a valid E.164 number
    text: Mapped[str] = mapped_column(Text)
    attachments: Mapped[list[str]] = mapped_column(default=list)
    encoding: Mapped[str | None] = mapped_column(String(8))
    parts_estimate: Mapped[int | None]
    # queued (held while its account is paused or its install finishing) -> accepted ->
    # delivered | failed | unknown | sent (accepted, the gateway gives no reports);
    # dead when sends ran out; cancelled after an UNINSTALL.
    status: Mapped[str] = mapped_column(String(16), index=True)
    held: Mapped[str | None] = mapped_column(String(16))  # account | install | None
    account_id: Mapped[int | None] = mapped_column(ForeignKey("gateway_accounts.id"), index=True)
    gateway: Mapped[str | None] = mapped_column(String(24))
    sender_id: Mapped[str | None] = mapped_column(String(32))
    channel: Mapped[str | None] = mapped_column(String(16))
    # An attempt may have reached the gateway: never fail it as "not sent", never re-pin it.
    maybe_sent: Mapped[bool] = mapped_column(default=False)
    sent_at: Mapped[datetime | None]
    gateway_message_id: Mapped[str | None] = mapped_column(String(64), index=True)
    gateway_parts: Mapped[int | None]
    gateway_status: Mapped[str | None] = mapped_column(String(32))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    # The last status HighLevel has confirmed receiving from us; only ever moves forward.
    ghl_status: Mapped[str | None] = mapped_column(String(16))
    ghl_reported_at: Mapped[datetime | None]
    # An operator forced a replay of a message HighLevel shows as failed: its next report is
    # sent even though it moves backwards (ghl.md §8: try it, record HighLevel's answer).
    force_report: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(index=True)
    updated_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class Job(Base):
    """Durable work item: send, poll or report, claimed with a lease by any worker."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_lane_due", "lane", "state", "run_at"),
        Index("ix_jobs_lease", "state", "lease_until"),
        Index(
            "uq_jobs_singleton",
            "singleton_key",
            unique=True,
            sqlite_where=sql_text("state IN ('queued', 'running')"),
            postgresql_where=sql_text("state IN ('queued', 'running')"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # send | poll | reconcile | report | gateway_event | mint | probe | prune | ...
    kind: Mapped[str] = mapped_column(String(16))
    # Each lane has its own worker capacity, so status work never waits behind sends.
    lane: Mapped[str] = mapped_column(String(16), default="send")
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"), index=True)
    location_id: Mapped[str | None] = mapped_column(String(64))
    account_id: Mapped[int | None] = mapped_column(Integer, index=True)
    # At most one queued-or-running job per key (a probe per account, a mint per location).
    singleton_key: Mapped[str | None] = mapped_column(String(128))
    # queued | running | done | dead
    state: Mapped[str] = mapped_column(String(16))
    run_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None]
    worker_id: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Attempt(Base):
    """One try at a job: the timeline `castbridge messages show` prints."""

    __tablename__ = "attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    kind: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime]
    outcome: Mapped[str] = mapped_column(String(32))
    http_status: Mapped[int | None]
    code: Mapped[str | None] = mapped_column(String(64))
    gateway_message_id: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int | None]
