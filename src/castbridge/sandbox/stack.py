"""Both sandboxes and castbridge wired together on loopback (sandbox, demo, tests, benchmarks)."""

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
from castbridge.sandbox.ghl import GHLSandbox, GHLSandboxConfig, create_ghl_sandbox
from castbridge.sandbox.server import serve_app


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

    @property
    def delivery_url(self) -> str:
        return f"{self.url}/webhooks/ghl/delivery"

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
    **overrides: Any,
) -> Settings:
    """castbridge settings pointing at the sandboxes, with fast test-friendly timings.

    `gateway_settings={"cast": {"rate_limit": 100}}` overrides a gateway's defaults field by
    field (the sandbox URLs and keys are filled in)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    gateway_settings: dict[str, dict[str, Any]] = {
        "cast": {"api_url": cast_url, "api_key": DEFAULT_API_KEY, "sender_id": DEFAULT_SENDER_ID}
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
    with_castbridge: bool = True,
    **overrides: Any,
) -> AsyncIterator[Stack]:
    """Start the Cast and HighLevel sandboxes and (unless told not to) castbridge, in this loop."""
    cast_app = create_cast_sandbox(cast_config)
    ghl_app = create_ghl_sandbox(ghl_config)
    async with serve_app(cast_app) as cast_url, serve_app(ghl_app) as ghl_url:
        ghl: GHLSandbox = ghl_app.state.sandbox
        port = free_port()
        settings = stack_settings(
            data_dir, cast_url=cast_url, ghl_url=ghl_url, ghl=ghl, port=port, **overrides
        )
        stack = Stack(
            settings=settings,
            cast=cast_app.state.sandbox,
            ghl=ghl,
            cast_url=cast_url,
            ghl_url=ghl_url,
            url=f"http://127.0.0.1:{port}",
            app=None,
        )
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
