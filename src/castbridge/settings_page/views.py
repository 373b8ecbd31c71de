"""What the settings page shows: one location's set-up, live gateway checks, delivery health,
the "SMS stopped working?" diagnosis, and the agency's list of sub-accounts (read only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from castbridge import accounts
from castbridge.gateways.base import (
    Balance,
    CredentialsError,
    Gateway,
    GatewayError,
    InsufficientCreditsError,
    UnsupportedError,
)
from castbridge.gateways.directory import AccountUnusable
from castbridge.gateways.registry import SPECS, spec
from castbridge.logging import mask_phone, scrub_text
from castbridge.settings_page.health import Health, chart_svg, summarise
from castbridge.settings_page.service import company_locations, gateway_call, utcnow
from castbridge.settings_page.session import Session
from castbridge.store import accounts as account_store
from castbridge.store import health as health_store
from castbridge.store import installations, messages, optouts
from castbridge.store.models import GatewayAccount

if TYPE_CHECKING:
    from castbridge.resources import Resources


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
        check = await gateway_call(gateway.verify_credentials())
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
        return await gateway_call(getattr(gateway, method)())
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
