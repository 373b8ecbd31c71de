"""The HighLevel sandbox's inspectable state: grants, contacts, messages, keys and signing."""

from __future__ import annotations

import base64
import json
import random
import secrets
import string
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import httpx2
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from castbridge.sandbox.ghl.config import GHLSandboxConfig

ID_ALPHABET = string.ascii_letters + string.digits


def new_id(length: int = 20) -> str:
    """An id shaped like HighLevel's (20 alphanumerics)."""
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(length))


def trace_id() -> str:
    return secrets.token_hex(16)


def drop_none(body: dict[str, Any]) -> dict[str, Any]:
    """HighLevel omits unknown fields rather than sending null (the spec types them non-null)."""
    return {key: value for key, value in body.items() if value is not None}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class SandboxLocation:
    id: str
    company_id: str
    name: str
    installed: bool = False
    active: bool = True
    installed_at: str | None = None


@dataclass
class Grant:
    """An issued access token (or the refresh token that can renew it)."""

    user_type: Literal["Location", "Company"]
    location_id: str | None
    company_id: str
    scope: str
    expires_at: float = 0.0  # time.time()
    revoked: bool = False

    @property
    def resource_id(self) -> str:
        """The location id of a Location grant, the company id of a Company grant."""
        if self.user_type == "Location" and self.location_id:
            return self.location_id
        return self.company_id


@dataclass
class AuthCode:
    user_type: Literal["Location", "Company"]
    location_id: str | None
    company_id: str
    redirect_uri: str
    scope: str
    expires_at: float


@dataclass
class SandboxContact:
    id: str
    location_id: str
    phone: str | None
    name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    source: str | None = None
    date_added: str = field(default_factory=now_iso)
    # Per channel ("SMS", ...): {"status": "active" | "inactive" | "permanent", "message", "code"}
    dnd_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    dnd_updates: int = 0
    tags_overwritten: bool = False  # an update sent `tags` (it replaces all of them)

    @property
    def sms_dnd(self) -> str | None:
        """The contact's SMS do-not-disturb status, as HighLevel would show it."""
        return (self.dnd_settings.get("SMS") or {}).get("status")

    def as_json(self) -> dict[str, Any]:
        return drop_none(
            {
                "id": self.id,
                "locationId": self.location_id,
                "phone": self.phone,
                "dndSettings": self.dnd_settings or None,
                "firstName": self.first_name,
                "lastName": self.last_name,
                "name": self.name,
                "source": self.source,
                "type": "lead",
                "dateAdded": self.date_added,
                "tags": [],
            }
        )


@dataclass
class SandboxConversation:
    id: str
    location_id: str
    contact_id: str
    date_added: str = field(default_factory=now_iso)
    last_message_date: str = field(default_factory=now_iso)


@dataclass
class SandboxMessage:
    id: str
    location_id: str
    contact_id: str
    conversation_id: str
    direction: str
    body: str
    message_type: str
    attachments: list[str] = field(default_factory=list)
    alt_id: str | None = None
    conversation_provider_id: str | None = None
    status: str = "pending"
    statuses: list[str] = field(default_factory=list)
    status_errors: list[dict[str, Any] | None] = field(default_factory=list)
    status_calls: int = 0
    emitted_at: float | None = None  # time.monotonic() of the Delivery URL post
    date_added: str = field(default_factory=now_iso)

    def as_json(self) -> dict[str, Any]:
        return drop_none(
            {
                "id": self.id,
                "type": 1 if self.direction == "inbound" else 2,
                "messageType": self.message_type,
                "locationId": self.location_id,
                "contactId": self.contact_id,
                "conversationId": self.conversation_id,
                "dateAdded": self.date_added,
                "body": self.body,
                "direction": self.direction,
                "status": self.status,
                "contentType": "text/plain",
                "attachments": self.attachments,
                "source": "app",
                "conversationProviderId": self.conversation_provider_id,
                "altId": self.alt_id,
            }
        )


@dataclass(frozen=True)
class DeliveryResult:
    message_id: str
    status_code: int
    payload: dict[str, Any]


def _load_private(pem: str | None, kind: str, rsa_bits: int) -> Any:
    if pem is None:
        if kind == "ed25519":
            return ed25519.Ed25519PrivateKey.generate()
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    return serialization.load_pem_private_key(pem.encode("ascii"), password=None)


def _public_pem(private_key: Any) -> str:
    return str(
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


class GHLSandbox:
    """Everything the sandbox knows; tests read and steer it through `app.state.sandbox`."""

    def __init__(self, config: GHLSandboxConfig | None = None) -> None:
        self.config = config or GHLSandboxConfig()
        cfg = self.config
        self.random = random.Random(cfg.seed)
        self._ed_key: ed25519.Ed25519PrivateKey = _load_private(
            cfg.ed25519_private_pem, "ed25519", cfg.rsa_key_size
        )
        self._rsa_key: rsa.RSAPrivateKey = _load_private(
            cfg.rsa_private_pem, "rsa", cfg.rsa_key_size
        )
        if not isinstance(self._ed_key, ed25519.Ed25519PrivateKey) or not isinstance(
            self._rsa_key, rsa.RSAPrivateKey
        ):
            raise ValueError("sandbox keys must be an Ed25519 and an RSA private key")
        self.ed25519_public_pem = _public_pem(self._ed_key)
        self.rsa_public_pem = _public_pem(self._rsa_key)
        # Live knobs.
        self.fault_rate = cfg.fault_rate
        self.drop_inbound = cfg.drop_inbound
        # The next N inbound adds answer 201 with an empty body and drop the message (#70).
        self.drop_inbound_next = 0
        # The next N inbound adds are stored, then answered 500 (the add's outcome is unknown to
        # the caller: it must look for its altId before adding again, ghl.md §9).
        self.fail_after_inbound_next = 0
        self.not_downstreamed_seconds = cfg.not_downstreamed_seconds
        self.custom_page_url = cfg.custom_page_url
        # Changes to a sandbox user's `GET /users/{id}` record, e.g. {"roles": {"role": "user"}}.
        self.user_overrides: dict[str, dict[str, Any]] = {}
        # Directory.
        self.locations: dict[str, SandboxLocation] = {}
        for location_id in cfg.location_ids:
            self.add_location(location_id)
        # OAuth.
        self.codes: dict[str, AuthCode] = {}
        self.access_tokens: dict[str, Grant] = {}
        self.refresh_tokens: dict[str, Grant] = {}
        self.used_refresh_tokens: set[str] = set()
        self.refresh_calls: Counter[str] = Counter()
        self.token_calls: Counter[str] = Counter()
        # Data.
        self.contacts: dict[str, SandboxContact] = {}
        self.conversations: dict[str, SandboxConversation] = {}
        self.messages: dict[str, SandboxMessage] = {}
        self.upsert_bodies: list[dict[str, Any]] = []
        self.update_bodies: list[dict[str, Any]] = []
        self.inbound_bodies: list[dict[str, Any]] = []
        # Rate limiting and counters, per location (or company).
        self._hits: dict[str, deque[float]] = {}
        self.requests: Counter[str] = Counter()
        self.rate_limited: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()

    # --- keys and signing -------------------------------------------------------------

    @property
    def webhook_keys_pem(self) -> str:
        """Both public keys as one PEM text: the value for GHL_WEBHOOK_KEYS in sandbox mode."""
        return self.ed25519_public_pem + self.rsa_public_pem

    def sign(self, body: bytes, *, ed25519: bool = True, rsa: bool = False) -> dict[str, str]:
        """Signature headers for these exact bytes, as HighLevel sends them."""
        headers: dict[str, str] = {}
        if ed25519:
            headers["X-GHL-Signature"] = base64.b64encode(self._ed_key.sign(body)).decode()
        if rsa:
            signature = self._rsa_key.sign(body, padding.PKCS1v15(), hashes.SHA256())
            headers["X-WH-Signature"] = base64.b64encode(signature).decode()
        return headers

    @staticmethod
    def encode(payload: dict[str, Any]) -> bytes:
        """Compact UTF-8 JSON, the bytes that get signed and posted."""
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    # --- directory ---------------------------------------------------------------------

    def add_location(
        self, location_id: str | None = None, *, company_id: str | None = None, name: str = ""
    ) -> SandboxLocation:
        location_id = location_id or new_id()
        location = self.locations.get(location_id)
        if location is None:
            location = SandboxLocation(
                id=location_id,
                company_id=company_id or self.config.company_id,
                name=name or f"Sandbox location {location_id[-4:]}",
            )
            self.locations[location_id] = location
        return location

    def set_location_active(self, location_id: str, active: bool) -> None:
        self.add_location(location_id).active = active

    def install(self, location_id: str) -> None:
        location = self.add_location(location_id)
        if not location.installed:
            location.installed = True
            location.installed_at = now_iso()

    # --- OAuth -------------------------------------------------------------------------

    def issue_code(
        self,
        *,
        redirect_uri: str,
        location_id: str | None = None,
        user_type: Literal["Location", "Company"] = "Location",
        company_id: str | None = None,
        scope: str = "",
    ) -> str:
        """What the choose-location page does: install, then hand out a single-use code."""
        if user_type == "Company":
            company = company_id or self.config.company_id
            for location in self.locations.values():
                if location.company_id == company:
                    self.install(location.id)
            location_id = None
        else:
            location = self.add_location(
                location_id or self.default_location(), company_id=company_id
            )
            self.install(location.id)
            location_id = location.id
            company = location.company_id
        code = secrets.token_urlsafe(24)
        self.codes[code] = AuthCode(
            user_type=user_type,
            location_id=location_id,
            company_id=company,
            redirect_uri=redirect_uri,
            scope=scope,
            expires_at=time.time() + self.config.code_ttl,
        )
        return code

    def issue_tokens(self, grant: Grant, *, with_refresh: bool = True) -> tuple[str, str | None]:
        access = "sbx-at-" + secrets.token_urlsafe(32)
        grant.expires_at = time.time() + self.config.access_token_ttl
        self.access_tokens[access] = grant
        refresh = None
        if with_refresh:
            refresh = "sbx-rt-" + secrets.token_urlsafe(32)
            self.refresh_tokens[refresh] = grant
        return access, refresh

    def grant_for(self, access_token: str) -> Grant | None:
        grant = self.access_tokens.get(access_token)
        if grant is None or grant.revoked or grant.expires_at < time.time():
            return None
        return grant

    def revoke_access_tokens(self, resource_id: str) -> int:
        """Make every live access token of a location (or company) answer 401 from now on."""
        count = 0
        for grant in self.access_tokens.values():
            if grant.resource_id == resource_id and not grant.revoked:
                grant.revoked = True
                count += 1
        return count

    def revoke_refresh_tokens(self, resource_id: str) -> int:
        """Forget every refresh token of a location or company: the next refresh gets
        invalid_grant, as after an uninstall."""
        doomed = [
            token
            for token, grant in self.refresh_tokens.items()
            if grant.resource_id == resource_id
        ]
        for token in doomed:
            self.used_refresh_tokens.add(token)
            del self.refresh_tokens[token]
        return len(doomed)

    def refresh_count(self, resource_id: str | None = None) -> int:
        """How many refresh-token grants arrived (for `resource_id`, or in total)."""
        if resource_id is None:
            return sum(self.refresh_calls.values())
        return self.refresh_calls[resource_id]

    # --- rate limit and faults -----------------------------------------------------------

    def hit(self, key: str) -> float | None:
        """Count a request; None if allowed, else seconds until the window frees a slot."""
        self.requests[key] += 1
        now = time.monotonic()
        window = self._hits.setdefault(key, deque())
        while window and window[0] <= now - self.config.rate_limit_window:
            window.popleft()
        if len(window) >= self.config.rate_limit_requests:
            self.rate_limited[key] += 1
            return window[0] + self.config.rate_limit_window - now
        window.append(now)
        return None

    def remaining(self, key: str) -> int:
        return max(0, self.config.rate_limit_requests - len(self._hits.get(key, ())))

    def fault(self, key: str) -> bool:
        if self.fault_rate and self.random.random() < self.fault_rate:
            self.faults[key] += 1
            return True
        return False

    # --- contacts, conversations, messages ---------------------------------------------

    def find_contact(self, location_id: str, phone: str) -> SandboxContact | None:
        wanted = "".join(phone.split())
        for contact in self.contacts.values():
            if contact.location_id == location_id and contact.phone == wanted:
                return contact
        return None

    def contact_for_phone(self, location_id: str, phone: str) -> SandboxContact:
        contact = self.find_contact(location_id, phone)
        if contact is None:
            contact = SandboxContact(id=new_id(), location_id=location_id, phone=phone)
            self.contacts[contact.id] = contact
        return contact

    def conversation_for(self, location_id: str, contact_id: str) -> SandboxConversation:
        for conversation in self.conversations.values():
            if conversation.location_id == location_id and conversation.contact_id == contact_id:
                return conversation
        conversation = SandboxConversation(
            id=new_id(), location_id=location_id, contact_id=contact_id
        )
        self.conversations[conversation.id] = conversation
        return conversation

    def statuses(self, message_id: str) -> list[str]:
        """Every status castbridge reported for the message, in order."""
        message = self.messages.get(message_id)
        return list(message.statuses) if message is not None else []

    # --- webhooks we emit ----------------------------------------------------------------

    def default_location(self) -> str:
        """The first configured location (created if the config lists none)."""
        if not self.locations:
            self.add_location()
        return next(iter(self.locations))

    def delivery_payload(
        self,
        *,
        phone: str,
        message: str,
        location_id: str | None = None,
        contact_id: str | None = None,
        message_id: str | None = None,
        attachments: list[str] | None = None,
        user_id: str | None = None,
        message_type: str = "SMS",
        webhook_fields: bool = False,
    ) -> dict[str, Any]:
        """A Delivery URL body (ghl.md §2); the message is remembered so status updates for it
        are checked against its location and the not-downstreamed window."""
        location = self.add_location(location_id or self.default_location())
        contact = (
            self.contacts[contact_id]
            if contact_id in self.contacts
            else self.contact_for_phone(location.id, phone)
        )
        conversation = self.conversation_for(location.id, contact.id)
        record = SandboxMessage(
            id=message_id or new_id(),
            location_id=location.id,
            contact_id=contact.id,
            conversation_id=conversation.id,
            direction="outbound",
            body=message,
            message_type="TYPE_SMS",
            attachments=list(attachments or []),
            conversation_provider_id=self.config.conversation_provider_id,
            emitted_at=time.monotonic(),
        )
        self.messages[record.id] = record
        payload: dict[str, Any] = {
            "contactId": contact.id,
            "locationId": location.id,
            "messageId": record.id,
            "type": message_type,
            "phone": phone,
            "message": message,
            "attachments": list(attachments or []),
            "userId": user_id or new_id(),
        }
        if webhook_fields:
            payload["timestamp"] = now_iso()
            payload["webhookId"] = secrets.token_hex(12)
        return payload

    def install_payload(
        self, *, location_id: str | None = None, company_id: str | None = None
    ) -> dict[str, Any]:
        """An INSTALL app event: a location install, or an agency one without `location_id`."""
        payload: dict[str, Any] = {
            "type": "INSTALL",
            "appId": self.config.app_id,
            "companyId": company_id or self.config.company_id,
            "userId": new_id(),
            "planId": new_id(24),
            "trial": {"onTrial": False},
            "isWhitelabelCompany": False,
            "whitelabelDetails": {},
            "companyName": self.config.company_name,
            "timestamp": now_iso(),
            "webhookId": secrets.token_hex(12),
        }
        if location_id is not None:
            payload["locationId"] = location_id
            payload["installType"] = "Location"
        else:
            payload["installType"] = "Company"
        return payload

    def uninstall_payload(
        self, *, location_id: str | None = None, company_id: str | None = None
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "type": "UNINSTALL",
            "appId": self.config.app_id,
            "timestamp": now_iso(),
            "webhookId": secrets.token_hex(12),
        }
        if location_id is not None:
            payload["locationId"] = location_id
        else:
            payload["companyId"] = company_id or self.config.company_id
        return payload

    async def send_event(
        self,
        url: str,
        payload: dict[str, Any],
        *,
        http: httpx2.AsyncClient | None = None,
        ed25519: bool = True,
        rsa: bool = False,
    ) -> httpx2.Response:
        """POST a signed body to castbridge, as HighLevel would."""
        body = self.encode(payload)
        headers = {"Content-Type": "application/json", **self.sign(body, ed25519=ed25519, rsa=rsa)}
        if http is not None:
            return await http.post(url, content=body, headers=headers)
        async with httpx2.AsyncClient(timeout=10.0) as client:
            return await client.post(url, content=body, headers=headers)

    async def send_delivery_webhook(
        self,
        url: str,
        *,
        phone: str,
        message: str,
        http: httpx2.AsyncClient | None = None,
        **fields: Any,
    ) -> DeliveryResult:
        """Emit a Delivery URL post; the not-downstreamed window starts now."""
        payload = self.delivery_payload(phone=phone, message=message, **fields)
        self.messages[payload["messageId"]].emitted_at = time.monotonic()
        response = await self.send_event(url, payload, http=http)
        return DeliveryResult(payload["messageId"], response.status_code, payload)
