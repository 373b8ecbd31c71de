"""SQLAlchemy 2 typed models: installations, settings, messages, jobs, attempts and audit."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
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
    # Cross-process refresh lease: whoever sets it (conditionally) may call /oauth/token.
    refresh_lock_until: Mapped[datetime | None]
    retry_after: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class LocationSettings(Base):
    """Per-location gateway account: own Cast key (encrypted), sender ID, channel, region."""

    __tablename__ = "location_settings"

    location_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    gateway: Mapped[str] = mapped_column(String(24), default="cast")
    api_key_enc: Mapped[str | None] = mapped_column(Text)
    sender_id: Mapped[str | None] = mapped_column(String(32))
    channel: Mapped[str | None] = mapped_column(String(8))
    region: Mapped[str | None] = mapped_column(String(2))
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

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ghl_message_id: Mapped[str] = mapped_column(String(64), unique=True)
    location_id: Mapped[str] = mapped_column(String(64), index=True)
    contact_id: Mapped[str | None] = mapped_column(String(64))
    phone_raw: Mapped[str] = mapped_column(String(64))
    phone_e164: Mapped[str | None] = mapped_column(String(20))
    text: Mapped[str] = mapped_column(Text)
    attachments: Mapped[list[str]] = mapped_column(default=list)
    encoding: Mapped[str | None] = mapped_column(String(8))
    parts_estimate: Mapped[int | None]
    # received -> queued -> accepted -> delivered | failed | unknown; dead when sends ran out.
    status: Mapped[str] = mapped_column(String(16), index=True)
    gateway: Mapped[str] = mapped_column(String(24), default="cast")
    channel: Mapped[str | None] = mapped_column(String(8))
    gateway_message_id: Mapped[str | None] = mapped_column(String(64))
    gateway_parts: Mapped[int | None]
    gateway_status: Mapped[str | None] = mapped_column(String(32))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    # The last status HighLevel has confirmed receiving from us; only ever moves forward.
    ghl_status: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(index=True)
    updated_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class Job(Base):
    """Durable work item: send, poll or report, claimed with a lease by any worker."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_due", "state", "run_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # send | poll | report
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
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
    outcome: Mapped[str] = mapped_column(String(24))
    http_status: Mapped[int | None]
    code: Mapped[str | None] = mapped_column(String(64))
    gateway_message_id: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int | None]
