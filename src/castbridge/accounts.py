"""Gateway accounts as the business sees them: which account a location sends on, the operator's
default accounts, configuring a location's own key, and pausing an account that is refused.

Rules (gateways.md §6): a message is pinned to the account it was queued on; a location that
has, or ever had, an account of its own never falls back to the operator's default account;
an account whose key or credits are refused is paused (its queued sends held, not failed one
by one), probed slowly, and resumed when the gateway accepts again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from castbridge import metrics
from castbridge.config import Settings
from castbridge.gateways.base import GatewayError, InsufficientCreditsError
from castbridge.gateways.directory import AccountView, GatewayDirectory, fingerprint
from castbridge.gateways.registry import default_key, spec
from castbridge.logging import get_logger
from castbridge.secrets import SecretBox
from castbridge.store import accounts as account_store
from castbridge.store import installations, jobs, messages
from castbridge.store.db import Store
from castbridge.store.jobs import NewJob
from castbridge.store.models import GatewayAccount

log = get_logger(__name__)

NO_ACCOUNT_CODE = "SMS_NOT_CONFIGURED"
NO_ACCOUNT_TEXT = (
    "SMS is not set up for this sub-account, so the message was not sent. Open the castbridge "
    "settings page in this sub-account (or ask your agency) and add your SMS gateway's API key, "
    "then send the message again."
)
MAX_PROBE_GAP = timedelta(minutes=15)
SETUP_TTL_SECONDS = 2.0  # how long a process trusts its cached view of a location's set-up


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class LocationSetup:
    """Everything intake needs to know about a location, read in one go and cached briefly."""

    location_id: str
    install_state: str | None  # None: never seen; "pending": its agency is installed
    company_id: str | None
    company_active: bool
    account: AccountView | None
    refusal: tuple[str, str] | None  # (code, sentence) when no account may be used
    region: str | None
    sender_id: str | None
    channel: str | None


async def load_setup(session: AsyncSession, settings: Settings, location_id: str) -> LocationSetup:
    install = await installations.get_installation(session, location_id)
    company_id = install.company_id if install is not None else None
    company_active = False
    if company_id:
        company = await installations.get_company_installation(session, company_id)
        company_active = company is not None and company.active
    row = await account_store.location(session, location_id)
    account_row: GatewayAccount | None = None
    refusal: tuple[str, str] | None = None
    if row is not None and row.account_id is not None:
        account_row = await account_store.get(session, row.account_id)
        if account_row is None or account_row.state == "retired":
            account_row, refusal = None, (NO_ACCOUNT_CODE, NO_ACCOUNT_TEXT)
    elif row is not None and row.had_own_account:
        refusal = (NO_ACCOUNT_CODE, NO_ACCOUNT_TEXT)
    elif settings.default_account_allowed(location_id, company_id):
        account_row = await account_store.env_account(session, settings.default_gateway)
        if account_row is None:
            refusal = (NO_ACCOUNT_CODE, NO_ACCOUNT_TEXT)
    else:
        refusal = (NO_ACCOUNT_CODE, NO_ACCOUNT_TEXT)
    account = AccountView.of(account_row) if account_row is not None else None
    return LocationSetup(
        location_id=location_id,
        install_state=install.state if install is not None else None,
        company_id=company_id,
        company_active=company_active,
        account=account,
        refusal=refusal,
        region=(row.region if row is not None else None)
        or (account.region if account is not None else None)
        or settings.default_region
        or (spec(account.gateway).capabilities.country if account is not None else None),
        sender_id=(row.sender_id if row is not None else None)
        or (account.sender_id if account is not None else None),
        channel=(row.channel if row is not None else None)
        or (account.channel if account is not None else None),
    )


class SetupCache:
    """Per-process memory of `load_setup` for a couple of seconds: intake reads it on every
    webhook. The worker never relies on it: it re-reads account and install state per job."""

    def __init__(self, ttl: float = SETUP_TTL_SECONDS) -> None:
        self._ttl = ttl
        self._entries: dict[str, tuple[float, LocationSetup]] = {}
        self._loading: dict[str, asyncio.Future[LocationSetup]] = {}

    async def load(
        self, location_id: str, loader: Callable[[], Awaitable[LocationSetup]]
    ) -> LocationSetup:
        """The cached set-up, else `loader()`'s, read once however many callers wait for it
        (a burst of webhooks arriving as the entry runs out would otherwise each read it:
        a tenth of intake's time in the profile)."""
        cached = self.get(location_id)
        if cached is not None:
            return cached
        pending = self._loading.get(location_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[LocationSetup] = asyncio.get_running_loop().create_future()
        self._loading[location_id] = future
        try:
            setup = await loader()
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(exc)
                future.exception()  # marked as read: a failure nobody else awaited is no error
            raise
        else:
            self.put(setup)
            future.set_result(setup)
            return setup
        finally:
            del self._loading[location_id]

    def get(self, location_id: str) -> LocationSetup | None:
        entry = self._entries.get(location_id)
        if entry is None or time.monotonic() - entry[0] > self._ttl:
            return None
        return entry[1]

    def put(self, setup: LocationSetup) -> None:
        if len(self._entries) > 50_000:
            self._entries.clear()
        self._entries[setup.location_id] = (time.monotonic(), setup)

    def forget(self, location_id: str | None = None) -> None:
        if location_id is None:
            self._entries.clear()
        else:
            self._entries.pop(location_id, None)


# --- the operator's default accounts -------------------------------------------------------


async def sync_env_accounts(store: Store, directory: GatewayDirectory, box: SecretBox) -> None:
    """Make each gateway's environment default (its <NAME>_API_KEY, sender, channel) a stored
    account. A changed key gets a new account and the old one is retired, so messages pinned
    to the old key keep it for their retries; an unset key retires the account."""
    for name, defaults in directory.defaults.items():
        key = default_key(defaults)
        gateway_spec = spec(name)
        try:
            async with store.write() as session:
                current = await account_store.env_account(session, name)
                if key is None:
                    if current is not None:
                        await account_store.change(session, current.id, state="retired")
                        log.warning("default_account_retired", gateway=name, account_id=current.id)
                    continue
                channel = str(getattr(defaults, "channel", gateway_spec.default_channel))
                print_ = fingerprint(key)
                if current is not None and current.key_fingerprint == print_:
                    if (current.sender_id, current.channel) != (defaults.sender_id, channel):
                        await account_store.change(
                            session, current.id, sender_id=defaults.sender_id, channel=channel
                        )
                    continue
                if current is not None:
                    await account_store.change(session, current.id, state="retired")
                    log.warning("default_account_key_changed", gateway=name, retired=current.id)
                created = await account_store.create(
                    session,
                    account_store.NewAccount(
                        gateway=name,
                        origin="env",
                        api_key_enc=box.encrypt(key),
                        key_fingerprint=print_,
                        channel=channel,
                        sender_id=defaults.sender_id,
                        settings=gateway_spec.settings_from_defaults(defaults),
                        label=f"{gateway_spec.capabilities.label} default ({name.upper()}_API_KEY)",
                    ),
                )
                log.info("default_account_created", gateway=name, account_id=created.id)
        except IntegrityError:
            # Another process created the same default account at the same moment.
            log.info("default_account_created_elsewhere", gateway=name)


# --- pausing and probing -------------------------------------------------------------------


def probe_gap(settings: Settings, probes: int) -> timedelta:
    gap = settings.account_probe_seconds * 2.0 ** min(probes, 10)
    return min(timedelta(seconds=gap), max(MAX_PROBE_GAP, timedelta(seconds=1)))


async def pause(
    session: AsyncSession, settings: Settings, account_id: int, error: GatewayError | Any
) -> datetime:
    """Pause the account (the first refusal wins), hold its queued sends until the first probe,
    and queue that probe. Returns when held sends are next looked at."""
    # The kind of refusal decides what a probe must see before resuming: for credits, a
    # positive balance (a key check alone passes while the account is empty).
    kind = "credits" if isinstance(error, InsufficientCreditsError) else "access"
    code = f"{kind}:{getattr(error, 'code', None) or 'REFUSED'}"
    reason = getattr(error, "message", None) or str(error)
    next_probe = utcnow() + probe_gap(settings, 0)
    if await account_store.pause(
        session, account_id, code=code, reason=reason, next_probe_at=next_probe
    ):
        log.warning("account_paused", account_id=account_id, code=code, reason=reason)
        metrics.ACCOUNT_PAUSES.labels(str(code or "unknown")[:32]).inc()
    await messages.set_held(session, account_id, "account")
    await jobs.move_queued_sends(session, account_id=account_id, run_at=next_probe)
    await jobs.enqueue(
        session,
        NewJob(
            kind="probe",
            lane="admin",
            run_at=next_probe,
            account_id=account_id,
            singleton_key=f"probe:{account_id}",
        ),
    )
    return next_probe


async def resume(session: AsyncSession, account_id: int, *, by: str) -> bool:
    """Resume a paused account: its held sends become due now."""
    if not await account_store.resume(session, account_id):
        return False
    await messages.set_held(session, account_id, None)
    await jobs.move_queued_sends(session, account_id=account_id, run_at=utcnow())
    log.info("account_resumed", account_id=account_id, by=by)
    return True


def summary(row: GatewayAccount, *, locations: int | None = None) -> dict[str, Any]:
    """An account as the CLI and the settings page show it (no key)."""
    caps = spec(row.gateway).capabilities
    return {
        "id": row.id,
        "gateway": row.gateway,
        "label": row.label,
        "origin": row.origin,
        "owner_location": row.owner_location_id or "",
        "state": row.state,
        "reason": row.state_reason or "",
        "paused_since": row.paused_at.isoformat(timespec="seconds") if row.paused_at else "",
        "next_probe": row.next_probe_at.isoformat(timespec="seconds") if row.next_probe_at else "",
        "sender_id": row.sender_id or "",
        "channel": row.channel,
        "region": row.region or caps.country,
        "locations": locations,
    }


# --- configuring a location's own account ---------------------------------------------------


class ConfigureError(Exception):
    """The account could not be configured; `str()` is a sentence for the person doing it
    (for a refused key, the gateway's own message)."""


@dataclass(frozen=True, slots=True)
class Configured:
    account_id: int | None
    repinned: int
    webhooks: list[str]
    check: Any = None


async def configure_location(
    store: Store,
    directory: GatewayDirectory,
    settings: Settings,
    box: SecretBox,
    location_id: str,
    *,
    gateway: str | None,
    api_key: str | None = None,
    sender_id: str | None = None,
    channel: str | None = None,
    region: str | None = None,
    options: dict[str, Any] | None = None,
    verify: bool = True,
) -> Configured:
    """Give a location its own gateway account (with `api_key`), or change its sender,
    channel or region. A new key is checked live against the gateway before it is stored;
    queued messages that no attempt can have sent move to the new account, the others keep
    theirs (idempotency and reconciliation are scoped per key)."""
    if api_key is None:
        async with store.write() as session:
            await account_store.set_location(
                session, location_id, sender_id=sender_id, channel=channel, region=region
            )
        return Configured(None, 0, [])
    if gateway is None:
        raise ConfigureError("choose the gateway the key belongs to")
    gateway_spec = spec(gateway)
    caps = gateway_spec.capabilities
    problem = gateway_spec.check_key(api_key)
    if problem is not None:
        raise ConfigureError(problem)
    chosen_channel = channel or gateway_spec.default_channel
    if chosen_channel not in caps.channels:
        raise ConfigureError(f"{caps.label} has no {chosen_channel!r} channel")
    account_settings: dict[str, Any] = {
        **gateway_spec.settings_from_defaults(directory.defaults[gateway]),
        **(options or {}),
    }
    check = None
    if verify:
        probe = directory.build_for_key(
            gateway,
            api_key,
            account_id=0,
            sender_id=sender_id,
            channel=chosen_channel,
            settings=account_settings,
        )
        try:
            check = await probe.verify_credentials()
        except GatewayError as exc:
            raise ConfigureError(f"{caps.label} refused the key: {exc.message}") from None
        account_settings.update(check.settings_update)
    async with store.write() as session:
        row = await account_store.create(
            session,
            account_store.NewAccount(
                gateway=gateway,
                origin="location",
                owner_location_id=location_id,
                api_key_enc=box.encrypt(api_key),
                key_fingerprint=fingerprint(api_key),
                channel=chosen_channel,
                sender_id=sender_id,
                region=region,
                settings=account_settings,
                label=f"{location_id} ({caps.label})",
            ),
        )
        await account_store.set_location(
            session, location_id, account_id=row.id, region=region, clear_overrides=True
        )
        moved = await messages.repin_unattempted(
            session,
            location_id,
            row.id,
            gateway=gateway,
            sender_id=sender_id,
            channel=chosen_channel,
        )
        if moved:
            await jobs.repoint_sends(session, moved, row.id)
        if caps.inbound_poll:
            from castbridge.inbound.poll import poll_job

            await jobs.enqueue(session, poll_job(row.id))
        if caps.optout_list:
            from castbridge.inbound.optout_sync import sync_job

            await jobs.enqueue(session, sync_job(row.id))
        account_id, token = row.id, row.webhook_token
    registered: list[str] = []
    if caps.webhook_setup == "registered" and settings.public_url:
        registered = await register_webhooks(
            store, directory, account_id, gateway, token, settings.public_url
        )
    log.info(
        "location_account_configured",
        location_id=location_id,
        gateway=gateway,
        account_id=account_id,
        repinned=len(moved),
    )
    return Configured(account_id, len(moved), registered, check)


def webhook_url(public_url: str, gateway: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/webhooks/gateways/{gateway}/{token}"


async def register_webhooks(
    store: Store,
    directory: GatewayDirectory,
    account_id: int,
    gateway: str,
    token: str,
    public_url: str,
) -> list[str]:
    """Register castbridge's webhook URL with a gateway that takes registrations (CastBrick)
    and keep what it answered on the account (shown by `castbridge accounts show`)."""
    async with store.read() as session:
        row = await account_store.get(session, account_id)
    if row is None:
        return []
    url = webhook_url(public_url, gateway, token)
    try:
        done = await directory.gateway(row).register_webhooks(url)
    except GatewayError as exc:
        log.warning("webhook_registration_failed", account_id=account_id, error=str(exc))
        async with store.write() as session:
            await account_store.change(
                session, account_id, webhooks={"url": url, "error": exc.message[:300]}
            )
        return []
    async with store.write() as session:
        await account_store.change(
            session,
            account_id,
            webhooks={
                "url": url,
                "registered": [{"id": w.webhook_id, "event_type": w.event_type} for w in done],
            },
        )
    return [w.event_type for w in done]
