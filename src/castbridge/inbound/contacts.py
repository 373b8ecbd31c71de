"""Finding a handset's HighLevel contact and conversation (ghl.md §10): the cached link, else
duplicate search, else an upsert with only the location and the number (never tags), then
the contact's conversation, else a new one."""

from __future__ import annotations

from dataclasses import dataclass

from castbridge.ghl import errors as ghl_errors
from castbridge.outbound.runtime import Runtime
from castbridge.store import inbound as inbound_store


@dataclass(frozen=True, slots=True)
class ContactRef:
    contact_id: str
    conversation_id: str | None


async def resolve(
    rt: Runtime,
    location_id: str,
    e164: str,
    phone_hash: str,
    *,
    conversation: bool,
) -> ContactRef:
    """The contact (and, with `conversation`, its conversation) for this number; every
    HighLevel error propagates for the caller's retry policy. What was found is cached, so a
    retry after a later step failed does not search again."""
    async with rt.store.read() as session:
        link = await inbound_store.contact_link(session, location_id, phone_hash)
    if link is not None and (link.conversation_id or not conversation):
        return ContactRef(link.contact_id, link.conversation_id)
    contact_id = link.contact_id if link is not None else None
    if contact_id is None:
        found = await rt.ghl_in_a_row.find_contact_by_phone(location_id, e164)
        if found is not None:
            contact_id = found.id
        else:
            contact_id = (await rt.ghl_in_a_row.upsert_contact(location_id, e164)).contact.id
    conversation_id: str | None = None
    if conversation:
        conversation_id = await _conversation(rt, location_id, contact_id)
    await rt.store.run(
        lambda session: inbound_store.save_contact_link(
            session, location_id, phone_hash, contact_id, conversation_id
        )
    )
    return ContactRef(contact_id, conversation_id)


async def _conversation(rt: Runtime, location_id: str, contact_id: str) -> str:
    existing = await rt.ghl_in_a_row.search_conversations(location_id, contact_id)
    if existing:
        return existing[0].id
    try:
        return (await rt.ghl_in_a_row.create_conversation(location_id, contact_id)).id
    except ghl_errors.PermanentRequestError:
        # Another reply created it a moment ago ("Conversation already exists").
        existing = await rt.ghl_in_a_row.search_conversations(location_id, contact_id)
        if existing:
            return existing[0].id
        raise


async def forget(rt: Runtime, location_id: str, phone_hash: str) -> None:
    """HighLevel refused the cached contact or conversation (deleted or merged since)."""
    await rt.store.run(
        lambda session: inbound_store.forget_contact_link(session, location_id, phone_hash)
    )
