"""Sandbox OAuth: choose-location page, /oauth/token, /oauth/locationToken, installedLocations."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse

from castbridge.sandbox.ghl.common import (
    bearer_grant,
    check_version,
    error,
    guard,
    parse_form,
    reply,
    sandbox_of,
)
from castbridge.sandbox.ghl.schemas import LocationTokenForm, TokenForm
from castbridge.sandbox.ghl.state import GHLSandbox, Grant, drop_none, new_id

OAUTH_VERSION = "2021-07-28"
router = APIRouter()


def _with_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = parts.query + ("&" if parts.query else "") + urlencode(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


@router.get("/v2/oauth/chooselocation")
@router.get("/oauth/chooselocation")
async def choose_location(request: Request) -> RedirectResponse:
    """The Marketplace install page, auto-approved: installs, then redirects with a `code`.

    Extra (sandbox-only) query parameters: `location_id` picks the location (created if new),
    `user_type=Company` (or `bulk=true`) acts as an agency bulk install.
    """
    sandbox = sandbox_of(request)
    query = request.query_params
    if query.get("response_type") != "code":
        raise error(400, "response_type must be code", error_name="Bad Request")
    if query.get("client_id") != sandbox.config.client_id:
        raise error(400, "Invalid client_id", error_name="Bad Request")
    redirect_uri = query.get("redirect_uri")
    if not redirect_uri or not redirect_uri.startswith(("http://", "https://")):
        raise error(400, "redirect_uri is required", error_name="Bad Request")
    company = query.get("user_type") == "Company" or query.get("bulk") in ("1", "true")
    user_type: Literal["Location", "Company"] = "Company" if company else "Location"
    code = sandbox.issue_code(
        redirect_uri=redirect_uri,
        location_id=query.get("location_id") or query.get("locationId"),
        user_type=user_type,
        scope=query.get("scope", ""),
    )
    params = {"code": code}
    state = query.get("state")
    if state is not None:
        params["state"] = state
    return RedirectResponse(_with_query(redirect_uri, params), status_code=302)


def _token_body(sandbox: GHLSandbox, grant: Grant, *, with_refresh: bool = True) -> dict[str, Any]:
    access, refresh = sandbox.issue_tokens(grant, with_refresh=with_refresh)
    body: dict[str, Any] = {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": int(sandbox.config.access_token_ttl),
        "scope": grant.scope,
        "userType": grant.user_type,
        "companyId": grant.company_id,
        "userId": "sbxUser0000000000001",
        "planId": "sbxPlan0000000000001",
    }
    if refresh is not None:
        body["refresh_token"] = refresh
    if grant.user_type == "Location":
        body["locationId"] = grant.location_id
    else:
        body["approvedLocations"] = [
            location.id
            for location in sandbox.locations.values()
            if location.company_id == grant.company_id and location.installed
        ]
        body["isBulkInstallation"] = True
        body["installToFutureLocations"] = False
        body["approveAllLocations"] = True
    return body


def _inactive(sandbox: GHLSandbox, grant: Grant) -> bool:
    if grant.user_type != "Location" or grant.location_id is None:
        return False
    location = sandbox.locations.get(grant.location_id)
    return location is not None and not location.active


@router.post("/oauth/token")
async def token(request: Request) -> JSONResponse:
    """Token endpoint (form-encoded). Codes and refresh tokens are single-use."""
    sandbox = sandbox_of(request)
    check_version(request, None)
    form = await parse_form(request, TokenForm)
    if sandbox.config.token_latency:
        await asyncio.sleep(sandbox.config.token_latency)
    if form.client_id != sandbox.config.client_id or (
        form.client_secret != sandbox.config.client_secret
    ):
        raise error(401, "Invalid client credentials", error_name="invalid_client")
    if form.grant_type == "authorization_code":
        sandbox.token_calls["authorization_code"] += 1
        code = sandbox.codes.pop(form.code or "", None)
        if code is None or code.expires_at < time.time():
            raise error(
                400, "Invalid grant: authorization code is invalid", error_name="invalid_grant"
            )
        if form.redirect_uri is not None and form.redirect_uri != code.redirect_uri:
            raise error(400, "Invalid grant: redirect_uri mismatch", error_name="invalid_grant")
        grant = Grant(
            user_type=code.user_type,
            location_id=code.location_id,
            company_id=code.company_id,
            scope=code.scope,
        )
    elif form.grant_type == "refresh_token":
        sandbox.token_calls["refresh_token"] += 1
        old = sandbox.refresh_tokens.get(form.refresh_token or "")
        if old is not None:
            sandbox.refresh_calls[old.resource_id] += 1
        else:
            sandbox.refresh_calls["<unknown>"] += 1
        if old is None:
            raise error(400, "Invalid grant: refresh token is invalid", error_name="invalid_grant")
        if form.user_type is not None and form.user_type != old.user_type:
            raise error(400, "Invalid grant: user_type does not match", error_name="invalid_grant")
        if _inactive(sandbox, old):
            raise error(400, "Location is not active", error_name="Bad Request")
        # Single use: the old refresh token dies now, whatever happens next.
        del sandbox.refresh_tokens[form.refresh_token or ""]
        sandbox.used_refresh_tokens.add(form.refresh_token or "")
        grant = dataclasses.replace(old, expires_at=0.0, revoked=False)
    else:
        raise error(400, "Unsupported grant_type for this app", error_name="unsupported_grant_type")
    if _inactive(sandbox, grant):
        raise error(400, "Location is not active", error_name="Bad Request")
    return reply(200, _token_body(sandbox, grant))


@router.post("/oauth/locationToken")
async def location_token(request: Request) -> JSONResponse:
    """Mint a Location token from a Company token (form-encoded, Version 2021-07-28)."""
    sandbox = sandbox_of(request)
    check_version(request, OAUTH_VERSION)
    company = bearer_grant(request)
    if company.user_type != "Company":
        raise error(401, "This route requires an Agency (Company) token", error_name="Unauthorized")
    guard(request, company.company_id)
    form = await parse_form(request, LocationTokenForm)
    if form.companyId != company.company_id:
        raise error(400, "companyId does not match the token", error_name="Bad Request")
    location = sandbox.locations.get(form.locationId)
    if location is None or location.company_id != company.company_id or not location.installed:
        raise error(400, "Location not found or app not installed", error_name="Bad Request")
    if not location.active:
        raise error(400, "Location is not active", error_name="Bad Request")
    grant = Grant(
        user_type="Location",
        location_id=location.id,
        company_id=company.company_id,
        scope=company.scope,
    )
    body = _token_body(sandbox, grant, with_refresh=sandbox.config.location_token_refresh)
    for key in ("userType", "companyId", "approvedLocations"):
        body.pop(key, None)
    body["appId"] = sandbox.config.app_id
    body["versionId"] = new_id(24)
    return reply(200, body)


@router.get("/oauth/installedLocations")
async def installed_locations(request: Request) -> JSONResponse:
    """Locations of the company where the app is installed, paginated with skip/limit."""
    sandbox = sandbox_of(request)
    check_version(request, OAUTH_VERSION)
    company = bearer_grant(request)
    if company.user_type != "Company":
        raise error(401, "This route requires an Agency (Company) token", error_name="Unauthorized")
    guard(request, company.company_id)
    query = request.query_params
    missing = [name for name in ("companyId", "appId") if not query.get(name)]
    if missing:
        raise error(422, [f"{name} should not be empty" for name in missing])
    if query["companyId"] != company.company_id:
        raise error(400, "companyId does not match the token", error_name="Bad Request")
    if query["appId"] != sandbox.config.app_id:
        raise error(400, "Invalid appId", error_name="Bad Request")
    try:
        skip = int(query.get("skip", "0"))
        limit = int(query.get("limit", "20"))
    except ValueError:
        raise error(422, ["skip and limit must be numbers"]) from None
    locations = [
        location
        for location in sandbox.locations.values()
        if location.company_id == company.company_id
    ]
    if query.get("isInstalled") == "true":
        locations = [location for location in locations if location.installed]
    cap = sandbox.config.installed_locations_page_cap
    if cap is not None:
        limit = min(limit, cap)  # a server may return fewer than asked: only `count` tells
    page = locations[skip : skip + limit]
    return reply(
        200,
        {
            "locations": [
                drop_none(
                    {
                        "_id": location.id,
                        "name": location.name,
                        "address": "1 Sandbox Street",
                        "isInstalled": location.installed,
                        "versionId": "sbxVersion0000000001",
                        "installedAt": location.installed_at,
                    }
                )
                for location in page
            ],
            "count": len(locations),
            "installToFutureLocations": False,
        },
    )
