"""Every SQL statement for installations (OAuth tokens), oauth states, seen webhooks and audit rows.

Repository functions take the caller's `AsyncSession` and never commit: the caller owns the
transaction. `StoreTokenStore` is the exception by design: it implements ghl/auth.py's
`TokenStore`, whose every operation is its own short transaction (the refresh lease must be
visible to other processes at once). Tokens are only ever stored encrypted with SecretBox.
"""

from __future__ import annotations

import secrets as pysecrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from castbridge.ghl.auth import GrantKey, StoredGrant
from castbridge.ghl.models import LocationTokenResponse, TokenResponse, UserType
from castbridge.logging import scrub_text
from castbridge.secrets import SecretBox
from castbridge.store import dialect
from castbridge.store.models import Installation, OAuthState

# pending: known to belong to an installed agency, its location token not minted yet.
STATES = frozenset({"active", "paused", "needs_reinstall", "uninstalled", "pending", "disabled"})
REASON_LIMIT = 500
MAX_STATE_CHARS = 128


def utcnow() -> datetime:
    return datetime.now(UTC)


def _insert(session: AsyncSession, model: type[Any]) -> Any:
    return dialect.insert(session, model)


def _reason(text: str | None) -> str | None:
    if text is None:
        return None
    text = scrub_text(text)
    return text if len(text) <= REASON_LIMIT else text[: REASON_LIMIT - 1] + "…"


@dataclass(frozen=True, slots=True)
class InstallationInfo:
    """An installation without its secrets: safe to print, log or return from an API."""

    id: int
    user_type: str
    resource_id: str
    location_id: str | None
    company_id: str | None
    state: str
    state_reason: str | None
    scope: str
    expires_at: datetime | None
    token_version: int
    retry_after: datetime | None
    has_access_token: bool
    has_refresh_token: bool
    created_at: datetime
    updated_at: datetime
    granted_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.state == "active" and self.has_access_token


def _info(row: Installation) -> InstallationInfo:
    return InstallationInfo(
        id=row.id,
        user_type=row.user_type,
        resource_id=row.resource_id,
        location_id=row.location_id,
        company_id=row.company_id,
        state=row.state,
        state_reason=row.state_reason,
        scope=row.scope,
        expires_at=row.expires_at,
        token_version=row.token_version,
        retry_after=row.retry_after,
        has_access_token=row.access_token_enc is not None,
        has_refresh_token=row.refresh_token_enc is not None,
        created_at=row.created_at,
        updated_at=row.updated_at,
        granted_at=row.granted_at,
    )


# --- installations -----------------------------------------------------------------------


async def upsert_installation(
    session: AsyncSession,
    box: SecretBox,
    tokens: TokenResponse | LocationTokenResponse,
    *,
    company_id: str | None = None,
    now: datetime | None = None,
) -> InstallationInfo:
    """Store a token pair from /oauth/token or /oauth/locationToken (install or reinstall).

    Location and Company grants converge on one row per (user_type, resource id), whichever of
    the OAuth callback and the INSTALL webhook comes first. The row becomes active, the lease
    and any pause are cleared and `token_version` moves on. `company_id` fills in the agency for
    minted location tokens, whose response does not carry it.
    """
    now = now or utcnow()
    user_type: UserType = tokens.user_type
    location_id = tokens.location_id if user_type == "Location" else None
    company = company_id or (tokens.company_id if isinstance(tokens, TokenResponse) else None)
    resource_id = location_id if user_type == "Location" else company
    if not resource_id:
        raise ValueError(f"a {user_type} token response without its {user_type.lower()} id")
    values: dict[str, Any] = {
        "location_id": location_id,
        "access_token_enc": box.encrypt(tokens.access_token),
        "refresh_token_enc": box.encrypt(tokens.refresh_token) if tokens.refresh_token else None,
        "expires_at": now + timedelta(seconds=float(tokens.expires_in)),
        "scope": tokens.scope,
        "state": "active",
        "state_reason": None,
        "refresh_lock_until": None,
        "refresh_lock_owner": None,
        "retry_after": None,
        "granted_at": now,
        "updated_at": now,
    }
    if company:
        values["company_id"] = company
    statement = (
        _insert(session, Installation)
        .values(
            user_type=user_type,
            resource_id=resource_id,
            token_version=1,
            created_at=now,
            **values,
        )
        .on_conflict_do_update(
            index_elements=["user_type", "resource_id"],
            set_={**values, "token_version": Installation.token_version + 1},
        )
        .returning(Installation.id)
    )
    row_id = (await session.execute(statement)).scalar_one()
    row = await session.get(Installation, row_id, populate_existing=True)
    assert row is not None
    return _info(row)


async def get_installation(session: AsyncSession, location_id: str) -> InstallationInfo | None:
    """The location's own (Location-token) installation."""
    row = await _row(session, GrantKey.location(location_id))
    return _info(row) if row is not None else None


async def get_company_installation(
    session: AsyncSession, company_id: str
) -> InstallationInfo | None:
    row = await _row(session, GrantKey.company(company_id))
    return _info(row) if row is not None else None


async def list_installations(session: AsyncSession) -> list[InstallationInfo]:
    """Every installation, agencies first, then locations, for `castbridge installations list`."""
    rows = (
        await session.execute(
            select(Installation).order_by(Installation.user_type, Installation.resource_id)
        )
    ).scalars()
    return [_info(row) for row in rows]


async def set_installation_state(
    session: AsyncSession,
    installation_id: int,
    state: str,
    *,
    reason: str | None = None,
    retry_after: datetime | None = None,
    token_version: int | None = None,
    now: datetime | None = None,
) -> bool:
    """Set `state` (active | paused | needs_reinstall | uninstalled) without touching tokens.

    With `token_version`, only if the row is still at that version (compare-and-swap).
    """
    if state not in STATES:
        raise ValueError(f"unknown installation state {state!r}")
    condition = Installation.id == installation_id
    if token_version is not None:
        condition = condition & (Installation.token_version == token_version)
    result = await session.execute(
        update(Installation)
        .where(condition)
        .values(
            state=state,
            state_reason=_reason(reason),
            retry_after=retry_after,
            refresh_lock_until=None,
            updated_at=now or utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def reset_needs_reinstall(session: AsyncSession, location_id: str) -> bool:
    """Operator action: a location wrongly marked needs_reinstall becomes active again (its
    tokens were kept), so the next call tries its refresh token once more."""
    result = await session.execute(
        update(Installation)
        .where(
            Installation.user_type == "Location",
            Installation.resource_id == location_id,
            Installation.state.in_(("needs_reinstall", "paused")),
            Installation.access_token_enc.is_not(None),
        )
        .values(state="active", state_reason=None, retry_after=None, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _uninstalled_values(now: datetime, reason: str) -> dict[str, Any]:
    # Nulling the ciphertexts is the crypto-shred; bumping token_version makes any refresh that
    # is in flight fail its compare-and-swap instead of resurrecting the tokens.
    return {
        "access_token_enc": None,
        "refresh_token_enc": None,
        "expires_at": None,
        "state": "uninstalled",
        "state_reason": reason,
        "refresh_lock_until": None,
        "refresh_lock_owner": None,
        "retry_after": None,
        "token_version": Installation.token_version + 1,
        "updated_at": now,
    }


async def uninstall_location(
    session: AsyncSession, location_id: str, *, now: datetime | None = None
) -> int:
    """UNINSTALL for a location: drop its tokens, keep the row as `uninstalled`. Rows changed."""
    result = await session.execute(
        update(Installation)
        .where(Installation.user_type == "Location", Installation.resource_id == location_id)
        .values(**_uninstalled_values(now or utcnow(), "uninstalled by HighLevel"))
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def uninstall_company(
    session: AsyncSession, company_id: str, *, now: datetime | None = None
) -> int:
    """UNINSTALL for an agency: drop the Company token and every location token of the company.

    Whether location tokens minted from the Company token stay valid is undocumented (ghl.md
    §5); the schema does not record which were minted, so all of the company's go.
    """
    result = await session.execute(
        update(Installation)
        .where(
            or_(
                (Installation.user_type == "Company") & (Installation.resource_id == company_id),
                (Installation.user_type == "Location") & (Installation.company_id == company_id),
            )
        )
        .values(**_uninstalled_values(now or utcnow(), "agency uninstalled by HighLevel"))
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def rotate_installation_secrets(session: AsyncSession, box: SecretBox) -> int:
    """Re-encrypt every stored token under the primary key; returns the rows re-encrypted.

    Each write is conditional on `token_version`, so a refresh that lands meanwhile (already
    encrypted under the primary key) is never overwritten with the older pair.
    """
    count = 0
    rows = (
        await session.execute(
            select(
                Installation.id,
                Installation.token_version,
                Installation.access_token_enc,
                Installation.refresh_token_enc,
            ).where(
                or_(
                    Installation.access_token_enc.is_not(None),
                    Installation.refresh_token_enc.is_not(None),
                )
            )
        )
    ).all()
    for row in rows:
        result = await session.execute(
            update(Installation)
            .where(Installation.id == row.id, Installation.token_version == row.token_version)
            .values(
                access_token_enc=box.rotate(row.access_token_enc) if row.access_token_enc else None,
                refresh_token_enc=box.rotate(row.refresh_token_enc)
                if row.refresh_token_enc
                else None,
            )
            .execution_options(synchronize_session=False)
        )
        count += int(result.rowcount)  # type: ignore[attr-defined]
    return count


async def _row(session: AsyncSession, key: GrantKey) -> Installation | None:
    return (
        await session.execute(
            select(Installation).where(
                Installation.user_type == key.user_type,
                Installation.resource_id == key.resource_id,
            )
        )
    ).scalar_one_or_none()


# --- OAuth state -------------------------------------------------------------------------


async def create_oauth_state(
    session: AsyncSession, ttl: timedelta | float, *, now: datetime | None = None
) -> str:
    """A fresh unguessable `state` for the install redirect, valid for `ttl` (seconds)."""
    now = now or utcnow()
    lifetime = ttl if isinstance(ttl, timedelta) else timedelta(seconds=ttl)
    state = pysecrets.token_urlsafe(32)
    session.add(OAuthState(state=state, expires_at=now + lifetime, created_at=now))
    await session.flush()
    return state


async def consume_oauth_state(
    session: AsyncSession, state: str, *, now: datetime | None = None
) -> bool:
    """Use up `state`: True exactly once, and only before it expires.

    One `DELETE ... WHERE state = :s AND expires_at > :now RETURNING state` (SQLite >= 3.35 and
    PostgreSQL), so two concurrent callbacks cannot both win — never select-then-delete.
    """
    if not state or len(state) > MAX_STATE_CHARS:
        return False
    result = await session.execute(
        delete(OAuthState)
        .where(OAuthState.state == state, OAuthState.expires_at > (now or utcnow()))
        .returning(OAuthState.state)
        .execution_options(synchronize_session=False)
    )
    return result.scalar_one_or_none() is not None


async def prune_expired_oauth_states(session: AsyncSession, *, now: datetime | None = None) -> int:
    result = await session.execute(
        delete(OAuthState)
        .where(OAuthState.expires_at <= (now or utcnow()))
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


# --- the token store behind ghl/auth.py --------------------------------------------------


class StoreTokenStore:
    """`ghl.auth.TokenStore` on the installations table; each method is one transaction."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], box: SecretBox) -> None:
        self._sessions = sessions
        self._box = box

    def _grant(self, row: Installation) -> StoredGrant:
        user_type: UserType = "Company" if row.user_type == "Company" else "Location"
        return StoredGrant(
            id=row.id,
            user_type=user_type,
            resource_id=row.resource_id,
            location_id=row.location_id,
            company_id=row.company_id,
            state=row.state,
            token_version=row.token_version,
            expires_at=row.expires_at,
            access_token=self._box.decrypt(row.access_token_enc) if row.access_token_enc else None,
            refresh_token=(
                self._box.decrypt(row.refresh_token_enc) if row.refresh_token_enc else None
            ),
            retry_after=row.retry_after,
        )

    async def load_grant(self, key: GrantKey) -> StoredGrant | None:
        async with self._sessions() as session:
            row = await _row(session, key)
            return self._grant(row) if row is not None else None

    async def try_lease(
        self, grant_id: int, token_version: int, until: datetime, now: datetime, owner: str
    ) -> bool:
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(Installation)
                .where(
                    Installation.id == grant_id,
                    Installation.token_version == token_version,
                    or_(
                        Installation.refresh_lock_until.is_(None),
                        Installation.refresh_lock_until < now,
                    ),
                )
                .values(refresh_lock_until=until, refresh_lock_owner=owner)
                .execution_options(synchronize_session=False)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def save_refreshed(
        self,
        grant_id: int,
        token_version: int,
        tokens: TokenResponse | LocationTokenResponse,
        now: datetime,
    ) -> StoredGrant | None:
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(Installation)
                .where(Installation.id == grant_id, Installation.token_version == token_version)
                .values(
                    access_token_enc=self._box.encrypt(tokens.access_token),
                    refresh_token_enc=(
                        self._box.encrypt(tokens.refresh_token) if tokens.refresh_token else None
                    ),
                    expires_at=now + timedelta(seconds=float(tokens.expires_in)),
                    scope=tokens.scope,
                    token_version=token_version + 1,
                    refresh_lock_until=None,
                    refresh_lock_owner=None,
                    state="active",
                    state_reason=None,
                    retry_after=None,
                    updated_at=now,
                )
                .execution_options(synchronize_session=False)
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                return None
            row = await session.get(Installation, grant_id, populate_existing=True)
            assert row is not None
            return self._grant(row)

    async def release_lease(self, grant_id: int, owner: str) -> None:
        """Only the lease's owner releases it: a slow refresher whose lease already passed to
        another process must not clear that process's lease."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(Installation)
                .where(Installation.id == grant_id, Installation.refresh_lock_owner == owner)
                .values(refresh_lock_until=None, refresh_lock_owner=None)
                .execution_options(synchronize_session=False)
            )

    async def mark_needs_reinstall(self, grant_id: int, token_version: int, reason: str) -> None:
        async with self._sessions.begin() as session:
            await set_installation_state(
                session, grant_id, "needs_reinstall", reason=reason, token_version=token_version
            )

    async def mark_paused(
        self, grant_id: int, token_version: int, reason: str, retry_after: datetime
    ) -> None:
        async with self._sessions.begin() as session:
            await set_installation_state(
                session,
                grant_id,
                "paused",
                reason=reason,
                retry_after=retry_after,
                token_version=token_version,
            )


async def mark_pending(session: AsyncSession, location_id: str, company_id: str) -> bool:
    """A location of an installed agency, its token not minted yet: remembered so a delivery
    that arrives first is held and its token minted on demand (ghl.md §6.4). An installed
    location is left alone. True when the row is now pending."""
    now = utcnow()
    statement = (
        _insert(session, Installation)
        .values(
            user_type="Location",
            resource_id=location_id,
            location_id=location_id,
            company_id=company_id,
            scope="",
            state="pending",
            token_version=0,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_update(
            index_elements=["user_type", "resource_id"],
            set_={"state": "pending", "company_id": company_id, "updated_at": now},
            where=Installation.access_token_enc.is_(None),
        )
        .returning(Installation.id)
    )
    return (await session.execute(statement)).scalar_one_or_none() is not None


async def pending_locations(session: AsyncSession, company_id: str) -> list[str]:
    rows = await session.execute(
        select(Installation.resource_id).where(
            Installation.user_type == "Location",
            Installation.company_id == company_id,
            Installation.state == "pending",
        )
    )
    return [str(r) for r in rows.scalars()]
