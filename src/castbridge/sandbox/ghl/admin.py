"""`/_sandbox/...`: inspect and steer the HighLevel sandbox from tests, the CLI or a subprocess."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from castbridge.sandbox.ghl.common import error, parse_json, sandbox_of
from castbridge.sandbox.ghl.schemas import (
    CodeRequest,
    DeliverRequest,
    EventRequest,
    FaultsRequest,
    LocationRequest,
)

router = APIRouter(prefix="/_sandbox")


@router.get("/keys")
async def keys(request: Request) -> dict[str, str]:
    """The public keys to configure castbridge with (GHL_WEBHOOK_KEYS = `webhookKeys`)."""
    sandbox = sandbox_of(request)
    return {
        "ed25519": sandbox.ed25519_public_pem,
        "rsa": sandbox.rsa_public_pem,
        "webhookKeys": sandbox.webhook_keys_pem,
    }


@router.get("/config")
async def config(request: Request) -> dict[str, Any]:
    """Ids a castbridge in sandbox mode needs (client id and secret included: test values)."""
    sandbox = sandbox_of(request)
    cfg = sandbox.config
    return {
        "clientId": cfg.client_id,
        "clientSecret": cfg.client_secret,
        "appId": cfg.app_id,
        "companyId": cfg.company_id,
        "conversationProviderId": cfg.conversation_provider_id,
        "locations": [
            {
                "id": location.id,
                "companyId": location.company_id,
                "installed": location.installed,
                "active": location.active,
            }
            for location in sandbox.locations.values()
        ],
    }


@router.get("/messages/{message_id}")
async def message(message_id: str, request: Request) -> dict[str, Any]:
    """A message and every status castbridge reported for it, in order."""
    sandbox = sandbox_of(request)
    found = sandbox.messages.get(message_id)
    if found is None:
        raise error(404, "no such message in the sandbox")
    return {
        "messageId": found.id,
        "locationId": found.location_id,
        "contactId": found.contact_id,
        "conversationId": found.conversation_id,
        "direction": found.direction,
        "status": found.status,
        "statuses": found.statuses,
        "errors": found.status_errors,
        "statusCalls": found.status_calls,
        "altId": found.alt_id,
    }


@router.get("/inbound")
async def inbound(request: Request) -> list[dict[str, Any]]:
    """Inbound messages castbridge added, oldest first."""
    sandbox = sandbox_of(request)
    return [
        {
            "messageId": item.id,
            "locationId": item.location_id,
            "contactId": item.contact_id,
            "conversationId": item.conversation_id,
            "direction": item.direction,
            "altId": item.alt_id,
            "attachments": item.attachments,
            "length": len(item.body),
        }
        for item in sandbox.messages.values()
        if item.alt_id is not None
    ]


@router.get("/stats")
async def stats(request: Request) -> dict[str, Any]:
    sandbox = sandbox_of(request)
    return {
        "refreshCalls": dict(sandbox.refresh_calls),
        "tokenCalls": dict(sandbox.token_calls),
        "requests": dict(sandbox.requests),
        "rateLimited": dict(sandbox.rate_limited),
        "faults": dict(sandbox.faults),
    }


@router.post("/deliver")
async def deliver(request: Request) -> dict[str, Any]:
    """Emit a signed Delivery URL post to `url`, as when a user sends an SMS in HighLevel."""
    sandbox = sandbox_of(request)
    body, _ = await parse_json(request, DeliverRequest)
    result = await sandbox.send_delivery_webhook(
        body.url,
        phone=body.phone,
        message=body.message,
        location_id=body.locationId,
        contact_id=body.contactId,
        attachments=body.attachments,
        message_type=body.type,
        webhook_fields=body.webhookFields,
    )
    return {"messageId": result.message_id, "status": result.status_code}


@router.post("/events")
async def events(request: Request) -> dict[str, Any]:
    """Emit a signed INSTALL or UNINSTALL app event to `url`."""
    sandbox = sandbox_of(request)
    body, _ = await parse_json(request, EventRequest)
    if body.type == "INSTALL":
        if body.locationId:
            sandbox.install(body.locationId)
        payload = sandbox.install_payload(location_id=body.locationId, company_id=body.companyId)
    else:
        payload = sandbox.uninstall_payload(location_id=body.locationId, company_id=body.companyId)
    response = await sandbox.send_event(body.url, payload, ed25519=body.ed25519, rsa=body.rsa)
    return {"status": response.status_code, "payload": payload}


@router.post("/locations")
async def locations(request: Request) -> dict[str, Any]:
    """Add a location, or mark one active/inactive ("Location is not active" on refresh)."""
    sandbox = sandbox_of(request)
    body, _ = await parse_json(request, LocationRequest)
    location = sandbox.add_location(body.locationId, company_id=body.companyId, name=body.name)
    if body.active is not None:
        location.active = body.active
    return {"locationId": location.id, "companyId": location.company_id, "active": location.active}


@router.post("/faults")
async def faults(request: Request) -> dict[str, Any]:
    sandbox = sandbox_of(request)
    body, _ = await parse_json(request, FaultsRequest)
    if body.faultRate is not None:
        sandbox.fault_rate = body.faultRate
    if body.dropInbound is not None:
        sandbox.drop_inbound = body.dropInbound
    if body.notDownstreamedSeconds is not None:
        sandbox.not_downstreamed_seconds = body.notDownstreamedSeconds
    return {
        "faultRate": sandbox.fault_rate,
        "dropInbound": sandbox.drop_inbound,
        "notDownstreamedSeconds": sandbox.not_downstreamed_seconds,
    }


@router.post("/codes")
async def codes(request: Request) -> dict[str, str]:
    """An authorization code without the browser hop (same as the choose-location page)."""
    sandbox = sandbox_of(request)
    body, _ = await parse_json(request, CodeRequest)
    code = sandbox.issue_code(
        redirect_uri=body.redirectUri,
        location_id=body.locationId,
        user_type=body.userType,
        scope=body.scope,
    )
    return {"code": code}


@router.post("/revoke/{resource_id}")
async def revoke(resource_id: str, request: Request) -> dict[str, int]:
    """Kill a location's (or company's) access tokens (401 next) and refresh tokens."""
    sandbox = sandbox_of(request)
    return {
        "accessTokens": sandbox.revoke_access_tokens(resource_id),
        "refreshTokens": sandbox.revoke_refresh_tokens(resource_id),
    }
