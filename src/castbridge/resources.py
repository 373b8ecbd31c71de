"""open_resources(settings): the one place that builds and closes engines, clients and services."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx2
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from castbridge.bridge import Bridge, GatewayAccount, NoGatewayAccount
from castbridge.config import Settings
from castbridge.gateways.cast import (
    CastClient,
    CastGateway,
    RetryPolicy,
    request_limiter,
    send_limiter,
)
from castbridge.ghl.client import GHLClient
from castbridge.ghl.keys import load_webhook_keys
from castbridge.ghl.signature import WebhookKeys
from castbridge.ratelimit import TokenBucket
from castbridge.secrets import SecretBox, load_secret_box
from castbridge.store import migrate
from castbridge.store import repository as repo
from castbridge.store.db import create_engine, create_sessionmaker
from castbridge.worker import Worker, new_worker_id


@dataclass(slots=True)
class Store:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    secret_box: SecretBox


@contextlib.asynccontextmanager
async def open_store(settings: Settings, *, upgrade: bool = True) -> AsyncIterator[Store]:
    """Engine, sessions and secrets; migrates on open so every command works on a fresh machine."""
    secret_box = load_secret_box(settings)
    engine = create_engine(
        settings.effective_database_url, sqlite_synchronous=settings.sqlite_synchronous
    )
    try:
        if upgrade:
            await migrate.upgrade(engine)
        yield Store(engine, create_sessionmaker(engine), secret_box)
    finally:
        await engine.dispose()


def _fingerprint(api_key: str) -> str:
    # Limiters and clients are keyed by a hash so no map in memory holds a key as its name.
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


class CastAccounts:
    """Resolves a location to its Cast account: its own key and sender ID, else the defaults.

    One CastGateway per API key, so every location sharing an account shares that account's
    send limiter, and castbridge as a whole never exceeds CAST_RATE_LIMIT for it.
    """

    def __init__(
        self, settings: Settings, http: httpx2.AsyncClient, secret_box: SecretBox, *, retries: int
    ) -> None:
        self.settings = settings
        self.http = http
        self.secret_box = secret_box
        self.retry = RetryPolicy(attempts=retries)
        self.ip_limiter: TokenBucket = request_limiter(settings.cast_ip_rate_limit)
        self._gateways: dict[str, CastGateway] = {}

    def gateway_for_key(self, api_key: str) -> CastGateway:
        fingerprint = _fingerprint(api_key)
        gateway = self._gateways.get(fingerprint)
        if gateway is None:
            client = CastClient(
                self.http,
                api_key=api_key,
                base_url=self.settings.cast_api_url,
                send_limiter=send_limiter(self.settings.cast_rate_limit),
                request_limiter=self.ip_limiter,
                retry=self.retry,
            )
            gateway = CastGateway(client, max_chars=self.settings.cast_max_chars)
            self._gateways[fingerprint] = gateway
        return gateway

    async def for_location(self, session: AsyncSession, location_id: str) -> GatewayAccount:
        row = await repo.get_location_settings(session, location_id)
        api_key: str | None = None
        if row is not None and row.api_key_enc:
            api_key = self.secret_box.decrypt(row.api_key_enc)
        elif self.settings.cast_api_key is not None:
            api_key = self.settings.cast_api_key.get_secret_value()
        if not api_key:
            raise NoGatewayAccount(
                "No Cast.ph API key is set up for this sub-account. Ask your castbridge "
                "operator to configure one."
            )
        sender_id = (row.sender_id if row is not None else None) or self.settings.cast_sender_id
        channel = (row.channel if row is not None else None) or self.settings.cast_channel
        return GatewayAccount(self.gateway_for_key(api_key), sender_id, channel)


@dataclass(slots=True)
class Resources:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    secret_box: SecretBox
    webhook_keys: WebhookKeys
    cast_http: httpx2.AsyncClient
    ghl_http: httpx2.AsyncClient
    ghl: GHLClient
    cast_accounts: CastAccounts
    worker: Worker | None


@contextlib.asynccontextmanager
async def open_resources(settings: Settings, *, with_worker: bool) -> AsyncIterator[Resources]:
    """Everything the web app, the worker and the CLI share, closed in reverse order on exit."""
    from castbridge.store.installations import StoreTokenStore

    webhook_keys = load_webhook_keys(settings.ghl_webhook_keys)
    async with open_store(settings) as store, contextlib.AsyncExitStack() as stack:
        cast_http = await stack.enter_async_context(
            httpx2.AsyncClient(
                timeout=httpx2.Timeout(settings.cast_timeout_seconds, connect=5.0),
                limits=httpx2.Limits(max_connections=100, max_keepalive_connections=50),
            )
        )
        ghl_http = await stack.enter_async_context(
            httpx2.AsyncClient(
                timeout=httpx2.Timeout(settings.ghl_timeout_seconds, connect=5.0),
                limits=httpx2.Limits(max_connections=100, max_keepalive_connections=50),
            )
        )
        ghl = GHLClient.from_settings(
            settings, ghl_http, StoreTokenStore(store.sessions, store.secret_box)
        )
        # The worker keeps its own persisted backoff, so one HTTP try per job attempt; the CLI
        # (`castbridge cast send`) builds its own client with in-call retries instead.
        cast_accounts = CastAccounts(settings, cast_http, store.secret_box, retries=1)
        worker = None
        if with_worker:
            worker_id = new_worker_id()
            bridge = Bridge(settings, store.sessions, cast_accounts, ghl, worker_id=worker_id)
            worker = Worker(settings, store.sessions, bridge)
        yield Resources(
            settings=settings,
            engine=store.engine,
            sessions=store.sessions,
            secret_box=store.secret_box,
            webhook_keys=webhook_keys,
            cast_http=cast_http,
            ghl_http=ghl_http,
            ghl=ghl,
            cast_accounts=cast_accounts,
            worker=worker,
        )
