"""INSTALL and UNINSTALL app events (ghl.md §4, §5), applied once and in order.

- A `webhookId` is remembered in the same transaction as the event's effect, so a replay does
  nothing and a first try that failed does not block its retry.
- An event older than the installation's current grant is ignored: a late UNINSTALL retry
  after a quick reinstall must not wipe the fresh install. An UNINSTALL without a timestamp
  that meets a grant younger than HighLevel's retry window disables the installation instead
  of deleting its tokens (uncertain whether UNINSTALL always carries one; the safe reading).
- An UNINSTALL must carry our `appId`. It deletes the location's tokens and its own gateway
  key, cancels its queued sends (recorded on each message's timeline) and keeps an audit row.
- Minting location tokens never happens here: it is a durable job (installs/minting.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from castbridge import metrics
from castbridge.ghl.models import AppEvent
from castbridge.installs.jobs import company_sync_job, mint_job
from castbridge.logging import get_logger
from castbridge.store import accounts, events, installations, jobs, messages

if TYPE_CHECKING:
    from castbridge.resources import Resources

log = get_logger(__name__)

RETRY_WINDOW = timedelta(hours=2)  # HighLevel's retries of one event span about 1 h 10 min


@dataclass(frozen=True, slots=True)
class EventOutcome:
    handled: bool
    detail: str | None = None
    duplicate: bool = False


def _timestamp(event: AppEvent) -> datetime | None:
    if not event.timestamp:
        return None
    try:
        when = datetime.fromisoformat(event.timestamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


async def handle_event(resources: Resources, event: AppEvent) -> EventOutcome:
    """Apply an app event once. Raises only when the store cannot take it (answer 429)."""
    kind = event.type.upper()
    app_id = resources.ghl.app_id if resources.settings.ghl_client_id else None
    if event.app_id and app_id and event.app_id != app_id:
        return EventOutcome(False, "event for another app; ignored")
    ours = resources.settings.ghl_conversation_provider_id
    if ours and event.conversation_provider_id == ours:
        # Loop guard (ghl.md pitfall #25): a message castbridge added itself coming back as an
        # InboundMessage/OutboundMessage event is never acted on, above all never sent.
        log.info("own_message_event_ignored", event_type=event.type[:64])
        metrics.WEBHOOKS.labels("events", "own_message").inc()
        return EventOutcome(False, "an event about a message castbridge added itself; ignored")
    if kind not in {"INSTALL", "UNINSTALL"}:
        return EventOutcome(False, f"{event.type[:64]} events are not used; ignored")
    if kind == "UNINSTALL" and (not event.app_id or (app_id and event.app_id != app_id)):
        log.warning("uninstall_without_our_app_id", location_id=event.location_id)
        return EventOutcome(False, "UNINSTALL without our appId; ignored")
    async with resources.store.write() as session:
        if event.webhook_id and not await events.remember_webhook(
            session, event.webhook_id, event.type
        ):
            return EventOutcome(False, "duplicate webhookId", duplicate=True)
        if kind == "INSTALL":
            outcome = await _on_install(session, event)
        else:
            outcome = await _on_uninstall(session, event)
    resources.forget_location(event.location_id)
    resources.wake("admin")
    return outcome


async def _too_old(session: AsyncSession, event: AppEvent) -> str | None:
    """Why the event is older than the current grant (or None when it is not)."""
    when = _timestamp(event)
    grant = None
    if event.location_id:
        grant = await installations.get_installation(session, event.location_id)
    elif event.company_id:
        grant = await installations.get_company_installation(session, event.company_id)
    if grant is None or grant.granted_at is None or when is None:
        return None
    # A second of slack: HighLevel's timestamps have millisecond precision, ours more.
    if when < grant.granted_at - timedelta(seconds=1):
        return f"sent {when.isoformat()} before the current grant of {grant.granted_at.isoformat()}"
    return None


async def _on_install(session: AsyncSession, event: AppEvent) -> EventOutcome:
    """Converges with the OAuth callback whichever comes first (ordering is undocumented)."""
    stale = await _too_old(session, event)
    if stale is not None:
        log.info("install_event_stale", location_id=event.location_id, why=stale)
        return EventOutcome(False, f"older than the current install ({stale}); ignored")
    location_id, company_id = event.location_id, event.company_id
    company = await installations.get_company_installation(session, company_id or "")
    if location_id:
        existing = await installations.get_installation(session, location_id)
        if existing is not None and existing.active:
            return EventOutcome(True, "location already installed")
        if company is not None and company.active and company_id:
            await installations.mark_pending(session, location_id, company_id)
            await jobs.enqueue(session, mint_job(location_id, company_id))
            return EventOutcome(True, "location token queued for minting from the agency token")
    elif company is not None and company.active and company_id:
        await jobs.enqueue(session, company_sync_job(company_id))
        return EventOutcome(True, "agency locations queued for minting")
    await events.add_audit(
        session,
        "install_event",
        location_id=location_id,
        company_id=company_id,
        detail={"note": "waiting for the OAuth callback"},
    )
    return EventOutcome(True, "recorded; tokens arrive with the OAuth callback")


async def _on_uninstall(session: AsyncSession, event: AppEvent) -> EventOutcome:
    stale = await _too_old(session, event)
    if stale is not None:
        log.warning("uninstall_event_stale", location_id=event.location_id, why=stale)
        return EventOutcome(False, f"older than the current install ({stale}); ignored")
    if event.location_id:
        location_ids = [event.location_id]
        grant = await installations.get_installation(session, event.location_id)
    elif event.company_id:
        location_ids = [
            info.location_id
            for info in await installations.list_installations(session)
            if info.company_id == event.company_id and info.location_id
        ]
        grant = await installations.get_company_installation(session, event.company_id)
    else:
        return EventOutcome(False, "UNINSTALL without locationId or companyId; ignored")
    now = datetime.now(UTC)
    if (
        _timestamp(event) is None
        and grant is not None
        and grant.granted_at is not None
        and now - grant.granted_at < RETRY_WINDOW
    ):
        # Maybe a late retry of an UNINSTALL from before a quick reinstall: keep the tokens.
        await installations.set_installation_state(
            session,
            grant.id,
            "disabled",
            reason="UNINSTALL without a timestamp shortly after an install: tokens kept; "
            "`castbridge installations reset` re-enables it",
        )
        await events.add_audit(
            session,
            "uninstall_disabled",
            location_id=event.location_id,
            company_id=event.company_id,
            detail={},
        )
        return EventOutcome(True, "disabled (tokens kept: the grant is younger than 2 h)")
    if event.location_id:
        changed = await installations.uninstall_location(session, event.location_id)
    else:
        changed = await installations.uninstall_company(session, event.company_id or "")
    retired = await accounts.retire_location_accounts(session, location_ids)
    cancelled: list[int] = []
    for location_id in location_ids:
        cancelled += await jobs.cancel_location_sends(session, location_id)
    await messages.cancel(session, cancelled, "not sent: castbridge was uninstalled")
    scope: dict[str, Any] = {
        "installations": changed,
        "accounts_retired": retired,
        "sends_cancelled": len(cancelled),
    }
    await events.add_audit(
        session,
        "uninstall",
        location_id=event.location_id,
        company_id=event.company_id,
        detail=scope,
    )
    log.info("uninstalled", location_id=event.location_id, company_id=event.company_id, **scope)
    return EventOutcome(True, f"uninstalled ({changed} installation(s))")
