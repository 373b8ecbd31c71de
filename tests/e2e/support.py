"""Helpers for the end-to-end tests: fast timings, signed webhook bursts, the DB, the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import structlog
from typer.testing import CliRunner, Result

from castbridge.cli import app as cli_app
from castbridge.config import Settings, settings_env
from castbridge.resources import open_store
from castbridge.sandbox.cast import (
    DEFAULT_API_KEY,
    DEFAULT_SENDER_ID,
    CastSandboxConfig,
    SandboxAccount,
    SenderIdSpec,
)
from castbridge.sandbox.ghl import GHLSandbox, GHLSandboxConfig
from castbridge.store import repository as repo
from castbridge.store.models import Attempt, Message

PH_MOBILE = "+63917{:07d}"
LOCATIONS = ("sbxLocationAAAAAAAAA1", "sbxLocationBBBBBBBBB2", "sbxLocationCCCCCCCCC3")

# castbridge overrides for run_stack: polls, reports and retries in fractions of a second.
# Cast's limits are raised on both sides (castbridge paces under the sandbox's) so hundreds of
# messages fit the time budget; HighLevel keeps its real 100 requests / 10 s per location.
FAST: dict[str, Any] = {
    "status_poll_schedule": "0.5,0.5",
    "report_initial_delay_seconds": 1.0,
    "worker_poll_interval": 0.1,
    "retry_base_seconds": 0.2,
    "retry_cap_seconds": 1.0,
    "cast_rate_limit": 100.0,
    "cast_ip_rate_limit": 300.0,
}


def cast_config(*extra: SandboxAccount, **values: Any) -> CastSandboxConfig:
    """The Cast sandbox with fast status timelines and room for a few hundred messages."""
    accounts = [
        SandboxAccount(api_key=DEFAULT_API_KEY, credits=100_000, rate_limit=200.0),
        *extra,
    ]
    defaults: dict[str, Any] = {
        "accounts": accounts,
        "ip_rate": 1000.0,
        "ip_burst": 1000.0,
        "pending_after_seconds": 0.2,
        "final_after_seconds": 0.4,
        "seed": 7,
    }
    defaults.update(values)
    return CastSandboxConfig(**defaults)


def ghl_config(**values: Any) -> GHLSandboxConfig:
    defaults: dict[str, Any] = {"not_downstreamed_seconds": 1.0, "seed": 7}
    defaults.update(values)
    return GHLSandboxConfig(**defaults)


def second_account(api_key: str, sender_id: str) -> SandboxAccount:
    return SandboxAccount(
        api_key=api_key,
        id=3,
        name="Second Account",
        credits=1_000,
        rate_limit=200.0,
        sender_ids=[
            SenderIdSpec(sender_id=sender_id, label="Own"),
            SenderIdSpec(sender_id=DEFAULT_SENDER_ID, label="Shared"),
        ],
    )


# --- webhooks -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Posted:
    message_id: str
    payload: dict[str, Any]
    status_code: int | None  # None: no answer (connection refused or cut)


async def post_signed(
    ghl: GHLSandbox, url: str, payload: dict[str, Any], http: httpx2.AsyncClient
) -> int | None:
    """POST a payload exactly as HighLevel would (signed); None when nothing answered."""
    body = ghl.encode(payload)
    headers = {"Content-Type": "application/json", **ghl.sign(body)}
    try:
        response = await http.post(url, content=body, headers=headers)
    except httpx2.TransportError:
        return None
    return response.status_code


async def post_all(
    ghl: GHLSandbox,
    url: str,
    payloads: Sequence[dict[str, Any]],
    *,
    concurrency: int = 16,
    into: list[Posted] | None = None,
) -> list[Posted]:
    """Post every payload, `concurrency` at a time; outcomes are appended to `into` (returned)
    as they come, so a caller can watch the burst's progress."""
    results = [] if into is None else into
    pending = iter(payloads)

    async def worker(http: httpx2.AsyncClient) -> None:
        for payload in pending:
            code = await post_signed(ghl, url, payload, http)
            results.append(Posted(payload["messageId"], payload, code))

    async with httpx2.AsyncClient(timeout=15.0) as http:
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
    return results


def payloads(
    ghl: GHLSandbox,
    phones: Iterable[str],
    *,
    location_id: str | None = None,
    text: str = "hello from castbridge",
    **fields: Any,
) -> list[dict[str, Any]]:
    """Delivery-URL bodies, registered with the sandbox so it accepts status updates for them."""
    made = []
    for phone in phones:
        payload = ghl.delivery_payload(phone=phone, message=text, location_id=location_id, **fields)
        made.append(payload)
    return made


def interleave(*groups: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Round-robin over equally long groups: a0, b0, c0, a1, b1, c1, ..."""
    return [item for row in zip(*groups, strict=True) for item in row]


def restart_window(ghl: GHLSandbox, message_ids: Iterable[str]) -> None:
    """A payload built earlier starts its not-downstreamed window when it is really posted."""
    now = time.monotonic()
    for message_id in message_ids:
        ghl.messages[message_id].emitted_at = now


def terminal(ghl: GHLSandbox, message_id: str) -> bool:
    return any(status in {"delivered", "failed"} for status in ghl.statuses(message_id))


def all_terminal(ghl: GHLSandbox, message_ids: Iterable[str]) -> bool:
    return all(terminal(ghl, message_id) for message_id in message_ids)


# --- castbridge's database ----------------------------------------------------------------


async def messages_by_ghl_id(settings: Settings) -> dict[str, Message]:
    async with open_store(settings, upgrade=False) as store, store.sessions() as session:
        rows = await repo.list_messages(session, limit=1_000_000)
    return {row.ghl_message_id: row for row in rows}


async def attempts_of(settings: Settings, ghl_message_id: str) -> list[Attempt]:
    async with open_store(settings, upgrade=False) as store, store.sessions() as session:
        message = await repo.get_message_by_ghl_id(session, ghl_message_id)
        assert message is not None, ghl_message_id
        return await repo.attempts_for_message(session, message.id)


async def job_states(settings: Settings) -> list[str]:
    """`kind:state` of every job there is with a count, e.g. `send:done`."""
    async with open_store(settings, upgrade=False) as store, store.sessions() as session:
        return sorted(await repo.job_counts(session))


async def open_jobs(settings: Settings, ghl_message_id: str) -> int:
    """How many of the message's jobs are still queued or running."""
    async with open_store(settings, upgrade=False) as store, store.sessions() as session:
        message = await repo.get_message_by_ghl_id(session, ghl_message_id)
        assert message is not None, ghl_message_id
        jobs = await repo.jobs_for_message(session, message.id)
    return sum(1 for job in jobs if job.state in {"queued", "running"})


# --- the CLI and castbridge as a process ----------------------------------------------------


async def cli(settings: Settings, *args: str) -> Result:
    """Run `castbridge ARGS` in a thread (the CLI runs its own event loop) against `settings`.

    The CLI configures logging for the whole process, onto CliRunner's streams, which are
    closed afterwards; the previous set-up is put back so castbridge here keeps logging.
    Parse `result.stdout`: castbridge's own log lines may land in the captured stderr.
    """
    env = {**settings_env(settings), "COLUMNS": "250", "CASTBRIDGE_LOG_LEVEL": "WARNING"}
    with restored_logging():
        return await asyncio.to_thread(CliRunner().invoke, cli_app, list(args), env=env)


@contextlib.contextmanager
def restored_logging() -> Iterator[None]:
    """Put structlog's and the root logger's configuration back as it was."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        structlog.configure(**saved)
        root.handlers[:] = handlers
        root.setLevel(level)


class Castbridge:
    """`python -m castbridge serve` in a subprocess, configured by environment variables."""

    def __init__(self, settings: Settings, workdir: Path, **env: str) -> None:
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("CAST", "GHL_"))},
            **settings_env(settings),
            "CASTBRIDGE_LOG_LEVEL": "WARNING",
            "CASTBRIDGE_LOG_FORMAT": "json",
            **env,
        }
        self.url = f"http://127.0.0.1:{settings.port}"
        self.workdir = workdir  # no stray .env is read from here
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0

    async def start(self, *, within: float = 30.0) -> None:
        """Start the process and wait until it answers /healthz."""
        self.process = self._spawn()
        deadline = time.monotonic() + within
        async with httpx2.AsyncClient(timeout=1.0) as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"castbridge exited early: {self.log()[-2000:]}")
                try:
                    if (await http.get(f"{self.url}/healthz")).status_code == 200:
                        return
                except httpx2.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"castbridge did not start: {self.log()[-2000:]}")

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.runs += 1
        with (self.workdir / f"castbridge-{self.runs}.log").open("wb") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "castbridge", "serve"],
                env=self.env,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return (self.workdir / f"castbridge-{self.runs}.log").read_text(errors="replace")

    def kill(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    async def wait(self, *, within: float) -> int | None:
        """The exit code, or None if the process is still running after `within` seconds."""
        assert self.process is not None
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                return code
            await asyncio.sleep(0.05)
        return self.process.poll()

    def stop(self) -> None:
        """Cleanup: make sure the process is gone (only the one this object started)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
