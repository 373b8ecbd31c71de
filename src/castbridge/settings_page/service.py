"""What the settings page does: grant a session for a verified HighLevel user (confirmed with
HighLevel where the install allows), open a sub-account from the agency view, configure a
gateway, send a test SMS and follow it, resume a paused account. What it shows is in views.py.

Every function takes the `Session` the route checked; nothing here trusts the browser. Nothing
returned carries a gateway key, an OAuth token or the decrypted HighLevel context.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from castbridge import accounts
from castbridge.gateways.base import (
    DeliveryStatus,
    GatewayError,
    SendRequest,
)
from castbridge.gateways.directory import AccountUnusable
from castbridge.gateways.registry import UnknownGateway, spec
from castbridge.ghl.errors import GHLError
from castbridge.ghl.sso import UserContext
from castbridge.inbound.optouts import refusal_text
from castbridge.logging import get_logger, scrub_text
from castbridge.settings_page.session import Sealer, Session, SessionError
from castbridge.sms.phone import InvalidNumber, normalize
from castbridge.store import accounts as account_store
from castbridge.store import events, installations
from castbridge.store import optouts as optout_store
from castbridge.store.installations import InstallationInfo
from castbridge.store.models import GatewayAccount

if TYPE_CHECKING:
    from castbridge.resources import Resources

log = get_logger(__name__)

GATEWAY_CALL_SECONDS = 10.0  # a page load never waits longer than this for one gateway call
TEST_TEXT = "castbridge test message: your SMS gateway is connected to HighLevel."
SENDER_RE = re.compile(r"^[A-Za-z0-9 +.\-]{1,15}$")
COUNTRY_RE = re.compile(r"^[A-Za-z]{2}$")
SERVED_STATES = ("active", "paused", "needs_reinstall", "pending")
USERS_SCOPE = "users.readonly"
NOT_CONFIRMED = (
    "HighLevel does not confirm that your user may open this sub-account. Reopen this page from "
    "the castbridge menu inside HighLevel, or ask an admin for access."
)


class Refused(Exception):
    """The request is refused; `status` is the HTTP status, `str()` a sentence for the user."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def utcnow() -> datetime:
    return datetime.now(UTC)


def subject_of(context: UserContext) -> str:
    """A handle for the user that names nobody (rate limits, audit)."""
    digest = hashlib.sha256(f"{context.company_id}:{context.user_id}".encode()).hexdigest()
    return digest[:24]


def _served(info: InstallationInfo | None, company_id: str) -> bool:
    return info is not None and info.state in SERVED_STATES and info.company_id == company_id


async def grant(
    resources: Resources, sealer: Sealer, context: UserContext
) -> tuple[Session, dict[str, Any]]:
    """A session for a verified user: in a sub-account only if it is installed under the same
    company; in the agency view only if the company has castbridge installed somewhere."""
    ttl = resources.settings.settings_session_seconds
    info: InstallationInfo | None = None
    async with resources.store.read() as db:
        if context.active_location is not None:
            info = await installations.get_installation(db, context.active_location)
            if info is None or not _served(info, context.company_id):
                raise Refused(
                    401,
                    "castbridge is not installed in this sub-account. Install the castbridge app "
                    "in this sub-account from the HighLevel Marketplace, then reopen this page.",
                )
        elif not await company_locations(resources, context.company_id, db=db):
            raise Refused(
                401,
                "castbridge is not installed in any sub-account of this agency. Install it "
                "from the HighLevel Marketplace, then reopen this page.",
            )
    location_id = context.active_location
    if info is not None and location_id is not None:
        can_edit = await confirmed_editor(
            resources, info, context.user_id, location_id, payload_admin=context.can_edit
        )
    else:
        # No location token to ask HighLevel with: the agency list is read-only data, and
        # opening a sub-account from it is confirmed then (`open_location`).
        can_edit = context.can_edit
    session = Session(
        company_id=context.company_id,
        location_id=location_id,
        can_edit=can_edit,
        user_name=context.user_name,
        subject=subject_of(context),
        expires_at=sealer.now() + ttl,
        user_id=context.user_id,
    )
    return session, public_view(session)


async def confirmed_editor(
    resources: Resources,
    info: InstallationInfo,
    user_id: str,
    location_id: str,
    *,
    payload_admin: bool,
    agency_only: bool = False,
) -> bool:
    """May this user edit? The payload has no MAC or expiry, so where the installation granted
    `users.readonly` HighLevel's own user record decides (ghl.md §13): the user must reach the
    location (an agency user, or the location in `roles.locationIds`), and edits need the
    payload's admin role and HighLevel's (`roles.role` admin or `settingsEnabled`). Refused
    when HighLevel denies the user; 503 when it cannot answer now (fail closed)."""
    if USERS_SCOPE not in (info.scope or "").split():
        return payload_admin
    try:
        user = await asyncio.wait_for(
            resources.ghl.get_user(location_id, user_id), GATEWAY_CALL_SECONDS
        )
    except (TimeoutError, GHLError) as exc:
        if isinstance(exc, TimeoutError) or exc.retryable:
            raise Refused(
                503, "HighLevel could not confirm your user just now; reopen the page in a minute."
            ) from None
        log.info("settings_user_not_confirmed", location_id=location_id, status=exc.status_code)
        raise Refused(401, NOT_CONFIRMED) from None
    roles = user.roles
    reaches = roles.type == "agency" or location_id in roles.location_ids
    if user.id != user_id or not reaches or (agency_only and roles.type != "agency"):
        raise Refused(401 if not agency_only else 403, NOT_CONFIRMED)
    return payload_admin and (roles.role == "admin" or user.settings_enabled)


def public_view(session: Session) -> dict[str, Any]:
    """What the page may know about its own session."""
    return {
        "userName": session.user_name,
        "role": "admin" if session.can_edit else "user",
        "readOnly": session.read_only,
        "view": "location" if session.location_id else "agency",
        "locationId": session.location_id,
        "fromAgency": session.agency,
    }


async def company_locations(
    resources: Resources, company_id: str, *, db: Any = None
) -> list[InstallationInfo]:
    """The company's installed sub-accounts (uninstalled ones are left out)."""
    if db is None:
        async with resources.store.read() as session:
            rows = await installations.list_installations(session)
    else:
        rows = await installations.list_installations(db)
    return [
        row
        for row in rows
        if row.location_id and row.company_id == company_id and row.state in SERVED_STATES
    ]


async def open_location(
    resources: Resources, sealer: Sealer, session: Session, location_id: str
) -> tuple[Session, dict[str, Any]]:
    """An agency admin opens one of the agency's sub-accounts (never one of another company)."""
    if session.location_id is not None or not session.can_edit:
        raise Refused(403, "Only an agency admin can open a sub-account from the agency view.")
    async with resources.store.read() as db:
        info = await installations.get_installation(db, location_id)
    if info is None or not _served(info, session.company_id):
        raise Refused(404, "That sub-account has no castbridge installation in this agency.")
    can_edit = await confirmed_editor(
        resources, info, session.user_id, location_id, payload_admin=True, agency_only=True
    )
    opened = Session(
        company_id=session.company_id,
        location_id=location_id,
        can_edit=can_edit,
        user_name=session.user_name,
        subject=session.subject,
        expires_at=session.expires_at,
        agency=True,
        user_id=session.user_id,
    )
    return opened, public_view(opened)


async def gateway_call(coro: Any) -> Any:
    """Await one gateway call, never longer than GATEWAY_CALL_SECONDS (a person is waiting)."""
    return await asyncio.wait_for(coro, GATEWAY_CALL_SECONDS)


# --- changing things (admins only) -----------------------------------------------------------


def require_editor(session: Session) -> str:
    if session.read_only or session.location_id is None:
        raise Refused(403, "Your HighLevel role can view this page but not change it.")
    return session.location_id


async def configure(resources: Resources, session: Session, form: dict[str, Any]) -> str:
    """Save the gateway, key, sender, channel and country; a new key is checked live first."""
    location_id = require_editor(session)

    def text(name: str, limit: int) -> str | None:
        value = form.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or len(value) > limit:
            raise Refused(422, f"{name.replace('_', ' ')} is not valid")
        return value.strip() or None

    gateway = text("gateway", 24)
    api_key = text("api_key", 512)
    sender_id = text("sender_id", 15)
    channel = text("channel", 16)
    country = text("country", 2)
    if sender_id is not None and not SENDER_RE.match(sender_id):
        raise Refused(422, "Sender ID: letters, digits and spaces, at most 15 characters.")
    if country is not None:
        if not COUNTRY_RE.match(country):
            raise Refused(422, "Country: a two-letter country code such as PH.")
        country = country.upper()
    try:
        gateway_spec = spec(gateway) if gateway else None
    except UnknownGateway:
        raise Refused(422, "Choose one of the gateways in the list.") from None
    async with resources.store.read() as db:
        setup = await accounts.load_setup(db, resources.settings, location_id)
    current = setup.account.gateway if setup.account else None
    if api_key is None:
        if gateway_spec is not None and gateway_spec.name != current:
            raise Refused(
                422, f"Paste the {gateway_spec.capabilities.label} API key to switch gateway."
            )
        if current is None:
            raise Refused(422, "Choose the gateway and paste its API key.")
        caps = spec(current).capabilities
        if channel is not None and channel not in caps.channels:
            raise Refused(422, f"{caps.label} has no {channel!r} channel.")
    try:
        await accounts.configure_location(
            resources.store,
            resources.gateways,
            resources.settings,
            resources.box,
            location_id,
            gateway=gateway_spec.name if gateway_spec else current,
            api_key=api_key,
            sender_id=sender_id,
            channel=channel,
            region=country,
        )
    except accounts.ConfigureError as exc:
        raise Refused(422, scrub_text(str(exc))) from None
    resources.forget_location(location_id)
    async with resources.store.write() as db:
        await events.add_audit(
            db,
            "settings_page_configured",
            location_id=location_id,
            company_id=session.company_id,
            detail={"by": session.subject, "new_key": api_key is not None},
        )
    return "Saved. The key was checked with the gateway." if api_key else "Saved."


async def resume(resources: Resources, session: Session) -> str:
    location_id = require_editor(session)
    async with resources.store.read() as db:
        setup = await accounts.load_setup(db, resources.settings, location_id)
    account = setup.account
    if account is None or account.owner_location_id != location_id:
        raise Refused(409, "This sub-account has no gateway account of its own to resume.")
    async with resources.store.write() as db:
        done = await accounts.resume(db, account.id, by="settings_page")
        if done:
            await events.add_audit(
                db, "account_resumed", location_id=location_id, detail={"account": account.id}
            )
    resources.forget_location(location_id)
    if not done:
        raise Refused(409, "The account is not paused.")
    return "Resumed: held messages go out now (it pauses again if the gateway still refuses)."


async def _account_row(resources: Resources, location_id: str) -> GatewayAccount:
    async with resources.store.read() as db:
        setup = await accounts.load_setup(db, resources.settings, location_id)
        row = await account_store.get(db, setup.account.id) if setup.account else None
    if row is None or setup.account is None:
        raise Refused(409, "Set up a gateway first: choose it, paste its API key and Save.")
    return row


async def send_test(
    resources: Resources, sealer: Sealer, session: Session, to: str
) -> dict[str, Any]:
    """Send one test SMS on the location's account; returns a sealed handle to follow it."""
    location_id = require_editor(session)
    row = await _account_row(resources, location_id)
    async with resources.store.read() as db:
        setup = await accounts.load_setup(db, resources.settings, location_id)
    if not isinstance(to, str) or not to.strip() or len(to) > 32:
        raise Refused(422, "Test number: type the mobile number to send the test to.")
    region = setup.region or spec(row.gateway).capabilities.country
    try:
        e164 = normalize(to, region)
    except InvalidNumber as exc:
        raise Refused(422, f"Test number: {exc.reason}") from None
    async with resources.store.read() as db:
        opted_out = await optout_store.active(db, location_id, resources.vault.hash(e164))
    if opted_out is not None:
        # A test is still a message to that person: STOP holds for it like for any other.
        raise Refused(409, f"Test number: {refusal_text(opted_out)}")
    channel = setup.channel or row.channel
    try:
        gateway = resources.gateways.gateway(row)
        gateway.validate(e164, TEST_TEXT, channel)
        result = await gateway_call(
            gateway.send(
                SendRequest(
                    to_e164=e164,
                    text=TEST_TEXT,
                    reference=f"{location_id}:test-{uuid.uuid4().hex[:16]}",
                    sender_id=setup.sender_id,
                    channel=channel,
                )
            )
        )
    except AccountUnusable as exc:
        raise Refused(409, exc.message) from None
    except GatewayError as exc:
        return {"status": "failed", "reason": scrub_text(exc.message), "handle": None}
    except TimeoutError:
        return {"status": "failed", "reason": "the gateway did not answer in time", "handle": None}
    log.info("settings_test_sms", location_id=location_id, gateway=row.gateway)
    if result.gateway_message_id is None or not gateway.capabilities.status_poll:
        return {
            "status": "accepted",
            "reason": "the gateway took the message; it reports delivery only to castbridge's "
            "webhook",
            "handle": None,
        }
    handle = sealer.seal(
        {
            "kind": "test_sms",
            "location": location_id,
            "account": row.id,
            "id": result.gateway_message_id,
            "to": e164,
            "channel": channel,
            "at": utcnow().isoformat(),
        }
    )
    return {"status": "accepted", "reason": "", "handle": handle}


async def test_status(
    resources: Resources, sealer: Sealer, session: Session, handle: str
) -> dict[str, Any]:
    """The test SMS's current status, asked of the gateway now."""
    location_id = require_editor(session)
    try:
        body = sealer.open(handle, kind="test_sms")
    except SessionError:
        raise Refused(404, "No such test message.") from None
    if body.get("location") != location_id:
        raise Refused(404, "No such test message.")
    row = await _account_row(resources, location_id)
    if row.id != body.get("account"):
        raise Refused(409, "The gateway account changed since the test was sent.")
    try:
        status: DeliveryStatus = await gateway_call(
            resources.gateways.gateway(row).status(
                str(body["id"]),
                str(body["channel"]),
                to_e164=str(body["to"]),
                sent_at=datetime.fromisoformat(str(body["at"])),
            )
        )
    except (GatewayError, TimeoutError, AccountUnusable):
        return {"status": "accepted", "reason": "", "final": False}
    if status.state == "delivered":
        return {"status": "delivered", "reason": "", "final": True}
    if status.state == "failed":
        reason = status.error_message or status.error_code or status.raw_status
        return {"status": "failed", "reason": scrub_text(reason or ""), "final": True}
    return {"status": "accepted", "reason": "", "final": status.terminal}
