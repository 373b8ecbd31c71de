"""Replies and opt-out signals as they arrive (a gateway webhook or a poll): stored once per
account, each with the job that hands it to HighLevel, in the caller's transaction."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from castbridge.gateways.base import InboundSms, OptOut
from castbridge.secrets import PhoneVault, SealedPhone
from castbridge.sms.phone import InvalidNumber, normalize
from castbridge.store import inbound as inbound_store
from castbridge.store import jobs
from castbridge.store.inbound import NewInbound
from castbridge.store.jobs import NewJob
from castbridge.store.models import GatewayAccount

# A webhook pushes a reply within seconds; a poll finds the same reply with the gateway's own
# receive time. Within this window the same number and text by the other path is one reply.
CROSS_PATH_WINDOW = timedelta(minutes=3)
MAX_TEXT_CHARS = 10_000


def utcnow() -> datetime:
    return datetime.now(UTC)


def inbound_job(inbound_id: int, account_id: int, run_at: datetime | None = None) -> NewJob:
    return NewJob(
        kind="inbound",
        lane="inbound",
        run_at=run_at or utcnow(),
        account_id=account_id,
        payload={"inbound_id": inbound_id},
    )


def seal_sender(vault: PhoneVault, raw: str, region: str) -> SealedPhone:
    """The handset's number in E.164 with the account's country; kept as written (and marked
    not valid) when it cannot be read, so the reply is parked for the operator, not lost."""
    try:
        return vault.seal(normalize(raw, region), e164=True)
    except InvalidNumber:
        return vault.seal(raw.strip()[:64], e164=False)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def reply_key(sms: InboundSms, phone: SealedPhone, arrived: datetime) -> str:
    """The reply's id at the gateway joined with its content (an id shared by two replies, as
    Cellcast's may be, still keeps both); without an id, the content and the minute it was
    received (gateways.md: dedupe on a content hash with the received time)."""
    content = _digest(phone.hash or phone.enc, sms.text)
    if sms.gateway_message_id:
        return f"id:{sms.gateway_message_id[:64]}:{content[:16]}"
    moment = (sms.received_at or arrived).replace(second=0, microsecond=0).isoformat()
    return f"content:{_digest(phone.hash or phone.enc, sms.text, moment)}"


async def store_reply(
    session: AsyncSession,
    *,
    account: GatewayAccount,
    region: str,
    vault: PhoneVault,
    sms: InboundSms,
    source: str,
    gateway_event_id: int | None = None,
) -> int | None:
    """Store a reply and queue its delivery; None when it is a repeat."""
    account_id = account.id
    now = utcnow()
    phone = seal_sender(vault, sms.from_number, region)
    text = sms.text[:MAX_TEXT_CHARS]
    received = sms.received_at or now
    same_key = await inbound_store.same_key_accounts(session, account_id)
    if phone.hash is not None and await inbound_store.seen_elsewhere(
        session,
        account_id=account_id,
        same_key=same_key,
        phone_hash=phone.hash,
        text=text,
        around=received if source == "poll" else now,
        window=CROSS_PATH_WINDOW,
        source=source,
    ):
        return None
    inbound_id = await inbound_store.insert_event(
        session,
        NewInbound(
            account_id=account_id,
            key_scope=inbound_store.key_scope(account),
            gateway=account.gateway,
            dedupe_key=reply_key(sms, phone, now),
            kind="reply",
            source=source,
            phone=phone,
            text=text,
            received_at=received,
            gateway_message_id=sms.gateway_message_id,
            attachments=sms.attachments,
            gateway_event_id=gateway_event_id,
        ),
    )
    if inbound_id is not None:
        await jobs.enqueue(session, inbound_job(inbound_id, account_id))
    return inbound_id


async def store_optout_signal(
    session: AsyncSession,
    *,
    account: GatewayAccount,
    region: str,
    vault: PhoneVault,
    signal: OptOut,
    event_key: str,
    source: str,
    gateway_event_id: int | None = None,
) -> int | None:
    """Store a gateway's own opt-out (or opt-in) signal and queue recording it."""
    now = utcnow()
    account_id = account.id
    phone = seal_sender(vault, signal.phone, region)
    inbound_id = await inbound_store.insert_event(
        session,
        NewInbound(
            account_id=account_id,
            key_scope=inbound_store.key_scope(account),
            gateway=account.gateway,
            dedupe_key=f"signal:{event_key[:100]}",
            kind="optin" if signal.opted_in else "optout",
            source=source,
            phone=phone,
            text="",
            received_at=signal.at or now,
            gateway_event_id=gateway_event_id,
        ),
    )
    if inbound_id is not None:
        await jobs.enqueue(session, inbound_job(inbound_id, account_id))
    return inbound_id
