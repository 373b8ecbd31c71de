"""SQL for what arrives from outside and is kept: seen webhook ids, gateway events, audit rows;
and the pruning of every table that would otherwise grow without bound."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from castbridge.store import dialect
from castbridge.store.models import AuditEvent, GatewayEvent, OAuthState, SeenWebhook
from castbridge.store.text import clip, fit

SEEN_WEBHOOK_RETENTION = timedelta(days=7)
GATEWAY_EVENT_RETENTION = timedelta(days=30)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _insert(session: AsyncSession, model: type[Any]) -> Any:
    return dialect.insert(session, model)


# --- seen webhooks ---------------------------------------------------------------------


async def remember_webhook(
    session: AsyncSession, webhook_id: str, event_type: str, *, now: datetime | None = None
) -> bool:
    """Record a processed `webhookId`; False when it was seen before (a replay)."""
    statement = (
        _insert(session, SeenWebhook)
        .values(webhook_id=webhook_id, event_type=event_type[:64], received_at=now or utcnow())
        .on_conflict_do_nothing(index_elements=["webhook_id"])
        .returning(SeenWebhook.webhook_id)
    )
    return (await session.execute(statement)).scalar_one_or_none() is not None


async def prune_seen_webhooks(
    session: AsyncSession,
    *,
    older_than: timedelta = SEEN_WEBHOOK_RETENTION,
    now: datetime | None = None,
) -> int:
    """Forget webhook ids older than the retention (7 days, beyond HighLevel's retries)."""
    cutoff = (now or utcnow()) - older_than
    result = await session.execute(
        delete(SeenWebhook)
        .where(SeenWebhook.received_at < cutoff)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


# --- audit -------------------------------------------------------------------------------


async def add_audit(
    session: AsyncSession,
    action: str,
    *,
    location_id: str | None = None,
    company_id: str | None = None,
    detail: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> None:
    """A lasting record of an install, uninstall or operator action (no secrets in `detail`)."""
    session.add(
        AuditEvent(
            at=now or utcnow(),
            action=action[:64],
            location_id=location_id,
            company_id=company_id,
            detail=dict(detail or {}),
        )
    )
    await session.flush()


async def list_audit(
    session: AsyncSession, *, location_id: str | None = None, limit: int = 100
) -> list[AuditEvent]:
    statement = select(AuditEvent).order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
    if location_id is not None:
        statement = statement.where(AuditEvent.location_id == location_id)
    return list((await session.execute(statement.limit(limit))).scalars())


# --- gateway events ---------------------------------------------------------------------


async def store_gateway_event(
    session: AsyncSession,
    *,
    account_id: int,
    event_key: str,
    kind: str,
    event_type: str,
    body_enc: str,
) -> int | None:
    """Store one event once per (account, key); None when it was stored before."""
    statement = (
        _insert(session, GatewayEvent)
        .values(
            account_id=account_id,
            event_key=fit(event_key, 128),
            kind=kind,
            event_type=fit(event_type, 64) or "",
            body_enc=body_enc,
            state="received" if kind != "ignored" else "ignored",
            received_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["account_id", "event_key"])
        .returning(GatewayEvent.id)
    )
    event_id = (await session.execute(statement)).scalar_one_or_none()
    return int(event_id) if event_id is not None else None


async def gateway_event(session: AsyncSession, event_id: int) -> GatewayEvent | None:
    return await session.get(GatewayEvent, event_id)


async def mark_gateway_event(
    session: AsyncSession, event_id: int, state: str, detail: str | None = None
) -> None:
    await session.execute(
        update(GatewayEvent)
        .where(GatewayEvent.id == event_id)
        .values(state=state, detail=clip(detail), applied_at=utcnow())
        .execution_options(synchronize_session=False)
    )


async def list_gateway_events(
    session: AsyncSession, *, account_id: int | None = None, limit: int = 50
) -> list[GatewayEvent]:
    query = select(GatewayEvent).order_by(GatewayEvent.id.desc()).limit(limit)
    if account_id is not None:
        query = query.where(GatewayEvent.account_id == account_id)
    return list((await session.execute(query)).scalars())


# --- pruning -----------------------------------------------------------------------------


async def prune(session: AsyncSession, *, now: datetime | None = None) -> dict[str, int]:
    """Forget what no longer protects anything: expired OAuth states, webhook ids past
    HighLevel's retry window, applied gateway events past their retention."""
    now = now or utcnow()
    removed: dict[str, int] = {}
    result = await session.execute(
        delete(OAuthState)
        .where(OAuthState.expires_at <= now)
        .execution_options(synchronize_session=False)
    )
    removed["oauth_states"] = int(result.rowcount)  # type: ignore[attr-defined]
    removed["seen_webhooks"] = await prune_seen_webhooks(session, now=now)
    result = await session.execute(
        delete(GatewayEvent)
        .where(
            GatewayEvent.received_at < now - GATEWAY_EVENT_RETENTION,
            GatewayEvent.state != "received",
        )
        .execution_options(synchronize_session=False)
    )
    removed["gateway_events"] = int(result.rowcount)  # type: ignore[attr-defined]
    return removed
