"""HighLevel test bed: the sandbox on loopback, a GHLClient over it, tokens in the temp SQLite.

Every request the client sends passes the OpenAPI checker (an httpx2 event hook), and every
response the sandbox gives for a status the spec declares is checked against its schema.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from castbridge.ghl.auth import GrantKey, TokenProvider
from castbridge.ghl.client import GHLClient
from castbridge.ghl.models import LocationTokenResponse, TokenResponse
from castbridge.limits import Limit, LocalPacer
from castbridge.sandbox.ghl import GHLSandbox, GHLSandboxConfig, create_ghl_sandbox
from castbridge.sandbox.server import serve_app
from castbridge.secrets import SecretBox
from castbridge.store import installations
from castbridge.store.db import create_sessionmaker
from tests.openapi_check import OpenAPIChecker

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ghl"
REDIRECT_URI = "http://127.0.0.1:9/oauth/callback"


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.fixture(scope="session")
def openapi_checker() -> OpenAPIChecker:
    return OpenAPIChecker()


@pytest.fixture(scope="session")
def sandbox_key_pems() -> dict[str, str]:
    """One Ed25519 and one RSA key pair per test session (RSA generation is the slow part)."""
    ed = ed25519.Ed25519PrivateKey.generate()
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def pem(key: Any) -> str:
        return str(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode()
        )

    return {"ed25519_private_pem": pem(ed), "rsa_private_pem": pem(rsa_key)}


@dataclass
class RunningSandbox:
    sandbox: GHLSandbox
    url: str


SandboxStarter = Callable[..., Awaitable[RunningSandbox]]


@pytest.fixture
async def start_sandbox(sandbox_key_pems: dict[str, str]) -> AsyncIterator[SandboxStarter]:
    """Start a sandbox with config overrides; all are stopped when the test ends."""
    async with AsyncExitStack() as stack:

        async def start(**overrides: Any) -> RunningSandbox:
            values: dict[str, Any] = {
                "not_downstreamed_seconds": 0.0,
                "seed": 7,
                **sandbox_key_pems,
                **overrides,
            }
            app = create_ghl_sandbox(GHLSandboxConfig(**values))
            url = await stack.enter_async_context(serve_app(app))
            return RunningSandbox(app.state.sandbox, url)

        yield start


@dataclass
class GHLStack:
    """A sandbox plus everything castbridge builds to talk to it."""

    sandbox: GHLSandbox
    url: str
    http: httpx2.AsyncClient
    client: GHLClient
    provider: TokenProvider
    store: installations.StoreTokenStore
    sessions: async_sessionmaker[AsyncSession]
    pacer: LocalPacer
    limit: Limit
    box: SecretBox
    database_url: str

    @property
    def location_id(self) -> str:
        return self.sandbox.config.location_ids[0]

    def make_client(self, provider: TokenProvider | None = None) -> GHLClient:
        cfg = self.sandbox.config
        return GHLClient(
            self.http,
            base_url=self.url,
            client_id=cfg.client_id,
            client_secret=cfg.client_secret,
            token_provider=provider or self.provider,
            pacer=self.pacer,
            limit=self.limit,
        )

    async def install(
        self, location_id: str | None = None, *, expires_in: float | None = None
    ) -> TokenResponse:
        """The OAuth install: choose-location code, exchange, store (optionally re-dated)."""
        code = self.sandbox.issue_code(
            redirect_uri=REDIRECT_URI, location_id=location_id or self.location_id
        )
        tokens = await self.client.exchange_code(code, REDIRECT_URI)
        await self.save(tokens, expires_in=expires_in)
        return tokens

    async def save(
        self,
        tokens: TokenResponse | LocationTokenResponse,
        *,
        expires_in: float | None = None,
        company_id: str | None = None,
    ) -> installations.InstallationInfo:
        if expires_in is not None:
            tokens = tokens.model_copy(update={"expires_in": expires_in})
        async with self.sessions.begin() as session:
            return await installations.upsert_installation(
                session, self.box, tokens, company_id=company_id
            )

    async def grant(self, location_id: str | None = None) -> installations.InstallationInfo:
        async with self.sessions() as session:
            info = await installations.get_installation(session, location_id or self.location_id)
        assert info is not None
        return info

    def key(self, location_id: str | None = None) -> GrantKey:
        return GrantKey.location(location_id or self.location_id)


StackStarter = Callable[..., Awaitable[GHLStack]]


@pytest.fixture
async def start_stack(
    start_sandbox: SandboxStarter,
    engine: AsyncEngine,
    secret_box: SecretBox,
    openapi_checker: OpenAPIChecker,
) -> AsyncIterator[StackStarter]:
    """Start a sandbox (config overrides as keywords) and a GHLClient wired to it."""
    failures_before = len(openapi_checker.failures)
    async with AsyncExitStack() as stack:

        async def start(**overrides: Any) -> GHLStack:
            running = await start_sandbox(**overrides)
            http = await stack.enter_async_context(
                httpx2.AsyncClient(
                    timeout=10.0,
                    event_hooks={
                        "request": [openapi_checker.hook],
                        "response": [openapi_checker.response_hook],
                    },
                )
            )
            sessions = create_sessionmaker(engine)
            store = installations.StoreTokenStore(sessions, secret_box)
            provider = TokenProvider(store, poll_interval=0.02)
            # Pacing is the pacer's own concern; here it must not slow the tests.
            pacer, limit = LocalPacer(), Limit(10_000.0, 10_000.0)
            cfg = running.sandbox.config
            client = GHLClient(
                http,
                base_url=running.url,
                client_id=cfg.client_id,
                client_secret=cfg.client_secret,
                token_provider=provider,
                pacer=pacer,
                limit=limit,
            )
            return GHLStack(
                running.sandbox,
                running.url,
                http,
                client,
                provider,
                store,
                sessions,
                pacer,
                limit,
                secret_box,
                engine.url.render_as_string(hide_password=False),
            )

        yield start
    # Every request and response of the test went through the spec checker.
    new_failures = openapi_checker.failures[failures_before:]
    assert not new_failures, new_failures


@pytest.fixture
async def ghl(start_stack: StackStarter) -> GHLStack:
    """The default stack: one sandbox location, no not-downstreamed window."""
    return await start_stack()


EXPIRED = -timedelta(minutes=1).total_seconds()
