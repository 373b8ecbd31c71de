"""Location tokens for HighLevel calls: refresh ahead of expiry, single-flight, across processes.

HighLevel refresh tokens rotate and are treated as single-use (ghl.md §6.3), so two refreshes
of one location at once can lock it out. Refresh is therefore single-flight twice over: an
asyncio.Lock per grant inside a process, and a lease taken with a conditional UPDATE on the
installation row across processes. The new pair is persisted (bumping `token_version`) before
it is used; a caller that lost the race waits for the winner's row and uses its token.

The store is reached through the small `TokenStore` protocol (store/installations.py
implements it), so this module never imports the store.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

import httpx2

from castbridge import metrics
from castbridge.ghl.errors import (
    NOT_DOWNSTREAMED_TEXT,
    GHLError,
    LocationInactiveError,
    NeedsReinstallError,
    NotInstalledError,
    UnavailableError,
)
from castbridge.ghl.models import LocationTokenResponse, TokenResponse, UserType
from castbridge.limits import Limit, Pacer
from castbridge.logging import get_logger

log = get_logger(__name__)

REFRESH_MARGIN = timedelta(minutes=5)
LEASE_DURATION = timedelta(seconds=30)


def bucket_for(resource_id: str) -> str:
    """The rate-limit bucket of one HighLevel location or company (shared by every process)."""
    return f"ghl:{resource_id}"


def lease_for(timeout_seconds: float) -> timedelta:
    """A refresh lease that outlives the worst-case refresh call (pool wait, connect, write and
    read each up to the timeout), so a slow refresh never loses its lease to a second one."""
    return timedelta(seconds=4 * timeout_seconds + 10)


PAUSE_DURATION = timedelta(hours=1)
# How long a fresh grant read from its row is used without reading the row again. A token
# another process refreshed meanwhile still works or answers 401, and a 401 rereads the row
# (`token_after_unauthorized`), so the window only bounds how late a pause or reinstall made
# elsewhere is seen; it saves a read and a decryption on every HighLevel call.
GRANT_CACHE_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class GrantKey:
    """Which token: a Location's own, or an agency's Company token."""

    user_type: UserType
    resource_id: str

    @classmethod
    def location(cls, location_id: str) -> GrantKey:
        return cls("Location", location_id)

    @classmethod
    def company(cls, company_id: str) -> GrantKey:
        return cls("Company", company_id)


@dataclass(frozen=True, slots=True)
class StoredGrant:
    """An installation row with its tokens decrypted (never logged: tokens have repr=False)."""

    id: int
    user_type: UserType
    resource_id: str
    location_id: str | None
    company_id: str | None
    state: str
    token_version: int
    expires_at: datetime | None
    access_token: str | None = field(repr=False)
    refresh_token: str | None = field(repr=False)
    retry_after: datetime | None = None


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A bearer token and the row version it came from (to spot a stale token after a 401)."""

    value: str = field(repr=False)
    version: int
    expires_at: datetime | None


class TokenStore(Protocol):
    """What the token provider needs from persistence; every call is its own transaction."""

    async def load_grant(self, key: GrantKey) -> StoredGrant | None:
        """The row for this grant, tokens decrypted; None if there is none."""
        ...

    async def try_lease(
        self, grant_id: int, token_version: int, until: datetime, now: datetime, owner: str
    ) -> bool:
        """Take the refresh lease iff the row is still at `token_version` and unleased (or the
        lease expired). One conditional UPDATE; True when this caller got it."""
        ...

    async def save_refreshed(
        self,
        grant_id: int,
        token_version: int,
        tokens: TokenResponse | LocationTokenResponse,
        now: datetime,
    ) -> StoredGrant | None:
        """Persist the new pair, bump `token_version`, clear the lease and mark active — only
        if the row is still at `token_version`; None when it moved on."""
        ...

    async def release_lease(self, grant_id: int, owner: str) -> None:
        """Clear the lease only if `owner` still holds it."""
        ...

    async def mark_needs_reinstall(self, grant_id: int, token_version: int, reason: str) -> None:
        """Only if still at `token_version`: a reinstall meanwhile must not be clobbered."""
        ...

    async def mark_paused(
        self, grant_id: int, token_version: int, reason: str, retry_after: datetime
    ) -> None:
        """Only if still at `token_version`; tokens are kept."""
        ...


class Refresher(Protocol):
    """The HighLevel calls a refresh needs (GHLClient implements them)."""

    async def refresh(self, refresh_token: str, user_type: UserType) -> TokenResponse: ...

    async def location_token(
        self, company_token: str, company_id: str, location_id: str
    ) -> LocationTokenResponse: ...


def _utcnow() -> datetime:
    return datetime.now(UTC)


class TokenProvider:
    """Hands out valid access tokens per location; the only code that refreshes them."""

    def __init__(
        self,
        store: TokenStore,
        *,
        refresh_margin: timedelta = REFRESH_MARGIN,
        lease_duration: timedelta = LEASE_DURATION,
        pause_duration: timedelta = PAUSE_DURATION,
        poll_interval: float = 0.05,
        clock: Callable[[], datetime] = _utcnow,
        cache_seconds: float = GRANT_CACHE_SECONDS,
    ) -> None:
        self._store = store
        self._margin = refresh_margin
        self._lease = lease_duration
        self._owner = uuid.uuid4().hex
        self._pause = pause_duration
        self._poll = poll_interval
        self._clock = clock
        self._locks: dict[GrantKey, asyncio.Lock] = {}
        self._cache_seconds = cache_seconds
        self._cached: dict[GrantKey, tuple[float, StoredGrant]] = {}  # (monotonic expiry, grant)

    def _lock(self, key: GrantKey) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    def _remember(self, key: GrantKey, grant: StoredGrant) -> None:
        if self._fresh(grant):
            self._cached[key] = (time.monotonic() + self._cache_seconds, grant)
        else:
            self._cached.pop(key, None)

    async def _load(self, key: GrantKey) -> StoredGrant:
        self._cached.pop(key, None)
        grant = await self._store.load_grant(key)
        label = f"{key.user_type} {key.resource_id}"
        if grant is None or grant.state == "uninstalled":
            raise NotInstalledError(f"{label} is not installed")
        if grant.state == "needs_reinstall":
            raise NeedsReinstallError(f"{label} must be reinstalled (its refresh was refused)")
        if grant.state == "paused":
            now = self._clock()
            if grant.retry_after is None or grant.retry_after > now:
                wait = (grant.retry_after - now).total_seconds() if grant.retry_after else None
                raise LocationInactiveError(
                    f"{label} is paused: HighLevel says it is not active", retry_after=wait
                )
        return grant

    def _fresh(self, grant: StoredGrant) -> bool:
        if not grant.access_token or grant.state != "active":
            return False
        if grant.expires_at is None:
            return True
        return grant.expires_at - self._margin > self._clock()

    @staticmethod
    def _token(grant: StoredGrant) -> AccessToken:
        if not grant.access_token:
            raise NotInstalledError(f"{grant.user_type} {grant.resource_id} holds no token")
        return AccessToken(grant.access_token, grant.token_version, grant.expires_at)

    async def token(self, key: GrantKey, refresher: Refresher) -> AccessToken:
        """A token that will not expire within the margin, refreshing it first if needed."""
        cached = self._cached.get(key)
        if cached is not None and cached[0] > time.monotonic() and self._fresh(cached[1]):
            return self._token(cached[1])
        grant = await self._load(key)
        if self._fresh(grant):
            self._remember(key, grant)
            return self._token(grant)
        return await self._refresh(key, refresher, seen_version=grant.token_version, forced=False)

    async def token_after_unauthorized(
        self, key: GrantKey, refresher: Refresher, rejected: AccessToken
    ) -> AccessToken:
        """HighLevel answered 401 to `rejected`: refresh once, unless someone already did."""
        return await self._refresh(key, refresher, seen_version=rejected.version, forced=True)

    async def _refresh(
        self, key: GrantKey, refresher: Refresher, *, seen_version: int, forced: bool
    ) -> AccessToken:
        async with self._lock(key):
            grant = await self._load(key)
            if grant.token_version != seen_version or (not forced and self._fresh(grant)):
                return self._token(grant)  # another caller refreshed while we waited
            deadline = time.monotonic() + self._lease.total_seconds() + 5.0
            while True:
                now = self._clock()
                if await self._store.try_lease(
                    grant.id, seen_version, now + self._lease, now, self._owner
                ):
                    break
                # Another process holds the lease: wait for its new row (or its lease to lapse).
                if time.monotonic() > deadline:
                    raise UnavailableError(
                        f"token refresh for {key.user_type} {key.resource_id} is stuck elsewhere"
                    )
                await asyncio.sleep(self._poll)
                grant = await self._load(key)
                if grant.token_version != seen_version:
                    return self._token(grant)
            return await self._refresh_leased(key, grant, refresher)

    async def _refresh_leased(
        self, key: GrantKey, grant: StoredGrant, refresher: Refresher
    ) -> AccessToken:
        bound = log.bind(user_type=key.user_type, resource_id=key.resource_id)
        try:
            tokens = await self._call_refresh(grant, refresher)
        except NeedsReinstallError as exc:
            await self._store.mark_needs_reinstall(grant.id, grant.token_version, str(exc))
            bound.warning("ghl_refresh_refused", trace_id=exc.trace_id, status=exc.status_code)
            raise
        except LocationInactiveError as exc:
            until = self._clock() + self._pause
            await self._store.mark_paused(grant.id, grant.token_version, str(exc), until)
            bound.warning("ghl_location_inactive", trace_id=exc.trace_id, paused_until=until)
            raise LocationInactiveError(
                exc.message,
                status_code=exc.status_code,
                trace_id=exc.trace_id,
                operation=exc.operation,
                retry_after=self._pause.total_seconds(),
            ) from None
        except BaseException:
            await asyncio.shield(self._store.release_lease(grant.id, self._owner))
            raise
        saved = await self._store.save_refreshed(
            grant.id, grant.token_version, tokens, self._clock()
        )
        if saved is None:
            # The row changed under the lease (a reinstall wrote a fresh grant): use that one.
            bound.warning("ghl_refresh_superseded")
            return self._token(await self._load(key))
        bound.info("ghl_token_refreshed", token_version=saved.token_version)
        self._remember(key, saved)
        return self._token(saved)

    async def _call_refresh(
        self, grant: StoredGrant, refresher: Refresher
    ) -> TokenResponse | LocationTokenResponse:
        try:
            answer = await self._call_refresh_once(grant, refresher)
        except Exception as exc:
            metrics.TOKEN_REFRESHES.labels(grant.user_type, type(exc).__name__[:40]).inc()
            raise
        metrics.TOKEN_REFRESHES.labels(grant.user_type, "ok").inc()
        return answer

    async def _call_refresh_once(
        self, grant: StoredGrant, refresher: Refresher
    ) -> TokenResponse | LocationTokenResponse:
        if grant.refresh_token:
            return await refresher.refresh(grant.refresh_token, grant.user_type)
        if grant.user_type == "Location" and grant.company_id and grant.location_id:
            # A location token minted from the agency token without a refresh token: mint again.
            company = await self.token(GrantKey.company(grant.company_id), refresher)
            return await refresher.location_token(
                company.value, grant.company_id, grant.location_id
            )
        raise NeedsReinstallError(f"{grant.user_type} {grant.resource_id} has no refresh token")


class LocationAuth(httpx2.Auth):
    """httpx2 auth flow: bearer for one grant; on 401 refresh once (single-flight), resend once.

    It also takes a token from the grant's rate-limit bucket (`ghl:<resource id>`) before every
    attempt, so the resend counts against HighLevel's 100 requests / 10 s as well; with a
    non-waiting pacer an empty bucket raises `Throttled` before anything is sent. A 403 is
    passed through untouched: it is never a token problem (ghl.md §8); neither is a 401 that
    says "No conversation provider found", the form that window took before HighLevel moved it
    to 403.
    """

    def __init__(
        self,
        provider: TokenProvider,
        key: GrantKey,
        refresher: Refresher,
        pacer: Pacer | None = None,
        limit: Limit | None = None,
    ) -> None:
        self._provider = provider
        self._key = key
        self._refresher = refresher
        self._pacer = pacer
        self._limit = limit

    async def _acquire(self) -> None:
        if self._pacer is not None and self._limit is not None:
            await self._pacer.take(bucket_for(self._key.resource_id), self._limit)

    async def async_auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        token = await self._provider.token(self._key, self._refresher)
        await self._acquire()
        request.headers["Authorization"] = f"Bearer {token.value}"
        response = yield request
        if response.status_code != 401:
            return
        await response.aread()
        if NOT_DOWNSTREAMED_TEXT in response.text.lower():
            # The pre-June-2025 form of the not-downstreamed window: not a token problem.
            return
        log.info("ghl_unauthorized_refreshing", resource_id=self._key.resource_id)
        token = await self._provider.token_after_unauthorized(self._key, self._refresher, token)
        await self._acquire()
        request.headers["Authorization"] = f"Bearer {token.value}"
        yield request


class BearerAuth(httpx2.Auth):
    """A fixed bearer token (the Company token handed to location-token minting)."""

    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    async def async_auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        request.headers["Authorization"] = self._header
        yield request


__all__ = [
    "AccessToken",
    "BearerAuth",
    "GHLError",
    "GrantKey",
    "LocationAuth",
    "Refresher",
    "StoredGrant",
    "TokenProvider",
    "TokenStore",
]
