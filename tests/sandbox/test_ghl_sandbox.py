"""The HighLevel sandbox over loopback: OAuth install, API fidelity, signed webhooks, admin."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from castbridge.ghl.keys import load_webhook_keys
from castbridge.ghl.signature import SignatureError, verify
from castbridge.sandbox.ghl import GHLSandbox, GHLSandboxConfig, create_ghl_sandbox
from castbridge.sandbox.server import serve_app

CALLBACK = "https://castbridge.example/oauth/callback"
CONVERSATIONS = {"Version": "2021-04-15"}
CONTACTS = {"Version": "2021-07-28"}


@pytest.fixture(scope="module")
def key_pems() -> dict[str, str]:
    def pem(key: Any) -> str:
        return str(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode()
        )

    return {
        "ed25519_private_pem": pem(ed25519.Ed25519PrivateKey.generate()),
        "rsa_private_pem": pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    }


@dataclass
class Running:
    sandbox: GHLSandbox
    url: str
    http: httpx2.AsyncClient

    @property
    def cfg(self) -> GHLSandboxConfig:
        return self.sandbox.config

    async def token(self, **form: str) -> httpx2.Response:
        data = {"client_id": self.cfg.client_id, "client_secret": self.cfg.client_secret, **form}
        return await self.http.post(self.url + "/oauth/token", data=data)

    async def location_token(self) -> dict[str, Any]:
        code = self.sandbox.issue_code(redirect_uri=CALLBACK)
        response = await self.token(grant_type="authorization_code", code=code)
        assert response.status_code == 200
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture
async def start(key_pems: dict[str, str]) -> AsyncIterator[Any]:
    """Start sandboxes with config overrides; stopped at the end of the test."""
    from contextlib import AsyncExitStack

    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(httpx2.AsyncClient(timeout=10.0))

        async def run(**overrides: Any) -> Running:
            config = GHLSandboxConfig(**{"not_downstreamed_seconds": 0.0, **key_pems, **overrides})
            app = create_ghl_sandbox(config)
            url = await stack.enter_async_context(serve_app(app))
            return Running(app.state.sandbox, url, http)

        yield run


@dataclass
class Receiver:
    """A stand-in for castbridge's webhook routes that verifies like castbridge does."""

    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
async def receiver(start: Any) -> AsyncIterator[tuple[Running, Receiver]]:
    running = await start()
    keys = load_webhook_keys(running.sandbox.webhook_keys_pem)
    record = Receiver()
    app = FastAPI()

    @app.post("/hook")
    async def hook(request: Request) -> JSONResponse:
        raw = await request.body()
        try:
            scheme = verify(raw, request.headers, keys, allow_rsa=True)
        except SignatureError as exc:
            return JSONResponse({"error": exc.reason}, status_code=401)
        record.received.append({"scheme": scheme, "raw": raw, "headers": dict(request.headers)})
        return JSONResponse({"ok": True})

    async with serve_app(app) as url:
        record.url = url + "/hook"
        yield running, record


async def test_choose_location_redirects_with_code_and_state(start: Any) -> None:
    """The install page redirects back with a single-use code and the state we passed."""
    sb = await start()
    response = await sb.http.get(
        sb.url + "/v2/oauth/chooselocation",
        params={
            "response_type": "code",
            "client_id": sb.cfg.client_id,
            "redirect_uri": CALLBACK,
            "scope": "conversations/message.write",
            "state": "s-123",
        },
    )
    assert response.status_code == 302
    target = urlsplit(response.headers["location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == CALLBACK
    query = parse_qs(target.query)
    assert query["state"] == ["s-123"]
    first = await sb.token(grant_type="authorization_code", code=query["code"][0])
    assert first.status_code == 200
    body = first.json()
    assert body["userType"] == "Location"
    assert body["locationId"] == sb.cfg.location_ids[0]
    assert body["scope"] == "conversations/message.write"
    again = await sb.token(grant_type="authorization_code", code=query["code"][0])
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


async def test_choose_location_agency_bulk_install(start: Any) -> None:
    """`user_type=Company` acts as an agency bulk install: a Company token for all locations."""
    sb = await start(location_ids=["locA000000000000001", "locB000000000000001"])
    response = await sb.http.get(
        sb.url + "/v2/oauth/chooselocation",
        params={
            "response_type": "code",
            "client_id": sb.cfg.client_id,
            "redirect_uri": CALLBACK,
            "scope": "oauth.write",
            "user_type": "Company",
        },
    )
    code = parse_qs(urlsplit(response.headers["location"]).query)["code"][0]
    body = (await sb.token(grant_type="authorization_code", code=code)).json()
    assert body["userType"] == "Company"
    assert "locationId" not in body
    assert sorted(body["approvedLocations"]) == ["locA000000000000001", "locB000000000000001"]


async def test_choose_location_rejects_wrong_client(start: Any) -> None:
    """An unknown client_id or a missing redirect_uri gets a 400, no redirect."""
    sb = await start()
    for params in (
        {"response_type": "code", "client_id": "nope", "redirect_uri": CALLBACK},
        {"response_type": "code", "client_id": sb.cfg.client_id},
    ):
        response = await sb.http.get(sb.url + "/v2/oauth/chooselocation", params=params)
        assert response.status_code == 400


async def test_token_endpoint_validation(start: Any) -> None:
    """JSON bodies are 422, bad client credentials 401, unsupported grants 400."""
    sb = await start()
    as_json = await sb.http.post(
        sb.url + "/oauth/token",
        json={"client_id": sb.cfg.client_id, "client_secret": sb.cfg.client_secret},
    )
    assert as_json.status_code == 422
    assert as_json.json()["statusCode"] == 422
    missing = await sb.token()
    assert missing.status_code == 422
    bad_client = await sb.http.post(
        sb.url + "/oauth/token",
        data={"client_id": sb.cfg.client_id, "client_secret": "no", "grant_type": "refresh_token"},
    )
    assert bad_client.status_code == 401
    assert bad_client.json()["error"] == "invalid_client"
    unsupported = await sb.token(grant_type="client_credentials")
    assert unsupported.status_code == 400


async def test_refresh_tokens_are_single_use_and_counted(start: Any) -> None:
    """A refresh token works once; reuse is 400 invalid_grant; every attempt is counted."""
    sb = await start()
    first = await sb.location_token()
    location_id = first["locationId"]
    refreshed = await sb.token(
        grant_type="refresh_token", refresh_token=first["refresh_token"], user_type="Location"
    )
    assert refreshed.status_code == 200
    assert refreshed.json()["refresh_token"] != first["refresh_token"]
    reused = await sb.token(grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    assert sb.sandbox.refresh_count(location_id) == 1
    assert sb.sandbox.refresh_count() == 2  # the reuse attempt counted too


async def test_inactive_location_refresh_is_400_location_not_active(start: Any) -> None:
    """A suspended location's refresh answers 400 "Location is not active" and keeps the token."""
    sb = await start()
    first = await sb.location_token()
    response = await sb.http.post(
        sb.url + "/_sandbox/locations", json={"locationId": first["locationId"], "active": False}
    )
    assert response.json()["active"] is False
    refused = await sb.token(grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert refused.status_code == 400
    assert refused.json()["message"] == "Location is not active"
    assert first["refresh_token"] in sb.sandbox.refresh_tokens


async def test_access_token_expiry_is_configurable(start: Any) -> None:
    """With a short access-token lifetime the token stops working (401) once it expires."""
    sb = await start(access_token_ttl=0.2)
    tokens = await sb.location_token()
    headers = {**CONTACTS, "Authorization": f"Bearer {tokens['access_token']}"}
    params = {"locationId": tokens["locationId"], "number": "+639171234567"}
    url = sb.url + "/contacts/search/duplicate"
    assert (await sb.http.get(url, params=params, headers=headers)).status_code == 200
    await asyncio.sleep(0.25)
    expired = await sb.http.get(url, params=params, headers=headers)
    assert expired.status_code == 401
    assert expired.json()["error"] == "Unauthorized"


async def test_version_header_is_checked(start: Any) -> None:
    """Missing, wrong or v3 Version headers are 400 on the dated endpoints."""
    sb = await start()
    tokens = await sb.location_token()
    message_id = sb.sandbox.delivery_payload(phone="+639171234567", message="x")["messageId"]
    url = f"{sb.url}/conversations/messages/{message_id}/status"
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    for version in (None, "2021-07-28", "v3"):
        headers = dict(auth) if version is None else {**auth, "Version": version}
        response = await sb.http.put(url, json={"status": "delivered"}, headers=headers)
        assert response.status_code == 400, version
    ok = await sb.http.put(url, json={"status": "delivered"}, headers={**auth, **CONVERSATIONS})
    assert ok.status_code == 200


async def test_status_endpoint_validates_and_records(start: Any) -> None:
    """`sent` is 422, another location's token is 403, valid updates are recorded in order."""
    sb = await start()
    tokens = await sb.location_token()
    message_id = sb.sandbox.delivery_payload(phone="+639171234567", message="x")["messageId"]
    url = f"{sb.url}/conversations/messages/{message_id}/status"
    headers = {**CONVERSATIONS, "Authorization": f"Bearer {tokens['access_token']}"}
    sent = await sb.http.put(url, json={"status": "sent"}, headers=headers)
    assert sent.status_code == 422
    assert sent.json()["error"] == "Unprocessable Entity"
    partial = await sb.http.put(
        url, json={"status": "failed", "error": {"code": "1"}}, headers=headers
    )
    assert partial.status_code == 422
    for status in ("pending", "delivered"):
        response = await sb.http.put(url, json={"status": status}, headers=headers)
        assert response.status_code == 200
        assert response.json()["messageId"] == message_id
    admin = (await sb.http.get(f"{sb.url}/_sandbox/messages/{message_id}")).json()
    assert admin["statuses"] == ["pending", "delivered"]
    assert admin["statusCalls"] == 4 - 2  # the two 422s never reached the message

    other_location = sb.sandbox.add_location("otherLocation0000001").id
    code = sb.sandbox.issue_code(redirect_uri=CALLBACK, location_id=other_location)
    other = (await sb.token(grant_type="authorization_code", code=code)).json()
    wrong = await sb.http.put(
        url,
        json={"status": "delivered"},
        headers={**CONVERSATIONS, "Authorization": f"Bearer {other['access_token']}"},
    )
    assert wrong.status_code == 403
    unknown = await sb.http.put(
        f"{sb.url}/conversations/messages/nope/status", json={"status": "read"}, headers=headers
    )
    assert unknown.status_code == 400


async def test_rate_limit_per_location(start: Any) -> None:
    """Over N requests per window a location gets 429 with HighLevel's rate-limit headers."""
    sb = await start(rate_limit_requests=5, rate_limit_window=10.0)
    tokens = await sb.location_token()
    headers = {**CONTACTS, "Authorization": f"Bearer {tokens['access_token']}"}
    params = {"locationId": tokens["locationId"]}
    statuses = [
        (await sb.http.get(sb.url + "/contacts/search/duplicate", params=params, headers=headers))
        for _ in range(7)
    ]
    assert [r.status_code for r in statuses] == [200] * 5 + [429] * 2
    limited = statuses[-1]
    assert limited.headers["X-RateLimit-Interval-Milliseconds"] == "10000"
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert "Retry-After" not in limited.headers
    stats = (await sb.http.get(sb.url + "/_sandbox/stats")).json()
    assert stats["rateLimited"][tokens["locationId"]] == 2
    assert stats["requests"][tokens["locationId"]] == 7


async def test_signed_delivery_webhook_and_403_window(
    receiver: tuple[Running, Receiver],
) -> None:
    """The sandbox's delivery post verifies with its published keys; status is 403 for a while."""
    sb, record = receiver
    sb.sandbox.not_downstreamed_seconds = 0.3
    tokens = await sb.location_token()
    result = await sb.sandbox.send_delivery_webhook(
        record.url, phone="+639171234567", message="Hello", http=sb.http
    )
    assert result.status_code == 200
    assert record.received[-1]["scheme"] == "ed25519"
    assert "x-wh-signature" not in record.received[-1]["headers"]  # Delivery URL: Ed25519 only
    assert record.received[-1]["raw"] == sb.sandbox.encode(result.payload)
    url = f"{sb.url}/conversations/messages/{result.message_id}/status"
    headers = {**CONVERSATIONS, "Authorization": f"Bearer {tokens['access_token']}"}
    early = await sb.http.put(url, json={"status": "delivered"}, headers=headers)
    assert early.status_code == 403
    assert early.json()["message"] == "No conversation provider found for this message"
    await asyncio.sleep(0.35)
    late = await sb.http.put(url, json={"status": "delivered"}, headers=headers)
    assert late.status_code == 200


async def test_admin_deliver_and_events(receiver: tuple[Running, Receiver]) -> None:
    """POST /_sandbox/deliver and /_sandbox/events emit signed posts (RSA on request)."""
    sb, record = receiver
    delivered = await sb.http.post(
        sb.url + "/_sandbox/deliver",
        json={"url": record.url, "phone": "+639171234567", "message": "hi", "webhookFields": True},
    )
    assert delivered.json()["status"] == 200
    message_id = delivered.json()["messageId"]
    assert (await sb.http.get(f"{sb.url}/_sandbox/messages/{message_id}")).status_code == 200

    legacy = await sb.http.post(
        sb.url + "/_sandbox/events",
        json={"url": record.url, "type": "INSTALL", "locationId": "newLocation000000001",
              "rsa": True, "ed25519": False},
    )  # fmt: skip
    assert legacy.json()["status"] == 200
    assert record.received[-1]["scheme"] == "rsa-sha256"
    both = await sb.http.post(
        sb.url + "/_sandbox/events",
        json={"url": record.url, "type": "UNINSTALL", "companyId": sb.cfg.company_id, "rsa": True},
    )
    assert both.json()["payload"]["companyId"] == sb.cfg.company_id
    assert record.received[-1]["scheme"] == "ed25519"  # Ed25519 wins when both are present
    assert sb.sandbox.locations["newLocation000000001"].installed


async def test_tampered_webhook_fails_receiver(receiver: tuple[Running, Receiver]) -> None:
    """Headers signed for one body do not verify another: the receiver answers 401."""
    sb, record = receiver
    payload = sb.sandbox.install_payload(location_id=sb.cfg.location_ids[0])
    body = sb.sandbox.encode(payload)
    headers = sb.sandbox.sign(body)
    response = await sb.http.post(record.url, content=body + b" ", headers=headers)
    assert response.status_code == 401


async def test_keys_and_config_endpoints(start: Any) -> None:
    """The public keys load as castbridge's GHL_WEBHOOK_KEYS; config lists the sandbox ids."""
    sb = await start()
    keys = (await sb.http.get(sb.url + "/_sandbox/keys")).json()
    loaded = load_webhook_keys(keys["webhookKeys"])
    assert (len(loaded.ed25519), len(loaded.rsa)) == (1, 1)
    assert keys["ed25519"] == sb.sandbox.ed25519_public_pem
    config = (await sb.http.get(sb.url + "/_sandbox/config")).json()
    assert config["appId"] == sb.cfg.client_id.split("-")[0]
    assert config["locations"][0]["id"] == sb.cfg.location_ids[0]


async def test_generated_keys_when_none_given() -> None:
    """Without configured keys the sandbox generates an Ed25519 and an RSA pair at start."""
    sandbox = GHLSandbox(GHLSandboxConfig())
    keys = load_webhook_keys(sandbox.webhook_keys_pem)
    assert keys.rsa[0].key_size == 2048
    body = b'{"type":"INSTALL"}'
    assert verify(body, sandbox.sign(body), keys, allow_rsa=False) == "ed25519"


async def test_inbound_drop_switch(start: Any) -> None:
    """With dropInbound on, inbound answers 201 with an empty body and stores nothing."""
    sb = await start()
    tokens = await sb.location_token()
    contact = sb.sandbox.contact_for_phone(tokens["locationId"], "+639171234567")
    headers = {**CONVERSATIONS, "Authorization": f"Bearer {tokens['access_token']}"}
    body = {"type": "SMS", "contactId": contact.id, "message": "hi", "direction": "inbound"}
    url = sb.url + "/conversations/messages/inbound"
    stored = await sb.http.post(url, json=body, headers=headers)
    assert stored.status_code == 201
    assert stored.json()["messageId"]
    toggled = await sb.http.post(sb.url + "/_sandbox/faults", json={"dropInbound": True})
    assert toggled.json()["dropInbound"] is True
    dropped = await sb.http.post(url, json=body, headers=headers)
    assert dropped.status_code == 201
    assert dropped.content in (b"", b"null")


async def test_inbound_without_direction_defaults_to_outbound(start: Any) -> None:
    """Like HighLevel, an inbound post without `direction` is stored as outbound (pitfall #4)."""
    sb = await start()
    tokens = await sb.location_token()
    contact = sb.sandbox.contact_for_phone(tokens["locationId"], "+639171234567")
    headers = {**CONVERSATIONS, "Authorization": f"Bearer {tokens['access_token']}"}
    response = await sb.http.post(
        sb.url + "/conversations/messages/inbound",
        json={"type": "SMS", "contactId": contact.id, "message": "hi"},
        headers=headers,
    )
    assert sb.sandbox.messages[response.json()["messageId"]].direction == "outbound"


async def test_fault_rate_answers_503(start: Any) -> None:
    """fault_rate=1 makes every API call a 503."""
    sb = await start(fault_rate=1.0)
    tokens = await sb.location_token()
    response = await sb.http.get(
        sb.url + "/contacts/search/duplicate",
        params={"locationId": tokens["locationId"]},
        headers={**CONTACTS, "Authorization": f"Bearer {tokens['access_token']}"},
    )
    assert response.status_code == 503


async def test_unknown_route_is_highlevel_shaped_404(start: Any) -> None:
    """Unknown paths answer HighLevel's JSON 404 body."""
    sb = await start()
    response = await sb.http.get(sb.url + "/nope")
    assert response.status_code == 404
    assert response.json()["statusCode"] == 404
