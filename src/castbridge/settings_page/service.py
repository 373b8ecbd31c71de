"""What the settings page does: grant a session for a verified HighLevel user, gather one
location's (or an agency's) set-up and health, configure a gateway, send a test SMS, resume.

Every function takes the `Session` the route checked; nothing here trusts the browser. Nothing
returned carries a gateway key, an OAuth token or the decrypted HighLevel context.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from castbridge import accounts
from castbridge.gateways.base import (
    Balance,
    CredentialsError,
    DeliveryStatus,
    Gateway,
    GatewayError,
    InsufficientCreditsError,
    SendRequest,
    UnsupportedError,
)
from castbridge.gateways.directory import AccountUnusable
from castbridge.gateways.registry import SPECS, UnknownGateway, spec
from castbridge.ghl.errors import GHLError
from castbridge.ghl.sso import UserContext
from castbridge.logging import get_logger, mask_phone, scrub_text
from castbridge.settings_page.health import Health, chart_svg, summarise
from castbridge.settings_page.session import Sealer, Session, SessionError
from castbridge.sms.phone import InvalidNumber, normalize
from castbridge.store import accounts as account_store
from castbridge.store import events, installations, messages, optouts
from castbridge.store import health as health_store
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


# --- reading the set-up and health -----------------------------------------------------------


@dataclass(slots=True)
class Diagnosis:
    check: str
    ok: bool | None  # None: could not tell
    sentence: str


@dataclass(slots=True)
class LocationPage:
    location_id: str
    read_only: bool
    install_state: str | None
    install_reason: str | None
    account: dict[str, Any] | None
    gateways: list[dict[str, Any]]
    sender_ids: list[str]
    webhook: dict[str, Any] | None
    two_way: str
    balance: str | None
    key_problem: str | None
    health: Health
    chart: str
    recent: list[dict[str, Any]]
    optouts: int
    diagnosis: list[Diagnosis] = field(default_factory=list)


async def _gateway_call(coro: Any) -> Any:
    return await asyncio.wait_for(coro, GATEWAY_CALL_SECONDS)


def _balance_text(balance: Balance | None) -> str | None:
    if balance is None:
        return None
    if balance.unit == "money":
        return f"{balance.amount:,.2f} {balance.currency}"
    return f"{balance.amount:,.0f} {balance.currency}"


def _two_way(gateway: str, sender_id: str | None) -> str:
    caps = spec(gateway).capabilities
    if caps.two_way == "yes":
        return f"Replies reach HighLevel: {caps.label} passes them to castbridge."
    if caps.two_way == "numeric_sender_only":
        if sender_id and sender_id.lstrip("+").isdigit():
            return f"Replies reach HighLevel: the sender {sender_id} is a number."
        return (
            "One-way: replies are not possible with an alphanumeric sender ID. Use a "
            f"{caps.label} phone number as the sender to receive replies."
        )
    return f"One-way: {caps.label} cannot pass replies on, so recipients cannot answer."


async def location_page(resources: Resources, session: Session) -> LocationPage:
    """Everything the location view shows, with a few live gateway calls (bounded in time)."""
    assert session.location_id is not None
    location_id = session.location_id
    settings = resources.settings
    now = utcnow()
    async with resources.store.read() as db:
        info = await installations.get_installation(db, location_id)
        setup = await accounts.load_setup(db, settings, location_id)
        row = await account_store.get(db, setup.account.id) if setup.account else None
        outcomes = (await health_store.outcomes_since(db, [location_id], now - timedelta(days=7)))[
            location_id
        ]
        earlier = await health_store.count_before(db, location_id, now - timedelta(hours=24))
        recent_rows = await messages.list_messages(db, location_id=location_id, limit=50)
        optout_count = (await optouts.counts(db, [location_id])).get(location_id, 0)
    health = summarise(outcomes, now)
    account: dict[str, Any] | None = None
    webhook: dict[str, Any] | None = None
    sender_ids: list[str] = []
    balance_text: str | None = None
    key_problem: str | None = None
    credits_empty: bool | None = None
    two_way = "Set up a gateway to see whether replies are possible."
    if row is not None:
        caps = spec(row.gateway).capabilities
        account = {
            **accounts.summary(row),
            "gateway_label": caps.label,
            "own": row.origin == "location" and row.owner_location_id == location_id,
            "sender_id": setup.sender_id or "",
            "channel": setup.channel or row.channel,
            "region": setup.region or caps.country,
        }
        two_way = _two_way(row.gateway, setup.sender_id)
        if caps.webhook_setup != "none" and not session.read_only:
            base = settings.public_url or "https://<CASTBRIDGE_PUBLIC_URL>"
            stored = row.webhooks or {}
            registered = [str(w.get("event_type")) for w in stored.get("registered") or []]
            webhook = {
                "url": accounts.webhook_url(base, row.gateway, row.webhook_token),
                "manual": caps.webhook_setup == "manual",
                "registered": registered,
                "error": stored.get("error", ""),
                "label": caps.label,
            }
        key_problem, balance, sender_ids = await _live_checks(resources, row)
        # The operator's default account is shared: its balance is not the sub-account's to see.
        balance_text = _balance_text(balance) if account["own"] else "managed by your agency"
        if balance is not None:
            credits_empty = balance.amount <= 0
        elif key_problem is not None and key_problem.startswith("credits:"):
            credits_empty = True
    page = LocationPage(
        location_id=location_id,
        read_only=session.read_only,
        install_state=info.state if info is not None else None,
        install_reason=info.state_reason if info is not None else None,
        account=account,
        gateways=[
            {
                "name": name,
                "label": gateway_spec.capabilities.label,
                "channels": list(gateway_spec.capabilities.channels),
                "country": gateway_spec.capabilities.country,
            }
            for name, gateway_spec in SPECS.items()
        ],
        sender_ids=sender_ids,
        webhook=webhook,
        two_way=two_way,
        balance=balance_text,
        key_problem=key_problem,
        health=health,
        chart=chart_svg(health.days),
        recent=[
            {
                "at": m.created_at.strftime("%Y-%m-%d %H:%M"),
                "to": m.phone_masked or mask_phone(""),
                "parts": m.gateway_parts or m.parts_estimate or "",
                "status": m.status,
                "reason": scrub_text(m.error_message or "")[:200],
            }
            for m in recent_rows
        ],
        optouts=optout_count,
    )
    page.diagnosis = diagnose(page, credits_empty=credits_empty, earlier=earlier)
    return page


async def _live_checks(
    resources: Resources, row: GatewayAccount
) -> tuple[str | None, Balance | None, list[str]]:
    """(problem with the key, balance, approved sender IDs), asking the gateway now."""
    try:
        gateway = resources.gateways.gateway(row)
    except AccountUnusable as exc:
        return f"key:{exc.message}", None, []
    problem: str | None = None
    balance: Balance | None = None
    try:
        check = await _gateway_call(gateway.verify_credentials())
        balance = check.balance
    except InsufficientCreditsError as exc:
        problem = f"credits:{exc.message}"
    except CredentialsError as exc:
        problem = f"key:{exc.message}"
    except GatewayError as exc:
        problem = f"unreachable:{exc.message}"
    except TimeoutError:
        problem = "unreachable:the gateway did not answer in time"
    if problem is None and balance is None:
        balance = await _optional(gateway, "balance")
    senders: list[str] = []
    if problem is None and gateway.capabilities.sender_ids_api:
        found = await _optional(gateway, "sender_ids")
        senders = sorted({s.sender_id for s in found or []})
    return problem, balance, senders


async def _optional(gateway: Gateway, method: str) -> Any:
    try:
        return await _gateway_call(getattr(gateway, method)())
    except (GatewayError, UnsupportedError, TimeoutError):
        return None


def diagnose(page: LocationPage, *, credits_empty: bool | None, earlier: int) -> list[Diagnosis]:
    """ "SMS stopped working?": each check in order, one sentence with the fix."""
    found: list[Diagnosis] = []
    state = page.install_state
    if state == "active":
        found.append(Diagnosis("Installation", True, "castbridge is installed and connected."))
    elif state == "needs_reinstall":
        found.append(
            Diagnosis(
                "Installation",
                False,
                "HighLevel no longer accepts castbridge's access for this sub-account: "
                "reinstall the castbridge app from the Marketplace.",
            )
        )
    else:
        found.append(
            Diagnosis(
                "Installation",
                False,
                f"The installation is {state or 'missing'}"
                + (f" ({page.install_reason})" if page.install_reason else "")
                + ": it resumes by itself; if it stays so, reinstall the app.",
            )
        )
    problem = page.key_problem or ""
    if page.account is None:
        found.append(
            Diagnosis(
                "Gateway key",
                False,
                "No SMS gateway is set up: choose your gateway, paste its API key and Save.",
            )
        )
    elif problem.startswith("key:"):
        found.append(
            Diagnosis(
                "Gateway key",
                False,
                f"The gateway refused the API key ({problem[4:]}): paste a valid key and Save.",
            )
        )
    elif problem.startswith("unreachable:"):
        found.append(
            Diagnosis(
                "Gateway key",
                None,
                f"The gateway could not be asked ({problem[12:]}): try again in a minute.",
            )
        )
    else:
        found.append(Diagnosis("Gateway key", True, "The gateway accepts the API key."))
    if credits_empty:
        found.append(
            Diagnosis(
                "Credits", False, "The account has no credits left: top it up at the gateway."
            )
        )
    elif page.account is not None and credits_empty is False:
        found.append(
            Diagnosis(
                "Credits",
                True,
                f"Credits left: {page.balance}."
                if page.account.get("own")
                else "The agency's default account has credits.",
            )
        )
    else:
        found.append(Diagnosis("Credits", None, "The balance could not be read."))
    if page.account is not None and page.account["state"] == "paused":
        found.append(
            Diagnosis(
                "Account",
                False,
                f"Sending is paused ({page.account['reason'] or 'the gateway refused'}): fix the "
                "cause, then press Resume (castbridge also retries by itself).",
            )
        )
    else:
        found.append(Diagnosis("Account", True, "Sending is not paused."))
    if page.health.last_24h == 0 and earlier > 0:
        found.append(
            Diagnosis(
                "HighLevel traffic",
                False,
                "HighLevel sent no SMS here in the last 24 hours although it did before: check "
                "that castbridge is still the SMS provider (Settings → Phone Numbers → Advanced "
                "Settings → SMS Provider).",
            )
        )
    else:
        found.append(
            Diagnosis(
                "HighLevel traffic",
                True,
                f"{page.health.last_24h} message(s) from HighLevel in the last 24 hours.",
            )
        )
    error_rate = page.health.error_rate
    if error_rate is not None and error_rate > 0.05:
        found.append(
            Diagnosis(
                "Error rate",
                False,
                f"{error_rate:.0%} of finished messages failed in 7 days: read the reasons in "
                "the list below (invalid numbers, sender ID not approved, …) and fix them.",
            )
        )
    else:
        found.append(Diagnosis("Error rate", True, "5 % or fewer messages failed in 7 days."))
    recipients = page.health.recipients
    optout_rate = page.optouts / recipients if recipients else 0.0
    if optout_rate > 0.01:
        found.append(
            Diagnosis(
                "Opt-outs",
                False,
                f"{page.optouts} opted-out numbers for {recipients} recipients this week "
                f"({optout_rate:.0%}): review how often and to whom you send.",
            )
        )
    else:
        found.append(Diagnosis("Opt-outs", True, "1 % or fewer recipients opted out."))
    return found


async def agency_page(resources: Resources, session: Session) -> list[dict[str, Any]]:
    """The agency's sub-accounts with each one's gateway, state and last-24-hour health."""
    locations = await company_locations(resources, session.company_id)
    ids = [info.location_id for info in locations if info.location_id]
    now = utcnow()
    rows: list[dict[str, Any]] = []
    async with resources.store.read() as db:
        outcomes = await health_store.outcomes_since(db, ids, now - timedelta(hours=24))
        for info in locations:
            assert info.location_id is not None
            setup = await accounts.load_setup(db, resources.settings, info.location_id)
            day = summarise(outcomes.get(info.location_id, []), now, days=1)
            label = "not set up"
            if setup.account is not None:
                label = spec(setup.account.gateway).capabilities.label
                if setup.account.origin == "env":
                    label += " (default account)"
            rows.append(
                {
                    "location_id": info.location_id,
                    "gateway": label,
                    "state": info.state
                    if setup.account is None or setup.account.state == "active"
                    else f"{info.state}, account {setup.account.state}",
                    "total": day.total,
                    "delivered": day.delivered,
                    "failed": day.failed,
                    "rate": f"{day.delivery_rate:.0%}" if day.delivery_rate is not None else "-",
                }
            )
    return rows


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
    channel = setup.channel or row.channel
    try:
        gateway = resources.gateways.gateway(row)
        gateway.validate(e164, TEST_TEXT, channel)
        result = await _gateway_call(
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
        status: DeliveryStatus = await _gateway_call(
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
