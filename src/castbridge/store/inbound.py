"""SQL for replies and opt-out signals from handsets: stored once per account, routed to a
location, handed to HighLevel; and the cache of each number's HighLevel contact."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from castbridge.secrets import SealedPhone
from castbridge.store import dialect
from castbridge.store.models import ContactLink, GatewayAccount, InboundEvent, Message
from castbridge.store.text import clip, fit

# Everything HighLevel was not (yet) told about, for the CLI's default view.
OPEN_STATES = frozenset({"received", "unroutable", "dead"})


def utcnow() -> datetime:
    return datetime.now(UTC)


def key_scope(account: GatewayAccount) -> str:
    """Events are deduped per gateway key, not per account row."""
    if account.key_fingerprint:
        return f"{account.gateway}:{account.key_fingerprint}"[:64]
    return f"account:{account.id}"


@dataclass(frozen=True, slots=True)
class NewInbound:
    account_id: int
    key_scope: str
    gateway: str
    dedupe_key: str
    kind: str  # reply | optout | optin
    source: str  # webhook | poll
    phone: SealedPhone
    text: str
    received_at: datetime
    gateway_message_id: str | None = None
    attachments: Sequence[str] = field(default_factory=tuple)
    gateway_event_id: int | None = None


async def insert_event(session: AsyncSession, event: NewInbound) -> int | None:
    """Store a reply or opt-out signal; None when its key already has it (a gateway's retry,
    a webhook and a poll finding the same reply, the same body posted to two accounts' URLs
    at once: the unique key settles every race)."""
    now = utcnow()
    statement = (
        dialect.insert(session, InboundEvent)
        .values(
            account_id=event.account_id,
            key_scope=event.key_scope,
            gateway=event.gateway,
            dedupe_key=fit(event.dedupe_key, 128) or "",
            kind=event.kind,
            source=event.source,
            gateway_message_id=fit(event.gateway_message_id, 64),
            phone_enc=event.phone.enc,
            phone_hash=event.phone.hash,
            phone_masked=event.phone.masked,
            e164=event.phone.e164,
            text=dialect.strip_nul(event.text),
            attachments=[clip(a, 2000) or "" for a in event.attachments][:20],
            received_at=event.received_at,
            arrived_at=now,
            gateway_event_id=event.gateway_event_id,
            status="received",
            post_attempted=False,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["key_scope", "dedupe_key"])
        .returning(InboundEvent.id)
    )
    found = (await session.execute(statement)).scalar_one_or_none()
    return int(found) if found is not None else None


async def get(session: AsyncSession, event_id: int) -> InboundEvent | None:
    return await session.get(InboundEvent, event_id)


async def update_event(session: AsyncSession, event_id: int, values: Mapping[str, Any]) -> None:
    cleaned = dict(values)
    for name, width in (("error_code", 64), ("route", 32), ("keyword", 32)):
        if name in cleaned:
            cleaned[name] = fit(cleaned[name], width)
    if "error_message" in cleaned:
        cleaned["error_message"] = clip(cleaned["error_message"])
    cleaned["updated_at"] = utcnow()
    await session.execute(update(InboundEvent).where(InboundEvent.id == event_id).values(**cleaned))


async def listing(
    session: AsyncSession,
    *,
    location_id: str | None = None,
    status: str | None = None,
    limit: int = 50,
) -> list[InboundEvent]:
    query = select(InboundEvent).order_by(InboundEvent.id.desc()).limit(limit)
    if location_id is not None:
        query = query.where(InboundEvent.location_id == location_id)
    if status is not None:
        query = query.where(InboundEvent.status == status)
    return list((await session.execute(query)).scalars())


async def last_sender_location(
    session: AsyncSession, account: GatewayAccount, phone_hash: str
) -> str | None:
    """The location that last texted this number with this account's key: where its reply
    belongs when one key serves several locations (the operator's default account, or a
    location configured with that same key: its messages are pinned to its own row)."""
    same_key = [account.id]
    if account.key_fingerprint:
        same_key = list(
            (
                await session.execute(
                    select(GatewayAccount.id).where(
                        GatewayAccount.key_fingerprint == account.key_fingerprint,
                        GatewayAccount.gateway == account.gateway,
                    )
                )
            ).scalars()
        )
    query = (
        select(Message.location_id)
        .where(Message.phone_hash == phone_hash, Message.account_id.in_(same_key))
        .order_by(Message.id.desc())
        .limit(1)
    )
    return (await session.execute(query)).scalar_one_or_none()


async def same_key_accounts(session: AsyncSession, account_id: int) -> list[int]:
    """This account and every other row holding the same gateway key (a location configured
    with the operator's own key): a key registered or polled twice sees every event twice."""
    this = await session.get(GatewayAccount, account_id)
    if this is None or not this.key_fingerprint:
        return [account_id]
    rows = await session.execute(
        select(GatewayAccount.id).where(
            GatewayAccount.key_fingerprint == this.key_fingerprint,
            GatewayAccount.gateway == this.gateway,
        )
    )
    return sorted({account_id, *rows.scalars()})


async def same_key_owners(session: AsyncSession, account: GatewayAccount) -> list[str]:
    """Locations that own an account row with this account's key (not retired)."""
    if not account.key_fingerprint:
        return []
    rows = await session.execute(
        select(GatewayAccount.owner_location_id).where(
            GatewayAccount.key_fingerprint == account.key_fingerprint,
            GatewayAccount.gateway == account.gateway,
            GatewayAccount.origin == "location",
            GatewayAccount.state != "retired",
        )
    )
    return sorted({owner for owner in rows.scalars() if owner})


# --- contact links ---------------------------------------------------------------------


async def contact_link(
    session: AsyncSession, location_id: str, phone_hash: str
) -> ContactLink | None:
    return await session.get(ContactLink, (location_id, phone_hash))


async def save_contact_link(
    session: AsyncSession,
    location_id: str,
    phone_hash: str,
    contact_id: str,
    conversation_id: str | None,
) -> None:
    values = {
        "location_id": location_id,
        "phone_hash": phone_hash,
        "contact_id": fit(contact_id, 64) or "",
        "conversation_id": fit(conversation_id, 64),
        "updated_at": utcnow(),
    }
    statement = dialect.insert(session, ContactLink).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=["location_id", "phone_hash"],
        set_={k: statement.excluded[k] for k in ("contact_id", "conversation_id", "updated_at")},
    )
    await session.execute(statement)


async def forget_contact_link(session: AsyncSession, location_id: str, phone_hash: str) -> None:
    """HighLevel no longer knows the cached contact or conversation (deleted, merged)."""
    link = await session.get(ContactLink, (location_id, phone_hash))
    if link is not None:
        await session.delete(link)


async def seen_elsewhere(
    session: AsyncSession,
    *,
    account_id: int,
    same_key: Sequence[int],
    phone_hash: str,
    text: str,
    around: datetime,
    window: timedelta,
    source: str,
) -> bool:
    """Whether the same reply (same number, same text) came in close to `around` by another
    path (a poll finding what the webhook delivered, when the two do not share an id:
    gateways.md §3) or for another account row holding the same key."""
    query = (
        select(InboundEvent.id)
        .where(
            InboundEvent.account_id.in_(list(same_key)),
            or_(InboundEvent.source != source, InboundEvent.account_id != account_id),
            InboundEvent.phone_hash == phone_hash,
            InboundEvent.text == text,
            InboundEvent.arrived_at >= around - window,
            InboundEvent.arrived_at <= around + window,
        )
        .limit(1)
    )
    return (await session.execute(query)).scalar_one_or_none() is not None
