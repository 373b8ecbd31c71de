"""Every sandbox and castbridge wired together on loopback (sandbox, demo, tests, benchmarks)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import httpx2
from cryptography.fernet import Fernet
from fastapi import FastAPI

from castbridge.app import create_app
from castbridge.config import Settings
from castbridge.resources import Resources
from castbridge.sandbox.cast import (
    DEFAULT_API_KEY,
    DEFAULT_SENDER_ID,
    CastSandbox,
    CastSandboxConfig,
    create_cast_sandbox,
)
from castbridge.sandbox.castbrick import DEFAULT_API_KEY as CASTBRICK_KEY
from castbridge.sandbox.castbrick import DEFAULT_SENDER_ID as CASTBRICK_SENDER
from castbridge.sandbox.castbrick import (
    CastBrickSandbox,
    CastBrickSandboxConfig,
    create_castbrick_sandbox,
)
from castbridge.sandbox.cellcast import DEFAULT_API_KEY as CELLCAST_KEY
from castbridge.sandbox.cellcast import DEFAULT_SENDER as CELLCAST_SENDER
from castbridge.sandbox.cellcast import (
    CellcastSandbox,
    CellcastSandboxConfig,
    create_cellcast_sandbox,
)
from castbridge.sandbox.ghl import GHLSandbox, GHLSandboxConfig, create_ghl_sandbox
from castbridge.sandbox.server import serve_app
from castbridge.sandbox.ugsms import DEFAULT_API_KEY as UGSMS_KEY
from castbridge.sandbox.ugsms import DEFAULT_SENDER_ID as UGSMS_SENDER
from castbridge.sandbox.ugsms import UgsmsSandbox, UgsmsSandboxConfig, create_ugsms_sandbox


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(slots=True)
class Stack:
    settings: Settings
    cast: CastSandbox
    ghl: GHLSandbox
    cast_url: str
    ghl_url: str
    url: str  # castbridge
    app: FastAPI | None
    castbrick: CastBrickSandbox | None = None
    cellcast: CellcastSandbox | None = None
    ugsms: UgsmsSandbox | None = None
    gateway_urls: dict[str, str] | None = None  # each gateway's sandbox base URL
    gateway_keys: dict[str, str] | None = None  # each sandbox's default API key

    async def use_gateway(
        self,
        location_id: str,
        gateway: str,
        *,
        api_key: str | None = None,
        sender_id: str | None = None,
        channel: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> int:
        """Give a location its own account on `gateway` (the sandbox's default key unless one
        is given), checked live and with webhooks registered, as the settings page does."""
        from castbridge.accounts import configure_location

        resources = self.resources
        done = await configure_location(
            resources.store,
            resources.gateways,
            self.settings,
            resources.box,
            location_id,
            gateway=gateway,
            api_key=api_key or (self.gateway_keys or {})[gateway],
            sender_id=sender_id,
            channel=channel,
            options=options,
        )
        resources.forget_location(location_id)
        assert done.account_id is not None
        if gateway == "cellcast" and self.cellcast is not None:
            # Cellcast's webhooks are set by a person in its dashboard: do what they would.
            url = await self.webhook_url(done.account_id)
            self.cellcast.set_webhooks(api_key or CELLCAST_KEY, url, url)
        return done.account_id

    async def webhook_url(self, account_id: int) -> str:
        """The account's gateway webhook URL, as `castbridge accounts show` prints it."""
        from castbridge.accounts import webhook_url
        from castbridge.store import accounts as account_store

        async with self.resources.store.read() as session:
            row = await account_store.get(session, account_id)
        assert row is not None
        return webhook_url(self.url, row.gateway, row.webhook_token)

    @property
    def delivery_url(self) -> str:
        return f"{self.url}/webhooks/ghl/delivery"

    @property
    def custom_page_url(self) -> str:
        """The sandbox's Custom Page host: castbridge's settings page as HighLevel frames it."""
        return f"{self.ghl_url}/custom-page"

    @property
    def events_url(self) -> str:
        return f"{self.url}/webhooks/ghl/events"

    @property
    def resources(self) -> Resources:
        assert self.app is not None, "castbridge runs in another process"
        return self.app.state.resources  # type: ignore[no-any-return]

    async def install(self, location_id: str | None = None, *, agency: bool = False) -> str:
        """Install through the real OAuth flow: /oauth/install -> choose location -> callback."""
        async with httpx2.AsyncClient(timeout=15.0) as http:
            start = await http.get(f"{self.url}/oauth/install")
            if start.status_code != 302:
                raise RuntimeError(f"/oauth/install answered {start.status_code}: {start.text}")
            target = start.headers["location"]
            extra: dict[str, str] = {}
            if location_id is not None:
                extra["location_id"] = location_id
            if agency:
                extra["user_type"] = "Company"
            if extra:
                target = f"{target}&{urlencode(extra)}"
            choose = await http.get(target)
            if choose.status_code != 302:
                raise RuntimeError(f"choose-location answered {choose.status_code}: {choose.text}")
            callback = choose.headers["location"]
            done = await http.get(callback)
            if done.status_code != 200:
                raise RuntimeError(f"/oauth/callback answered {done.status_code}: {done.text}")
            return parse_qs(urlparse(callback).query).get("code", [""])[0]


def stack_settings(
    data_dir: Path,
    *,
    cast_url: str,
    ghl_url: str,
    ghl: GHLSandbox,
    port: int,
    gateway_urls: dict[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """castbridge settings pointing at the sandboxes, with fast test-friendly timings.

    `gateway_settings={"cast": {"rate_limit": 100}}` overrides a gateway's defaults field by
    field (the sandbox URLs and keys are filled in)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    gateway_settings: dict[str, dict[str, Any]] = {
        "cast": {"api_url": cast_url, "api_key": DEFAULT_API_KEY, "sender_id": DEFAULT_SENDER_ID}
    }
    urls = gateway_urls or {}
    if "castbrick" in urls:
        gateway_settings["castbrick"] = {
            "api_url": urls["castbrick"],
            "api_key": CASTBRICK_KEY,
            "sender_id": CASTBRICK_SENDER,
        }
    if "cellcast" in urls:
        gateway_settings["cellcast"] = {
            "api_url": urls["cellcast"],
            "api_key": CELLCAST_KEY,
            "sender_id": CELLCAST_SENDER,
        }
    if "ugsms" in urls:
        gateway_settings["ugsms"] = {
            "api_url": urls["ugsms"],
            "api_key": UGSMS_KEY,
            "sender_id": UGSMS_SENDER,
        }
    for name, fields in overrides.pop("gateway_settings", {}).items():
        gateway_settings.setdefault(name, {}).update(fields)
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "env_file": None,
        "gateway_settings": gateway_settings,
        "database_url": f"sqlite+aiosqlite:///{data_dir / 'castbridge.db'}",
        "secret_keys": Fernet.generate_key().decode(),
        "host": "127.0.0.1",
        "port": port,
        "public_url": f"http://127.0.0.1:{port}",
        "ghl_api_url": ghl_url,
        "ghl_marketplace_url": ghl_url,
        "ghl_client_id": ghl.config.client_id,
        "ghl_client_secret": ghl.config.client_secret,
        "ghl_conversation_provider_id": ghl.config.conversation_provider_id,
        "ghl_webhook_keys": ghl.webhook_keys_pem,
        # The sandbox's Custom Page host frames the settings page from its plain-http loopback
        # origin, which the default `'self' https:` would refuse.
        "ghl_sso_key": ghl.config.sso_key,
        "settings_frame_ancestors": f"'self' {ghl_url}",
        "status_poll_schedule": "1,1,2",
        "report_initial_delay_seconds": 1.0,
        "worker_poll_interval": 0.2,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@contextlib.asynccontextmanager
async def run_stack(
    data_dir: Path,
    *,
    cast_config: CastSandboxConfig | None = None,
    ghl_config: GHLSandboxConfig | None = None,
    castbrick_config: CastBrickSandboxConfig | None = None,
    cellcast_config: CellcastSandboxConfig | None = None,
    ugsms_config: UgsmsSandboxConfig | None = None,
    with_castbridge: bool = True,
    **overrides: Any,
) -> AsyncIterator[Stack]:
    """Start every sandbox (HighLevel, Cast, CastBrick, Cellcast, UGSMS) and, unless told not to,
    castbridge wired to them, in this loop. Each gateway's default account is the sandbox's
    default key; `default_gateway` picks which one locations without their own use."""
    cast_app = create_cast_sandbox(cast_config)
    ghl_app = create_ghl_sandbox(ghl_config)
    castbrick_app = create_castbrick_sandbox(castbrick_config)
    cellcast_app = create_cellcast_sandbox(cellcast_config)
    ugsms_app = create_ugsms_sandbox(ugsms_config)
    async with contextlib.AsyncExitStack() as servers:
        cast_url = await servers.enter_async_context(serve_app(cast_app))
        ghl_url = await servers.enter_async_context(serve_app(ghl_app))
        castbrick_url = await servers.enter_async_context(serve_app(castbrick_app))
        cellcast_url = await servers.enter_async_context(serve_app(cellcast_app))
        ugsms_url = await servers.enter_async_context(serve_app(ugsms_app))
        urls = {
            "cast": cast_url,
            "castbrick": castbrick_url,
            "cellcast": cellcast_url,
            "ugsms": f"{ugsms_url}/api/v2",
        }
        ghl: GHLSandbox = ghl_app.state.sandbox
        port = free_port()
        settings = stack_settings(
            data_dir,
            cast_url=cast_url,
            ghl_url=ghl_url,
            ghl=ghl,
            port=port,
            gateway_urls=urls,
            **overrides,
        )
        stack = Stack(
            settings=settings,
            cast=cast_app.state.sandbox,
            ghl=ghl,
            cast_url=cast_url,
            ghl_url=ghl_url,
            url=f"http://127.0.0.1:{port}",
            app=None,
            castbrick=castbrick_app.state.sandbox,
            cellcast=cellcast_app.state.sandbox,
            ugsms=ugsms_app.state.sandbox,
            gateway_urls=urls,
            gateway_keys={
                "cast": DEFAULT_API_KEY,
                "castbrick": CASTBRICK_KEY,
                "cellcast": CELLCAST_KEY,
                "ugsms": UGSMS_KEY,
            },
        )
        ghl.custom_page_url = f"{stack.url}/app/settings"
        if not with_castbridge:
            yield stack
            return
        app = create_app(settings)
        async with serve_app(app, port=port):
            stack.app = app
            yield stack


async def wait_for(predicate: Any, *, within: float, interval: float = 0.1) -> bool:
    """Poll `predicate()` (sync) until true or `within` seconds pass; returns the last result."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return bool(predicate())
