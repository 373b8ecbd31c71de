"""The inbound job: route a stored reply (or opt-out signal) to its location, honour STOP and
START, and add the reply to the contact's HighLevel conversation exactly once.

Routing: an account a location owns names that location; an account serving several
locations (the operator's default) routes to the location that last texted the number on it,
else to CASTBRIDGE_DEFAULT_ACCOUNT_PRIMARY_LOCATION, else the reply is parked `unroutable` for
the operator (visible, replayable), never dropped.

Exactly once: HighLevel does not dedupe on `altId` (uncertain, ghl.md §9), and an add can land
although its answer was lost (timeout, 5xx, a 201 without `messageId`). So the event is marked
`post_attempted` before the add, and a later run first looks for its `altId` among the
conversation's latest messages (#38) and only adds it again when it is not there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from castbridge import metrics
from castbridge.gateways.registry import spec
from castbridge.ghl import errors as ghl_errors
from castbridge.inbound import contacts, optouts
from castbridge.inbound.keywords import Keywords
from castbridge.limits import Throttled
from castbridge.logging import get_logger
from castbridge.outbound.backoff import not_downstreamed_delay, retry_delay, throttled_delay
from castbridge.outbound.runtime import Runtime, installed, later, utcnow
from castbridge.secrets import SealedPhone
from castbridge.store import accounts as account_store
from castbridge.store import inbound as inbound_store
from castbridge.store import installations
from castbridge.store.jobs import ClaimedJob, Transition
from castbridge.store.models import GatewayAccount, InboundEvent
from castbridge.store.optouts import OptOutChange

log = get_logger(__name__)

# How many of a conversation's latest messages are searched for our altId before adding again.
ALT_ID_LOOKBACK = 50


def _finish(
    event_id: int, values: Mapping[str, Any], *, fate: str = "done", error: str | None = None
) -> Transition:
    async def write(session: AsyncSession) -> None:
        await inbound_store.update_event(session, event_id, values)

    return Transition(fate=fate, error=error, also=write)  # type: ignore[arg-type]


def alt_id(event: InboundEvent) -> str:
    """The reply's id as HighLevel keeps it (`altId`): the gateway's, else ours."""
    return event.gateway_message_id or f"castbridge-{event.id}"


async def route(
    rt: Runtime, event: InboundEvent, account: GatewayAccount
) -> tuple[str | None, str]:
    """(location, how it was chosen), or (None, why not)."""
    if account.origin == "location" and account.owner_location_id:
        return account.owner_location_id, "owner"
    async with rt.store.read() as session:
        if event.phone_hash:
            last = await inbound_store.last_sender_location(session, account, event.phone_hash)
            if last:
                return last, "last_sender"
        owners = await inbound_store.same_key_owners(session, account)
    if len(owners) == 1:
        # One location configured the operator's own key: its replies are that location's.
        return owners[0], "key_owner"
    primary = rt.settings.default_account_primary_location
    if primary:
        return primary, "primary"
    return None, "no location texted this number on this account"


async def run(rt: Runtime, job: ClaimedJob) -> Transition:
    inbound_id = int(job.payload["inbound_id"])
    async with rt.store.read() as session:
        event = await inbound_store.get(session, inbound_id)
        account = await account_store.get(session, event.account_id) if event else None
    if event is None or account is None:
        return Transition(fate="dead", error="the inbound event or its account no longer exists")
    if event.status == "delivered":
        return Transition(fate="done")
    location_id = event.location_id
    if location_id is None:
        location_id, how = await route(rt, event, account)
        if location_id is None:
            return _park(event, how)
        chosen = location_id
        await rt.store.run(
            lambda s: inbound_store.update_event(s, event.id, {"location_id": chosen, "route": how})
        )
    if not event.e164 or not event.phone_hash:
        return _park(event, "the sender's number could not be read", location_id=location_id)
    async with rt.store.read() as session:
        install = await installations.get_installation(session, location_id)
    if install is None or not installed(install.state):
        state = install.state if install is not None else "not installed"
        return _park(
            event,
            f"castbridge is not installed for location {location_id} ({state})",
            location_id=location_id,
        )
    await _opt_out_or_in(rt, event, account, location_id)
    if event.kind != "reply":
        metrics.INBOUND.labels(event.kind).inc()
        return _finish(event.id, {"status": "delivered", "error_code": None, "error_message": None})
    try:
        return await _post(rt, job, event, location_id)
    except Throttled as exc:
        return later(job, throttled_delay(exc.wait), count=False)
    except ghl_errors.GHLError as exc:
        return await _failed(rt, job, event, location_id, exc)


def _park(event: InboundEvent, reason: str, *, location_id: str | None = None) -> Transition:
    log.warning(
        "inbound_unroutable", inbound_id=event.id, account_id=event.account_id, reason=reason
    )
    metrics.INBOUND.labels("unroutable").inc()
    values: dict[str, Any] = {"status": "unroutable", "error_message": reason}
    if location_id is None:
        values["route"] = "unroutable"
    return _finish(event.id, values)


async def _opt_out_or_in(
    rt: Runtime, event: InboundEvent, account: GatewayAccount, location_id: str
) -> None:
    """Record a STOP/START reply or a gateway's own signal before the reply goes anywhere, so
    the next outbound to the number is already refused. Recorded once per event (the newest
    signal wins, so a repeat is harmless anyway)."""
    if event.keyword is not None:
        return
    caps = spec(account.gateway).capabilities
    if event.kind == "reply":
        match = Keywords(rt.settings, account.region or caps.country).match(event.text)
        if match is None:
            return
        opted_out, keyword, source, detail = (
            match.intent == "optout",
            match.keyword,
            "keyword",
            match.keyword,
        )
    else:
        opted_out = event.kind == "optout"
        keyword, source, detail = event.kind.upper(), "gateway", caps.label
        if event.source == "list":
            detail = f"{caps.label}'s opt-out list"
    phone = SealedPhone(
        enc=event.phone_enc, hash=event.phone_hash, masked=event.phone_masked, e164=True
    )
    change = OptOutChange(
        location_id=location_id,
        phone=phone,
        opted_out=opted_out,
        source=source,
        detail=detail,
        at=event.received_at,
    )

    async def write(session: AsyncSession) -> None:
        await optouts.record(session, change)
        await inbound_store.update_event(session, event.id, {"keyword": keyword})

    await rt.store.run(write)
    metrics.OPTOUT_CHANGES.labels(source, "out" if opted_out else "in").inc()
    log.info(
        "optout_recorded" if opted_out else "optin_recorded",
        location_id=location_id,
        inbound_id=event.id,
        source=source,
        keyword=keyword,
    )


async def _post(rt: Runtime, job: ClaimedJob, event: InboundEvent, location_id: str) -> Transition:
    assert event.phone_hash is not None
    phone = rt.vault.open(event.phone_enc)
    ref = await contacts.resolve(rt, location_id, phone, event.phone_hash, conversation=True)
    assert ref.conversation_id is not None
    found_ids = {"ghl_contact_id": ref.contact_id, "ghl_conversation_id": ref.conversation_id}
    if event.post_attempted:
        latest = await rt.ghl_in_a_row.conversation_messages(
            location_id, ref.conversation_id, limit=ALT_ID_LOOKBACK
        )
        ours = next((m for m in latest if m.alt_id == alt_id(event)), None)
        if ours is not None:
            metrics.INBOUND.labels("delivered").inc()
            return _finish(
                event.id, {**found_ids, "status": "delivered", "ghl_message_id": ours.id}
            )
    await rt.store.run(
        lambda s: inbound_store.update_event(s, event.id, {**found_ids, "post_attempted": True})
    )
    result = await rt.ghl_in_a_row.add_inbound_message(
        location_id,
        contact_id=ref.contact_id,
        conversation_id=ref.conversation_id,
        message=event.text,
        conversation_provider_id=rt.settings.ghl_conversation_provider_id or "",
        alt_id=alt_id(event),
        date=event.received_at,
        attachments=event.attachments or (),
    )
    metrics.INBOUND.labels("delivered").inc()
    log.info(
        "inbound_delivered",
        inbound_id=event.id,
        location_id=location_id,
        ghl_message_id=result.message_id,
    )
    return _finish(
        event.id,
        {
            **found_ids,
            "ghl_conversation_id": result.conversation_id or ref.conversation_id,
            "status": "delivered",
            "ghl_message_id": result.message_id,
            "error_code": None,
            "error_message": None,
        },
    )


async def _failed(
    rt: Runtime, job: ClaimedJob, event: InboundEvent, location_id: str, exc: ghl_errors.GHLError
) -> Transition:
    detail = str(exc)
    code = type(exc).__name__
    if isinstance(exc, ghl_errors.RateLimitedError):
        return later(job, retry_delay(rt.settings, 1, exc.retry_after), count=False, error=detail)
    stale = isinstance(exc, ghl_errors.PermanentRequestError) and exc.status_code in (400, 404)
    if stale and event.phone_hash and not job.payload.get("relinked"):
        # "Contact not found" / "Conversation not found": the cached link went stale (a
        # contact deleted or merged in HighLevel); look it up again on the next try.
        await contacts.forget(rt, location_id, event.phone_hash)
        return later(job, 0.0, count=False, payload={**job.payload, "relinked": True})
    retryable = exc.retryable or isinstance(exc, ghl_errors.UnexpectedResponseError)
    if retryable and job.attempts < rt.settings.inbound_max_attempts:
        if isinstance(exc, ghl_errors.NotDownstreamedError):
            delay = not_downstreamed_delay(job.attempts)
        else:
            delay = min(300.0, retry_delay(rt.settings, job.attempts, exc.retry_after))

        async def note(session: AsyncSession) -> None:
            await inbound_store.update_event(
                session, event.id, {"error_code": code, "error_message": detail}
            )

        transition = later(job, delay, error=detail)
        return Transition(fate=transition.fate, run_at=transition.run_at, error=detail, also=note)
    log.warning("inbound_dead", inbound_id=event.id, location_id=location_id, error=detail)
    metrics.INBOUND.labels("dead").inc()
    return _finish(
        event.id,
        {"status": "dead", "error_code": code, "error_message": detail},
        fate="dead",
        error=detail,
    )


__all__ = ["alt_id", "route", "run", "utcnow"]
