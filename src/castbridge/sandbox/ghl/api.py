"""Sandbox conversations and contacts API: status updates, inbound messages, lookups."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from castbridge.sandbox.ghl.common import (
    NOT_DOWNSTREAMED,
    check_version,
    error,
    location_grant,
    parse_json,
    rate_headers,
    reply,
    sandbox_of,
)
from castbridge.sandbox.ghl.schemas import (
    CreateConversation,
    ProcessInboundMessage,
    UpdateContact,
    UpdateMessageStatus,
    UpsertContact,
)
from castbridge.sandbox.ghl.state import (
    GHLSandbox,
    SandboxContact,
    SandboxConversation,
    SandboxMessage,
    new_id,
    now_iso,
)

CONVERSATIONS_VERSION = "2021-04-15"
CONTACTS_VERSION = "2021-07-28"
router = APIRouter()


def _conversation_json(sandbox: GHLSandbox, conversation: SandboxConversation) -> dict[str, object]:
    """Fields of both `ConversationSchema` (search) and `ConversationCreateResponseDto`."""
    contact = sandbox.contacts.get(conversation.contact_id)
    last = [
        message
        for message in sandbox.messages.values()
        if message.conversation_id == conversation.id
    ]
    name = (contact.name if contact else None) or ""
    return {
        "id": conversation.id,
        "contactId": conversation.contact_id,
        "locationId": conversation.location_id,
        "dateAdded": conversation.date_added,
        "dateUpdated": conversation.last_message_date,
        "lastMessageDate": conversation.last_message_date,
        "lastMessageBody": last[-1].body if last else "",
        "lastMessageType": "TYPE_SMS",
        "type": "TYPE_PHONE",
        "unreadCount": 0,
        "fullName": name,
        "contactName": name,
        "email": "",
        "phone": (contact.phone if contact else None) or "",
        "deleted": False,
    }


@router.put("/conversations/messages/{message_id}/status")
async def update_status(message_id: str, request: Request) -> JSONResponse:
    """Record a provider's status update, with HighLevel's not-downstreamed 403 window."""
    sandbox = sandbox_of(request)
    check_version(request, CONVERSATIONS_VERSION)
    grant = location_grant(request)
    assert grant.location_id is not None
    body, raw = await parse_json(request, UpdateMessageStatus)
    message = sandbox.messages.get(message_id)
    if message is None:
        raise error(400, "Message not found", error_name="Bad Request")
    message.status_calls += 1
    if message.location_id != grant.location_id:
        raise error(403, NOT_DOWNSTREAMED)
    if (
        message.emitted_at is not None
        and time.monotonic() - message.emitted_at < sandbox.not_downstreamed_seconds
    ):
        raise error(sandbox.config.not_downstreamed_status, NOT_DOWNSTREAMED)
    message.statuses.append(body.status)
    message.status_errors.append(raw.get("error"))
    message.status = body.status
    return reply(
        200,
        {"conversationId": message.conversation_id, "messageId": message.id, "status": body.status},
        rate_headers(sandbox, grant.location_id),
    )


@router.post("/conversations/messages/inbound")
async def inbound(request: Request) -> JSONResponse:
    """Add an inbound message; 201 like production (the spec says 200)."""
    sandbox = sandbox_of(request)
    check_version(request, CONVERSATIONS_VERSION)
    grant = location_grant(request)
    location_id = grant.location_id
    assert location_id is not None
    body, raw = await parse_json(request, ProcessInboundMessage)
    sandbox.inbound_bodies.append(raw)
    if not body.contactId and not body.conversationId:
        raise error(400, "Either conversationId or contactId is required", error_name="Bad Request")
    provider = body.conversationProviderId
    dropped_once = sandbox.drop_inbound_next > 0
    if dropped_once:
        sandbox.drop_inbound_next -= 1
    if (
        dropped_once
        or sandbox.drop_inbound
        or (provider is not None and provider != sandbox.config.conversation_provider_id)
    ):
        # Issue #70: a wrong provider id answers 201 with an empty body and drops the message.
        return JSONResponse(None, status_code=201)
    if body.conversationId:
        found = sandbox.conversations.get(body.conversationId)
        if found is None or found.location_id != location_id:
            raise error(400, "Conversation not found", error_name="Bad Request")
        conversation = found
    else:
        contact = sandbox.contacts.get(body.contactId or "")
        if contact is None or contact.location_id != location_id:
            raise error(400, "Contact not found", error_name="Bad Request")
        conversation = sandbox.conversation_for(location_id, contact.id)
    if body.contactId and conversation.contact_id != body.contactId:
        raise error(400, "Conversation does not belong to the contact", error_name="Bad Request")
    message = SandboxMessage(
        id=new_id(),
        location_id=location_id,
        contact_id=conversation.contact_id,
        conversation_id=conversation.id,
        direction=body.direction,
        body=body.message or "",
        message_type="TYPE_SMS" if body.type == "SMS" else f"TYPE_{body.type.upper()}",
        attachments=list(body.attachments or []),
        alt_id=body.altId,
        conversation_provider_id=provider,
        status="delivered",
        date_added=(body.date.isoformat() if body.date else now_iso()),
    )
    sandbox.messages[message.id] = message
    conversation.last_message_date = now_iso()
    if sandbox.fail_after_inbound_next > 0:
        sandbox.fail_after_inbound_next -= 1
        raise error(500, "Internal server error", error_name="Internal Server Error")
    return reply(
        201,
        {
            "success": True,
            "conversationId": conversation.id,
            "messageId": message.id,
            "message": "Message added successfully",
            "contactId": message.contact_id,
            "dateAdded": message.date_added,
        },
        rate_headers(sandbox, location_id),
    )


@router.get("/conversations/messages/{message_id}")
async def get_message(message_id: str, request: Request) -> JSONResponse:
    sandbox = sandbox_of(request)
    check_version(request, CONVERSATIONS_VERSION)
    grant = location_grant(request)
    message = sandbox.messages.get(message_id)
    if message is None:
        raise error(400, "Message not found", error_name="Bad Request")
    if message.location_id != grant.location_id:
        raise error(403, "The token does not have access to this location")
    return reply(200, message.as_json())


@router.get("/conversations/{conversation_id}/messages")
async def conversation_messages(conversation_id: str, request: Request) -> JSONResponse:
    """A conversation's messages, newest first (`limit`, `type` filter), with `altId`."""
    sandbox = sandbox_of(request)
    check_version(request, CONVERSATIONS_VERSION)
    grant = location_grant(request)
    conversation = sandbox.conversations.get(conversation_id)
    if conversation is None or conversation.location_id != grant.location_id:
        raise error(400, "Conversation not found", error_name="Bad Request")
    try:
        limit = max(1, min(100, int(float(request.query_params.get("limit", "20")))))
    except ValueError:
        raise error(422, ["limit must be a number"], error_name="Unprocessable Entity") from None
    wanted = {t for t in request.query_params.get("type", "").split(",") if t}
    found = [
        m
        for m in reversed(list(sandbox.messages.values()))
        if m.conversation_id == conversation_id and (not wanted or m.message_type in wanted)
    ]
    page = found[:limit]
    return reply(
        200,
        {
            "lastMessageId": page[-1].id if page else "",
            "nextPage": len(found) > limit,
            "messages": [m.as_json() for m in page],
        },
    )


@router.get("/conversations/search")
async def search_conversations(request: Request) -> JSONResponse:
    sandbox = sandbox_of(request)
    check_version(request, CONVERSATIONS_VERSION)
    location_id = request.query_params.get("locationId")
    if not location_id:
        raise error(422, ["locationId should not be empty"], error_name="Unprocessable Entity")
    location_grant(request, location_id)
    contact_id = request.query_params.get("contactId")
    found = [
        _conversation_json(sandbox, conversation)
        for conversation in sandbox.conversations.values()
        if conversation.location_id == location_id
        and (contact_id is None or conversation.contact_id == contact_id)
    ]
    return reply(200, {"conversations": found, "total": len(found)})


@router.post("/conversations/")
async def create_conversation(request: Request) -> JSONResponse:
    sandbox = sandbox_of(request)
    check_version(request, CONVERSATIONS_VERSION)
    grant = location_grant(request)
    body, _ = await parse_json(request, CreateConversation)
    if body.locationId != grant.location_id:
        raise error(403, "The token does not have access to this location")
    contact = sandbox.contacts.get(body.contactId)
    if contact is None or contact.location_id != body.locationId:
        raise error(400, "Contact not found", error_name="Bad Request")
    for existing in sandbox.conversations.values():
        if existing.location_id == body.locationId and existing.contact_id == contact.id:
            return reply(
                400,
                {
                    "statusCode": 400,
                    "message": "Conversation already exists",
                    "conversationId": existing.id,
                },
            )
    conversation = sandbox.conversation_for(body.locationId, contact.id)
    return reply(201, {"success": True, "conversation": _conversation_json(sandbox, conversation)})


@router.get("/contacts/search/duplicate")
async def duplicate_contact(request: Request) -> JSONResponse:
    """Find a contact by phone; `{"contact": null}` when there is none."""
    sandbox = sandbox_of(request)
    check_version(request, CONTACTS_VERSION)
    location_id = request.query_params.get("locationId")
    if not location_id:
        raise error(422, ["locationId should not be empty"], error_name="Unprocessable Entity")
    location_grant(request, location_id)
    number = request.query_params.get("number")
    contact = sandbox.find_contact(location_id, number) if number else None
    return reply(200, {"contact": contact.as_json() if contact else None})


@router.put("/contacts/{contact_id}")
async def update_contact(contact_id: str, request: Request) -> JSONResponse:
    """Update a contact; castbridge only ever sends `dndSettings` (kept per channel)."""
    sandbox = sandbox_of(request)
    check_version(request, CONTACTS_VERSION)
    grant = location_grant(request)
    body, raw = await parse_json(request, UpdateContact)
    sandbox.update_bodies.append(raw)
    contact = sandbox.contacts.get(contact_id)
    if contact is None or contact.location_id != grant.location_id:
        raise error(400, "Contact not found", error_name="Bad Request")
    if body.tags is not None:
        contact.tags_overwritten = True
    for channel, setting in (body.dndSettings or {}).items():
        contact.dnd_settings[channel] = setting.model_dump(exclude_none=True)
        contact.dnd_updates += 1
    return reply(200, {"succeded": True, "contact": contact.as_json()})


@router.post("/contacts/upsert")
async def upsert_contact(request: Request) -> JSONResponse:
    """Create or update by phone; every body is kept so tests can check what was sent."""
    sandbox = sandbox_of(request)
    check_version(request, CONTACTS_VERSION)
    grant = location_grant(request)
    body, raw = await parse_json(request, UpsertContact)
    sandbox.upsert_bodies.append(raw)
    if body.locationId != grant.location_id:
        raise error(403, "The token does not have access to this location")
    phone = "".join(body.phone.split()) if body.phone else None
    contact = sandbox.find_contact(body.locationId, phone) if phone else None
    created = contact is None
    if contact is None:
        contact = SandboxContact(id=new_id(), location_id=body.locationId, phone=phone)
        sandbox.contacts[contact.id] = contact
    for attribute, value in (
        ("name", body.name),
        ("first_name", body.firstName),
        ("last_name", body.lastName),
        ("source", body.source),
    ):
        if value is not None:
            setattr(contact, attribute, value)
    return reply(200, {"new": created, "contact": contact.as_json()})
