"""open_resources(settings): the one place that builds and closes engines, clients and services."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import httpx2

from castbridge import accounts, httpclient
from castbridge.config import Settings
from castbridge.gateways.directory import GatewayDirectory
from castbridge.gateways.registry import load_defaults
from castbridge.gateways.spec import GatewayDefaults
from castbridge.ghl.client import GHLClient
from castbridge.ghl.keys import load_webhook_keys
from castbridge.ghl.signature import WebhookKeys
from castbridge.limits import BlockingPacer, DatabasePacer, LocalPacer, Pacer
from castbridge.logging import get_logger
from castbridge.outbound.intake import Intake, Spacer
from castbridge.secrets import PhoneVault, SecretBox, load_secret_box
from castbridge.store import keyring, migrate
from castbridge.store.db import Store, create_engine
from castbridge.store.group import GroupCommit

if TYPE_CHECKING:
    from castbridge.worker import Worker

log = get_logger(__name__)


@dataclass(slots=True)
class Opened:
    """The database, its secrets and the phone vault (what every command needs)."""

    store: Store
    box: SecretBox
    vault: PhoneVault

    @property
    def sessions(self):  # type: ignore[no-untyped-def]
        return self.store.sessions

    @property
    def engine(self):  # type: ignore[no-untyped-def]
        return self.store.engine

    @property
    def secret_box(self) -> SecretBox:
        return self.box


@contextlib.asynccontextmanager
async def open_store(settings: Settings, *, upgrade: bool = True) -> AsyncIterator[Opened]:
    """Engine, secrets and the phone vault; migrates on open so every command works on a
    fresh machine."""
    box = load_secret_box(settings)
    engine = create_engine(
        settings.effective_database_url, sqlite_synchronous=settings.sqlite_synchronous
    )
    try:
        if upgrade:
            await migrate.upgrade(engine, secret_box=box)
        store = Store(engine)
        async with store.write() as session:
            index_key = await keyring.index_key(session, box)
        yield Opened(store, box, PhoneVault(box, index_key))
    finally:
        await engine.dispose()


def _pacer(settings: Settings, store: Store) -> Pacer:
    shared = settings.shared_limits
    if shared == "database" or (shared == "auto" and not store.sqlite):
        return DatabasePacer(store.sessions)
    return LocalPacer()


@dataclass(slots=True)
class Resources:
    settings: Settings
    store: Store
    box: SecretBox
    vault: PhoneVault
    webhook_keys: WebhookKeys
    defaults: dict[str, GatewayDefaults]
    gateway_http: httpx2.AsyncClient
    ghl_http: httpx2.AsyncClient
    pacer: Pacer  # refuses when a bucket is empty (jobs)
    ghl: GHLClient  # waits for its bucket (web requests, the CLI)
    gateways: GatewayDirectory  # waits for its buckets, retries a little in-call (CLI)
    intake: Intake
    setups: accounts.SetupCache
    worker: Worker | None = None  # when this process runs one
    extras: dict[str, object] = field(default_factory=dict)

    @property
    def sessions(self):  # type: ignore[no-untyped-def]
        return self.store.sessions

    @property
    def engine(self):  # type: ignore[no-untyped-def]
        return self.store.engine

    @property
    def secret_box(self) -> SecretBox:
        return self.box

    def forget_location(self, location_id: str | None) -> None:
        """This process changed a location: drop its cached set-up."""
        self.setups.forget(location_id)

    def wake(self, lane: str | None = None, when: datetime | None = None) -> None:
        """This process committed work for `lane` (every lane: None), due at `when` (now: None)."""
        if self.worker is not None:
            self.worker.wake(lane, when)


@contextlib.asynccontextmanager
async def open_resources(settings: Settings, *, with_worker: bool) -> AsyncIterator[Resources]:
    """Everything the web app, the worker and the CLI share, closed in reverse order on exit."""
    from castbridge.store.installations import StoreTokenStore

    webhook_keys = load_webhook_keys(settings.ghl_webhook_keys)
    defaults = load_defaults(settings)
    if not settings.ghl_require_signature:
        log.warning(
            "signature_checks_off",
            hint="GHL_REQUIRE_SIGNATURE=false: anyone can post webhooks; local testing only",
        )
    async with open_store(settings) as opened, contextlib.AsyncExitStack() as stack:
        store = opened.store
        timeout = max(d.timeout_seconds for d in defaults.values())
        gateway_http = await stack.enter_async_context(
            httpclient.client(
                timeout=httpx2.Timeout(timeout, connect=5.0),
                limits=httpx2.Limits(max_connections=200, max_keepalive_connections=100),
            )
        )
        ghl_http = await stack.enter_async_context(
            httpclient.client(
                timeout=httpx2.Timeout(settings.ghl_timeout_seconds, connect=5.0),
                limits=httpx2.Limits(max_connections=100, max_keepalive_connections=50),
            )
        )
        pacer = _pacer(settings, store)
        waiting = BlockingPacer(pacer)
        ghl_jobs = GHLClient.from_settings(
            settings, ghl_http, StoreTokenStore(store.sessions, opened.box), pacer=pacer
        )
        gateways_jobs = GatewayDirectory(
            defaults, gateway_http, pacer, opened.box, egress_id=settings.egress_id
        )
        await accounts.sync_env_accounts(store, gateways_jobs, opened.box)
        setups = accounts.SetupCache()
        intake = Intake(
            settings, store, gateways_jobs, opened.vault, setups, Spacer(), GroupCommit(store)
        )
        resources = Resources(
            settings=settings,
            store=store,
            box=opened.box,
            vault=opened.vault,
            webhook_keys=webhook_keys,
            defaults=defaults,
            gateway_http=gateway_http,
            ghl_http=ghl_http,
            pacer=pacer,
            ghl=ghl_jobs.with_pacer(waiting),
            gateways=gateways_jobs.with_pacer(waiting, attempts=3),
            intake=intake,
            setups=setups,
        )
        if with_worker:
            resources.worker = build_worker(resources, ghl_jobs, gateways_jobs)
            from castbridge import maintenance

            await store.run(lambda s: maintenance.ensure_standing_jobs(s, settings))
        yield resources


def build_worker(resources: Resources, ghl: GHLClient, gateways: GatewayDirectory) -> Worker:
    """The worker and its handlers, over the refusing (non-waiting) pacer."""
    from castbridge import maintenance
    from castbridge.inbound import deliver, dnd, optout_sync, poll
    from castbridge.installs import minting
    from castbridge.outbound import probe
    from castbridge.outbound.runtime import Runtime
    from castbridge.worker import new_worker_id
    from castbridge.worker.dispatch import Dispatcher

    runtime = Runtime(
        settings=resources.settings,
        store=resources.store,
        gateways=gateways,
        ghl=ghl,
        vault=resources.vault,
        box=resources.box,
        worker_id=new_worker_id(),
        ghl_waiting=ghl.with_pacer(BlockingPacer(resources.pacer, max_wait=60.0)),
    )
    dispatcher = Dispatcher(
        runtime,
        {
            **minting.HANDLERS,
            "probe": probe.probe,
            "prune": maintenance.prune,
            "webhook_setup": maintenance.register_webhooks,
            "inbound": deliver.run,
            "dnd": dnd.run,
            "inbound_poll": poll.run,
            "optout_sync": optout_sync.run,
        },
    )
    from castbridge.worker import Worker

    return Worker(resources.settings, resources.store, dispatcher)
