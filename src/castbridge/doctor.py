"""`castbridge doctor`: every check an operator runs before blaming castbridge, with fixes.

Configuration, database reachability and migration state, HighLevel credentials (a cheap
authenticated call per installation, a few at most), each gateway account (key valid, balance)
and the clock against the database's. Each check yields rows; a row with status "problem"
makes the verdict unhealthy (the CLI exits non-zero).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from castbridge.config import ConfigError, Settings, load_settings

Status = Literal["ok", "warning", "problem", "skipped"]

# Leases and due times are computed on the database's clock, HighLevel's webhook timestamps
# and OAuth expiries on this host's: more than this apart and both go wrong.
MAX_SKEW_SECONDS = 5.0
# Installations probed with an authenticated call (agencies first): enough to prove the app's
# credentials and catch a revoked grant, without one call per location of a large agency.
MAX_INSTALLS_CHECKED = 5
CHECK_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True, slots=True)
class Check:
    check: str
    status: Status
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def healthy(checks: list[Check]) -> bool:
    return not any(check.status == "problem" for check in checks)


def load_or_report() -> tuple[Settings | None, list[Check]]:
    """Settings from the environment, or the configuration errors as problems."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        return None, [
            Check("config", "problem", line, "fix the variable in the environment or .env")
            for line in str(exc).splitlines()
        ]
    return settings, []


async def diagnose(
    settings: Settings, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> list[Check]:
    """Run every check against `settings`; never raises for what it finds."""
    from castbridge.store import dialect, migrate
    from castbridge.store.db import create_engine

    checks = _config_checks(settings)
    try:
        engine = create_engine(
            settings.effective_database_url, sqlite_synchronous=settings.sqlite_synchronous
        )
    except (ConfigError, ValueError) as exc:
        return [*checks, Check("database", "problem", str(exc), "set CASTBRIDGE_DATABASE_URL")]
    try:
        try:
            await asyncio.wait_for(dialect.ping(engine), CHECK_TIMEOUT_SECONDS)
        except Exception as exc:
            checks.append(
                Check(
                    "database",
                    "problem",
                    f"unreachable: {type(exc).__name__}: {_short(exc)}",
                    "check CASTBRIDGE_DATABASE_URL, that the server runs and accepts this host",
                )
            )
            return checks
        checks.append(Check("database", "ok", f"reachable ({engine.dialect.name})"))
        current, head = await migrate.current_revision(engine), migrate.head_revision()
        if current != head:
            checks.append(
                Check(
                    "migrations",
                    "problem",
                    f"schema at {current or 'empty'}, this release needs {head}",
                    "run `castbridge db upgrade` (also done when castbridge starts)",
                )
            )
            return checks
        checks.append(Check("migrations", "ok", f"at head {head}"))
        checks.append(await _clock_check(engine, clock))
    finally:
        await engine.dispose()
    checks.extend(await _live_checks(settings))
    return checks


def _config_checks(settings: Settings) -> list[Check]:
    from castbridge.ghl.keys import load_webhook_keys
    from castbridge.secrets import load_secret_box

    checks: list[Check] = []
    missing = settings.missing_for_highlevel()
    if missing:
        checks.append(
            Check(
                "config",
                "problem",
                "HighLevel settings missing: " + ", ".join(missing),
                "set them from the marketplace app's page (see README)",
            )
        )
    try:
        load_secret_box(settings)
    except Exception as exc:
        checks.append(
            Check(
                "config",
                "problem",
                f"encryption keys: {_short(exc)}",
                "set CASTBRIDGE_SECRET_KEYS (castbridge secrets generate)",
            )
        )
    try:
        if load_webhook_keys(settings.ghl_webhook_keys).empty and settings.ghl_require_signature:
            checks.append(
                Check(
                    "config",
                    "problem",
                    "no HighLevel webhook public keys: every webhook would be refused",
                    "set GHL_WEBHOOK_KEYS to HighLevel's published keys",
                )
            )
    except Exception as exc:
        checks.append(Check("config", "problem", f"GHL_WEBHOOK_KEYS: {_short(exc)}", ""))
    if not settings.ghl_require_signature:
        checks.append(
            Check(
                "config",
                "warning",
                "webhook signature checks are off",
                "unset GHL_REQUIRE_SIGNATURE outside local testing",
            )
        )
    if not checks:
        checks.append(Check("config", "ok", "settings load and are complete"))
    return checks


async def _clock_check(engine: Any, clock: Callable[[], datetime]) -> Check:
    from castbridge.store import dialect

    before = clock()
    database = await dialect.database_clock(engine)
    after = clock()
    if database is None:
        return Check("clock", "ok", "SQLite runs on this host's clock")
    mine = before + (after - before) / 2
    skew = (database - mine).total_seconds()
    if abs(skew) > MAX_SKEW_SECONDS:
        return Check(
            "clock",
            "problem",
            f"this host is {skew:+.1f} s off the database's clock",
            "run NTP (chrony, systemd-timesyncd) on this host and the database's",
        )
    return Check("clock", "ok", f"{skew:+.2f} s against the database")


async def _live_checks(settings: Settings) -> list[Check]:
    """HighLevel and gateway accounts, through the same resources the worker uses."""
    from castbridge.resources import open_resources

    try:
        async with open_resources(settings, with_worker=False) as resources:
            checks = await _highlevel_checks(resources)
            checks.extend(await _gateway_checks(resources))
            return checks
    except Exception as exc:
        return [Check("resources", "problem", f"could not start: {_short(exc)}", "")]


async def _highlevel_checks(resources: Any) -> list[Check]:
    from castbridge.ghl.errors import GHLError
    from castbridge.store import installations

    async with resources.store.read() as session:
        found = [i for i in await installations.list_installations(session) if i.active]
    if not found:
        return [
            Check(
                "highlevel",
                "warning",
                "no active installation yet: credentials not exercised",
                "install the app on a location (/oauth/install)",
            )
        ]
    checks: list[Check] = []
    for install in found[:MAX_INSTALLS_CHECKED]:
        who = f"{install.user_type.lower()} {install.resource_id}"
        try:
            if install.location_id is None and install.company_id is not None:
                await asyncio.wait_for(
                    resources.ghl.installed_locations(None, install.company_id),
                    CHECK_TIMEOUT_SECONDS,
                )
            elif install.location_id is not None:
                await asyncio.wait_for(
                    resources.ghl.search_conversations(install.location_id, "castbridge-doctor"),
                    CHECK_TIMEOUT_SECONDS,
                )
            checks.append(Check("highlevel", "ok", f"{who}: token accepted"))
        except (GHLError, TimeoutError, OSError) as exc:
            checks.append(
                Check(
                    "highlevel",
                    "problem",
                    f"{who}: {type(exc).__name__}: {_short(exc)}",
                    "reinstall the app there if the grant was revoked; check GHL_CLIENT_ID and "
                    "GHL_CLIENT_SECRET; `castbridge installations list` shows each state",
                )
            )
    if len(found) > MAX_INSTALLS_CHECKED:
        checks.append(
            Check("highlevel", "ok", f"{len(found) - MAX_INSTALLS_CHECKED} more not called")
        )
    return checks


async def _gateway_checks(resources: Any) -> list[Check]:
    from castbridge.gateways.base import GatewayError
    from castbridge.store import accounts as account_store

    async with resources.store.read() as session:
        rows = await account_store.list_accounts(session, include_retired=False)
    if not rows:
        return [
            Check(
                "gateway",
                "warning",
                "no gateway account configured",
                "set a gateway's API key (e.g. CAST_API_KEY) or configure a location",
            )
        ]
    checks: list[Check] = []
    for row in rows:
        who = f"account {row.id} ({row.gateway}, {row.origin}{_owner(row)})"
        if row.state == "paused":
            checks.append(
                Check(
                    "gateway",
                    "problem",
                    f"{who}: paused: {row.state_reason or row.state_code}",
                    "fix the key or top up; castbridge probes and resumes it by itself, "
                    "or `castbridge accounts resume`",
                )
            )
            continue
        try:
            gateway = resources.gateways.gateway(row)
            verified = await asyncio.wait_for(gateway.verify_credentials(), CHECK_TIMEOUT_SECONDS)
            balance = verified.balance or await asyncio.wait_for(
                gateway.balance(), CHECK_TIMEOUT_SECONDS
            )
        except (GatewayError, TimeoutError, OSError) as exc:
            checks.append(
                Check(
                    "gateway",
                    "problem",
                    f"{who}: {type(exc).__name__}: {_short(exc)}",
                    "check the API key (and the gateway's IP allow-list); "
                    "`castbridge accounts show` has the stored details",
                )
            )
            continue
        except Exception as exc:  # an adapter without a balance call, a parse error
            checks.append(Check("gateway", "warning", f"{who}: {_short(exc)}", ""))
            continue
        if balance.amount <= 0:
            checks.append(
                Check(
                    "gateway",
                    "problem",
                    f"{who}: key valid, balance {balance.amount:g} {balance.currency}",
                    "top up the account: sends will be refused",
                )
            )
        else:
            checks.append(
                Check(
                    "gateway",
                    "ok",
                    f"{who}: key valid, balance {balance.amount:g} {balance.currency}",
                )
            )
    return checks


def _owner(row: Any) -> str:
    return f" of {row.owner_location_id}" if row.owner_location_id else ""


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
