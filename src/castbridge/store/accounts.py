"""SQL for gateway accounts and the locations that point at them."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from castbridge.store import dialect
from castbridge.store.models import GatewayAccount, Location
from castbridge.store.text import clip, fit

ACCOUNT_STATES = frozenset({"active", "paused", "retired"})


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class NewAccount:
    gateway: str
    origin: str  # env | location
    api_key_enc: str
    key_fingerprint: str
    channel: str
    sender_id: str | None = None
    region: str | None = None
    settings: dict[str, Any] | None = None
    label: str = ""
    owner_location_id: str | None = None


async def create(session: AsyncSession, account: NewAccount) -> GatewayAccount:
    now = utcnow()
    row = GatewayAccount(
        gateway=account.gateway,
        origin=account.origin,
        owner_location_id=account.owner_location_id,
        label=fit(account.label, 100) or "",
        api_key_enc=account.api_key_enc,
        key_fingerprint=account.key_fingerprint,
        sender_id=fit(account.sender_id, 32),
        channel=account.channel,
        region=account.region,
        settings=dict(account.settings or {}),
        state="active",
        probes=0,
        webhook_token=secrets.token_urlsafe(32),
        webhooks={},
        version=1,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    await session.flush()
    return row


async def get(session: AsyncSession, account_id: int) -> GatewayAccount | None:
    return await session.get(GatewayAccount, account_id, populate_existing=True)


async def by_webhook_token(session: AsyncSession, token: str) -> GatewayAccount | None:
    return (
        await session.execute(
            select(GatewayAccount).where(GatewayAccount.webhook_token == token[:64])
        )
    ).scalar_one_or_none()


async def env_account(session: AsyncSession, gateway: str) -> GatewayAccount | None:
    """The operator's current default account of `gateway` (not retired)."""
    return (
        await session.execute(
            select(GatewayAccount)
            .where(
                GatewayAccount.gateway == gateway,
                GatewayAccount.origin == "env",
                GatewayAccount.state != "retired",
            )
            .order_by(GatewayAccount.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()


async def list_accounts(
    session: AsyncSession, *, include_retired: bool = False
) -> list[GatewayAccount]:
    query = select(GatewayAccount).order_by(GatewayAccount.id)
    if not include_retired:
        query = query.where(GatewayAccount.state != "retired")
    return list((await session.execute(query)).scalars().all())


async def change(session: AsyncSession, account_id: int, **values: Any) -> bool:
    """Update columns and bump `version` (so every process's cache notices)."""
    if "state_reason" in values:
        values["state_reason"] = clip(values["state_reason"])
    if "state_code" in values:
        values["state_code"] = fit(values["state_code"], 64)
    if "sender_id" in values:
        values["sender_id"] = fit(values["sender_id"], 32)
    result = await session.execute(
        update(GatewayAccount)
        .where(GatewayAccount.id == account_id)
        .values(**values, version=GatewayAccount.version + 1, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def save_inbound_cursor(
    session: AsyncSession, account_id: int, cursor: str | None, polled_at: datetime
) -> None:
    """Where reply polling resumes; not a change of the account (no version bump)."""
    await session.execute(
        update(GatewayAccount)
        .where(GatewayAccount.id == account_id)
        .values(inbound_cursor=cursor, inbound_polled_at=polled_at)
        .execution_options(synchronize_session=False)
    )


async def live_of_gateways(session: AsyncSession, gateways: Sequence[str]) -> list[GatewayAccount]:
    """Accounts (not retired) of the given gateways: what standing per-account jobs serve."""
    if not gateways:
        return []
    query = select(GatewayAccount).where(
        GatewayAccount.gateway.in_(list(gateways)), GatewayAccount.state != "retired"
    )
    return list((await session.execute(query)).scalars())


async def pause(
    session: AsyncSession,
    account_id: int,
    *,
    code: str | None,
    reason: str,
    next_probe_at: datetime,
) -> bool:
    """Pause an active account; False when it already was paused (first error wins)."""
    result = await session.execute(
        update(GatewayAccount)
        .where(GatewayAccount.id == account_id, GatewayAccount.state == "active")
        .values(
            state="paused",
            state_code=fit(code, 64),
            state_reason=clip(reason),
            paused_at=utcnow(),
            next_probe_at=next_probe_at,
            probes=0,
            version=GatewayAccount.version + 1,
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def resume(session: AsyncSession, account_id: int) -> bool:
    result = await session.execute(
        update(GatewayAccount)
        .where(GatewayAccount.id == account_id, GatewayAccount.state == "paused")
        .values(
            state="active",
            state_code=None,
            state_reason=None,
            paused_at=None,
            next_probe_at=None,
            probes=0,
            version=GatewayAccount.version + 1,
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def paused(session: AsyncSession) -> list[GatewayAccount]:
    return list(
        (await session.execute(select(GatewayAccount).where(GatewayAccount.state == "paused")))
        .scalars()
        .all()
    )


# --- locations --------------------------------------------------------------------------


async def location(session: AsyncSession, location_id: str) -> Location | None:
    return await session.get(Location, location_id, populate_existing=True)


async def list_locations(session: AsyncSession) -> list[Location]:
    return list((await session.execute(select(Location).order_by(Location.location_id))).scalars())


async def set_location(
    session: AsyncSession,
    location_id: str,
    *,
    account_id: int | None = None,
    sender_id: str | None = None,
    channel: str | None = None,
    region: str | None = None,
    clear_overrides: bool = False,
) -> None:
    """Point a location at its own account and/or set its overrides (None keeps a value)."""
    now = utcnow()
    values: dict[str, Any] = {}
    if account_id is not None:
        values["account_id"] = account_id
        values["had_own_account"] = True
    if clear_overrides:
        values.update(sender_id=None, channel=None)
    if sender_id is not None:
        values["sender_id"] = fit(sender_id, 32)
    if channel is not None:
        values["channel"] = channel
    if region is not None:
        values["region"] = region
    insert = dialect.insert(session, Location).values(
        location_id=location_id,
        had_own_account=account_id is not None,
        version=1,
        updated_at=now,
        **{k: v for k, v in values.items() if k != "had_own_account"},
    )
    await session.execute(
        insert.on_conflict_do_update(
            index_elements=["location_id"],
            set_={**values, "version": Location.version + 1, "updated_at": now},
        )
    )


async def retire_location_accounts(session: AsyncSession, location_ids: Sequence[str]) -> int:
    """UNINSTALL: crypto-shred the locations' own keys and retire their accounts; the location
    rows stay with `had_own_account`, so they can never fall back to the default account."""
    if not location_ids:
        return 0
    result = await session.execute(
        update(GatewayAccount)
        .where(
            GatewayAccount.origin == "location",
            or_(
                GatewayAccount.owner_location_id.in_(list(location_ids)),
                GatewayAccount.id.in_(
                    select(Location.account_id).where(Location.location_id.in_(list(location_ids)))
                ),
            ),
            GatewayAccount.state != "retired",
        )
        .values(
            state="retired",
            api_key_enc="",
            state_reason="location uninstalled",
            version=GatewayAccount.version + 1,
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    await session.execute(
        update(Location)
        .where(Location.location_id.in_(list(location_ids)))
        .values(version=Location.version + 1, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def rotate_secrets(session: AsyncSession, rotate: Any) -> int:
    """Re-encrypt every account key with `rotate` (SecretBox.rotate); returns how many."""
    rows = (
        await session.execute(
            select(GatewayAccount.id, GatewayAccount.api_key_enc).where(
                GatewayAccount.api_key_enc != ""
            )
        )
    ).all()
    for row in rows:
        await session.execute(
            update(GatewayAccount)
            .where(GatewayAccount.id == row.id)
            .values(api_key_enc=rotate(row.api_key_enc))
            .execution_options(synchronize_session=False)
        )
    return len(rows)
