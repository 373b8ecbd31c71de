"""The sandbox's Custom Page host: HighLevel's iframe around castbridge's settings page.

`GET /custom-page` lists the sandbox users (an admin and a user, in a sub-account or the agency);
`GET /custom-page/view?role=admin&context=location` frames the Custom Page URL and answers its
`REQUEST_USER_DATA` message with the user's context encrypted as HighLevel does
(`CryptoJS.AES.encrypt(json, sharedSecret)`, the OpenSSL salted format, ghl.md §13).
`silent=1` never answers, as HighLevel does before the app's Shared Secret exists.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from html import escape
from typing import Any, Literal
from urllib.parse import urlencode

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse

from castbridge.sandbox.ghl.common import error, location_grant, reply, sandbox_of
from castbridge.sandbox.ghl.state import GHLSandbox

router = APIRouter()

Role = Literal["admin", "user"]
Context = Literal["location", "agency"]
# The sandbox's HighLevel users: (id, name, email).
USERS: dict[str, tuple[str, str, str]] = {
    "admin": ("sbxUserAdmin00000001", "Ada Admin", "ada.admin@sandbox.test"),
    "user": ("sbxUserUser000000001", "Uma User", "uma.user@sandbox.test"),
}


def cryptojs_encrypt(plaintext: str, passphrase: str, *, salt: bytes | None = None) -> str:
    """What `CryptoJS.AES.encrypt(plaintext, passphrase).toString()` returns."""
    salt = salt or os.urandom(8)
    derived, block = b"", b""
    while len(derived) < 48:
        block = hashlib.md5(
            block + passphrase.encode("utf-8") + salt, usedforsecurity=False
        ).digest()
        derived += block
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext.encode("utf-8")) + padder.finalize()
    encryptor = Cipher(algorithms.AES(derived[:32]), modes.CBC(derived[32:48])).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    return base64.b64encode(b"Salted__" + salt + ciphertext).decode("ascii")


def user_context(
    sandbox: GHLSandbox, role: Role, context: Context, location_id: str | None = None
) -> dict[str, Any]:
    """The decrypted context HighLevel would build for this sandbox user (its documented
    fields; in a location `type` is "agency" too, as in HighLevel's own example)."""
    user_id, name, email = USERS[role]
    body: dict[str, Any] = {
        "userId": user_id,
        "companyId": sandbox.config.company_id,
        "role": role,
        "type": "agency",
        "userName": name,
        "email": email,
    }
    if context == "location":
        location = sandbox.locations.get(location_id or sandbox.default_location())
        if location is not None:
            body["companyId"] = location.company_id
        body["activeLocation"] = location_id or sandbox.default_location()
    return body


def encrypted_context(
    sandbox: GHLSandbox, role: Role, context: Context, location_id: str | None = None
) -> str:
    return cryptojs_encrypt(
        json.dumps(user_context(sandbox, role, context, location_id)), sandbox.config.sso_key
    )


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>HighLevel sandbox - {title}</title>
<style>body{{margin:0;font-family:system-ui,sans-serif;display:flex;height:100vh}}
nav{{width:14rem;background:#0f172a;color:#e2e8f0;padding:1rem;font-size:.9rem}}
nav a{{color:#93c5fd}} main{{flex:1;display:flex;flex-direction:column}}
iframe{{flex:1;border:0;width:100%}} ul{{padding-left:1.1rem}} li{{margin:.3rem 0}}
.bar{{padding:.4rem 1rem;background:#e2e8f0;font-size:.85rem}}</style></head>
<body><nav><strong>HighLevel sandbox</strong><p>{nav}</p></nav><main>{main}</main>{script}</body>
</html>"""


def _links(sandbox: GHLSandbox) -> str:
    items = []
    for location_id in sandbox.locations:
        for role in ("admin", "user"):
            query = urlencode({"role": role, "context": "location", "location": location_id})
            items.append(
                f'<li><a href="/custom-page/view?{query}">{escape(USERS[role][1])} ({role}) in '
                f"sub-account {escape(location_id)}</a></li>"
            )
    for role in ("admin", "user"):
        query = urlencode({"role": role, "context": "agency"})
        items.append(
            f'<li><a href="/custom-page/view?{query}">{escape(USERS[role][1])} ({role}) in the '
            "agency view</a></li>"
        )
    return "<ul>" + "".join(items) + "</ul>"


@router.get("/custom-page", response_class=HTMLResponse, include_in_schema=False)
async def index(request: Request) -> HTMLResponse:
    """Choose a sandbox user and context to open castbridge's Custom Page as."""
    sandbox = sandbox_of(request)
    main = (
        '<div class="bar">Open the castbridge menu item as one of these users (install '
        "castbridge into the sub-account first: castbridge's /oauth/install):</div>"
        f'<div style="padding:1rem">{_links(sandbox)}</div>'
    )
    return HTMLResponse(_PAGE.format(title="Custom Page", nav="castbridge", main=main, script=""))


@router.get("/custom-page/view", response_class=HTMLResponse, include_in_schema=False)
async def view(
    request: Request,
    role: Role = Query("admin"),
    context: Context = Query("location"),
    location: str | None = Query(None, max_length=64),
    silent: bool = Query(False),
) -> HTMLResponse:
    """HighLevel's frame around the Custom Page, answering its user-data request."""
    sandbox = sandbox_of(request)
    target = sandbox.custom_page_url
    if not target:
        return HTMLResponse("no Custom Page URL configured (custom_page_url)", status_code=409)
    payload = None if silent else encrypted_context(sandbox, role, context, location)
    where = (
        f"sub-account {location or sandbox.default_location()}"
        if context == "location"
        else ("agency view")
    )
    nav = (
        f"{escape(USERS[role][1])} ({role})<br>{escape(where)}<br><a href='/custom-page'>switch</a>"
    )
    main = (
        f'<div class="bar">castbridge (Custom Page) - {escape(target)}</div>'
        f'<iframe id="custom-page" title="castbridge" src="{escape(target)}"></iframe>'
    )
    # The payload is base64 (no quotes or angle brackets), safe inside the script as JSON.
    script = (
        "<script>(function(){var frame=document.getElementById('custom-page');"
        f"var payload={json.dumps(payload)};"
        "window.addEventListener('message',function(e){"
        "if(e.source!==frame.contentWindow||!e.data||e.data.message!=='REQUEST_USER_DATA')return;"
        "if(payload===null)return;"
        "frame.contentWindow.postMessage({message:'REQUEST_USER_DATA_RESPONSE',payload:payload},'*');"
        "});})();</script>"
    )
    return HTMLResponse(
        _PAGE.format(title="castbridge", nav=nav, main=main, script=script),
        headers={"Cache-Control": "no-store"},
    )


@router.get("/_sandbox/custom-page/payload", include_in_schema=False)
async def payload(
    request: Request,
    role: Role = Query("admin"),
    context: Context = Query("location"),
    location: str | None = Query(None, max_length=64),
) -> JSONResponse:
    """The encrypted context the host would hand the page (for scripts and tests)."""
    return JSONResponse(
        {"payload": encrypted_context(sandbox_of(request), role, context, location)}
    )


def user_record(sandbox: GHLSandbox, role: Role) -> dict[str, Any]:
    """The sandbox user as `GET /users/{userId}` describes it: the admin is an agency admin,
    the user a sub-account user; both see every location of the sandbox company."""
    user_id, name, email = USERS[role]
    record: dict[str, Any] = {
        "id": user_id,
        "name": name,
        "email": email,
        "roles": {
            "type": "agency" if role == "admin" else "account",
            "role": role,
            "locationIds": [
                loc.id
                for loc in sandbox.locations.values()
                if loc.company_id == sandbox.config.company_id
            ],
            "restrictSubAccount": False,
        },
        "permissions": {"settingsEnabled": role == "admin", "conversationsEnabled": True},
    }
    for key, value in sandbox.user_overrides.get(user_id, {}).items():
        if isinstance(value, dict) and isinstance(record.get(key), dict):
            record[key] = {**record[key], **value}
        else:
            record[key] = value
    return record


@router.get("/users/{user_id}", include_in_schema=False)
async def get_user(user_id: str, request: Request) -> JSONResponse:
    """HighLevel's `GET /users/{userId}` (Version 2021-07-28) for the sandbox users."""
    sandbox = sandbox_of(request)
    grant = location_grant(request)
    for role, (known_id, _name, _email) in USERS.items():
        if known_id == user_id and grant.company_id == sandbox.config.company_id:
            return reply(200, user_record(sandbox, role))  # type: ignore[arg-type]
    raise error(400, "User not found", error_name="Bad Request")
