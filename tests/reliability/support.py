"""Shared plumbing of the reliability runs: the size switch, castbridge as a process, a stack
served from a background thread for sync (Hypothesis, Schemathesis) tests, and counters.

`CASTBRIDGE_RELIABILITY_SCALE=ci` (the default) runs reduced sizes that fit CI; `full` runs the
sizes of the issue ("Measure it", part 2). docs/reliability.md records both.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx2
from sqlalchemy import func, select

from castbridge.config import Settings, settings_env
from castbridge.resources import open_store
from castbridge.sandbox.cast import DEFAULT_API_KEY, CastSandboxConfig, SandboxAccount
from castbridge.sandbox.ghl import GHLSandbox, GHLSandboxConfig
from castbridge.sandbox.stack import Stack, run_stack
from castbridge.store import repository as repo
from castbridge.store.models import Job, Message, SeenWebhook

T = TypeVar("T")

# --- the size switch ------------------------------------------------------------------------

SCALE = os.environ.get("CASTBRIDGE_RELIABILITY_SCALE", "ci").strip().lower() or "ci"
if SCALE not in {"ci", "full"}:
    raise RuntimeError(f"CASTBRIDGE_RELIABILITY_SCALE must be 'ci' or 'full', not {SCALE!r}")
FULL = SCALE == "full"


def sized(ci: T, full: T) -> T:
    """The CI value, or the issue's full-size value when CASTBRIDGE_RELIABILITY_SCALE=full."""
    return full if FULL else ci


def report(name: str, figures: dict[str, Any]) -> None:
    """One line of figures per run (shown with `pytest -s`; docs/reliability.md quotes them)."""
    line = " ".join(f"{key}={value}" for key, value in figures.items())
    print(f"\n[reliability:{SCALE}] {name}: {line}", flush=True)  # noqa: T201


# --- timings and sandboxes --------------------------------------------------------------------

# Not 0917: the sandbox gives 09170000404 and 09170000500 a known bad fate.
PH_MOBILE = "+63918{:07d}"

# castbridge overrides: polls, reports and retries in fractions of a second; Cast's limits
# raised on both sides so hundreds of messages fit the budget. HighLevel keeps its real
# 100 requests / 10 s per location, and castbridge its default 8/s under it.
FAST: dict[str, Any] = {
    "status_poll_schedule": "0.5,0.5",
    "report_initial_delay_seconds": 1.0,
    "worker_poll_interval": 0.1,
    "retry_base_seconds": 0.2,
    "retry_cap_seconds": 1.0,
    "cast_rate_limit": 150.0,
    "cast_ip_rate_limit": 400.0,
}


def cast_config(**values: Any) -> CastSandboxConfig:
    """The Cast sandbox with fast status timelines and credits for thousands of messages."""
    defaults: dict[str, Any] = {
        "accounts": [SandboxAccount(api_key=DEFAULT_API_KEY, credits=1_000_000, rate_limit=300.0)],
        "ip_rate": 2000.0,
        "ip_burst": 2000.0,
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


def location_ids(count: int) -> list[str]:
    """HighLevel-shaped (20 characters) location ids: sbxRel00000000000001, ..."""
    return [f"sbxRel{n:014d}" for n in range(1, count + 1)]


# --- webhooks ---------------------------------------------------------------------------------


def signed(ghl: GHLSandbox, payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """The exact bytes HighLevel would post and their headers (Ed25519 signature)."""
    body = ghl.encode(payload)
    return body, {"Content-Type": "application/json", **ghl.sign(body)}


async def post_signed(
    ghl: GHLSandbox, url: str, payload: dict[str, Any], http: httpx2.AsyncClient
) -> int | None:
    """POST a payload as HighLevel would; None when nothing answered (refused or cut off)."""
    body, headers = signed(ghl, payload)
    try:
        response = await http.post(url, content=body, headers=headers)
    except httpx2.TransportError:
        return None
    return response.status_code


@dataclass
class Delivery:
    """What HighLevel saw while delivering webhooks that it retries until answered 200."""

    acknowledged: set[str] = field(default_factory=set)
    tries: int = 0
    unanswered: int = 0  # connection refused or cut: castbridge was down or killed mid-request
    non_200: dict[int, int] = field(default_factory=dict)


async def deliver_until_acknowledged(
    ghl: GHLSandbox,
    url: str,
    bodies: Sequence[dict[str, Any]],
    *,
    concurrency: int = 16,
    retry_pause: float = 0.3,
    give_up_after: float = 120.0,
    seen: Delivery | None = None,
) -> Delivery:
    """Post every body; anything but a 200 is posted again later, as HighLevel retries.
    Progress is visible in `seen` (pass one in to watch it while this runs)."""
    seen = seen if seen is not None else Delivery()
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    deadline = time.monotonic() + give_up_after

    async def worker(http: httpx2.AsyncClient) -> None:
        while True:
            try:
                body = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            while time.monotonic() < deadline:
                seen.tries += 1
                code = await post_signed(ghl, url, body, http)
                if code == 200:
                    seen.acknowledged.add(body["messageId"])
                    break
                if code is None:
                    seen.unanswered += 1
                else:
                    seen.non_200[code] = seen.non_200.get(code, 0) + 1
                await asyncio.sleep(retry_pause)

    async with httpx2.AsyncClient(timeout=10.0) as http:
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
    return seen


def terminal(ghl: GHLSandbox, message_id: str) -> bool:
    return any(status in {"delivered", "failed"} for status in ghl.statuses(message_id))


def all_terminal(ghl: GHLSandbox, message_ids: Iterable[str]) -> bool:
    return all(terminal(ghl, message_id) for message_id in message_ids)


def restart_window(ghl: GHLSandbox, message_ids: Iterable[str]) -> None:
    """A payload built earlier starts its not-downstreamed window when it is really posted."""
    now = time.monotonic()
    for message_id in message_ids:
        ghl.messages[message_id].emitted_at = now


def highlevel_counts(ghl: GHLSandbox, message_ids: Iterable[str]) -> dict[str, int]:
    """Final statuses at HighLevel, and how often a status was reported more than once."""
    counts = {"delivered": 0, "failed": 0, "not_terminal": 0, "dup_msgs": 0, "dup_reports": 0}
    for message_id in message_ids:
        statuses = ghl.statuses(message_id)
        final = next((s for s in reversed(statuses) if s in {"delivered", "failed"}), None)
        counts[final or "not_terminal"] += 1
        extra = len(statuses) - len(set(statuses))
        if extra:
            counts["dup_msgs"] += 1
            counts["dup_reports"] += extra
    return counts


def billing_counts(snapshot: dict[str, Any]) -> dict[str, int]:
    """From the Cast sandbox: distinct idempotency keys billed, and keys billed more than once."""
    billed: dict[str, int] = snapshot["billed"]
    return {
        "billed": len(billed),
        "billed_twice": sum(1 for n in billed.values() if n > 1),
    }


# --- castbridge's database ----------------------------------------------------------------------


async def row_counts(settings: Settings) -> dict[str, int]:
    """Rows in the tables a webhook can write to, read through the store."""
    async with open_store(settings, upgrade=False) as store, store.sessions() as session:
        counts = {}
        for name, model in {"messages": Message, "jobs": Job, "seen_webhooks": SeenWebhook}.items():
            counts[name] = int(
                (await session.execute(select(func.count()).select_from(model))).scalar_one()
            )
        return counts


async def job_states(settings: Settings) -> dict[str, int]:
    async with open_store(settings, upgrade=False) as store, store.sessions() as session:
        return await repo.job_counts(session)


async def crashed_jobs(settings: Settings) -> list[str]:
    """last_error of every job the worker caught crashing (a bug, by the worker's definition)."""
    async with open_store(settings, upgrade=False) as store, store.sessions() as session:
        rows = await session.execute(select(Job.last_error).where(Job.last_error.like("crashed:%")))
        return [str(error) for (error,) in rows]


async def messages_by_ghl_id(settings: Settings) -> dict[str, Message]:
    async with open_store(settings, upgrade=False) as store, store.sessions() as session:
        rows = await repo.list_messages(session, limit=1_000_000)
    return {row.ghl_message_id: row for row in rows}


def stuck(states: dict[str, int]) -> dict[str, int]:
    """Jobs still queued or running ("kind:state" -> count)."""
    return {key: n for key, n in states.items() if key.endswith((":queued", ":running")) and n}


# --- castbridge as a process ------------------------------------------------------------------


class Castbridge:
    """`python -m castbridge serve` in a subprocess on the stack's port, logs to a file."""

    def __init__(self, settings: Settings, workdir: Path, **env: str) -> None:
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("CAST", "GHL_"))},
            **settings_env(settings),
            "CASTBRIDGE_LOG_LEVEL": "WARNING",
            "CASTBRIDGE_LOG_FORMAT": "json",
            **env,
        }
        self.url = f"http://127.0.0.1:{settings.port}"
        self.workdir = workdir  # the working directory: no stray .env is read from here
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def log_path(self, run: int) -> Path:
        return self.workdir / f"castbridge-{run}.log"

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.runs += 1
        with open(self.log_path(self.runs), "wb") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "castbridge", "serve"],
                env=self.env,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def start(self, *, within: float = 30.0) -> None:
        """Start the process and wait until /healthz answers."""
        self.process = self._spawn()
        deadline = time.monotonic() + within
        async with httpx2.AsyncClient(timeout=1.0) as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"castbridge exited early: {self.logs()[-2000:]}")
                with contextlib.suppress(httpx2.TransportError):
                    if (await http.get(f"{self.url}/healthz")).status_code == 200:
                        return
                await asyncio.sleep(0.05)
        raise RuntimeError(f"castbridge did not start: {self.logs()[-2000:]}")

    def logs(self) -> str:
        """Everything every run of the process wrote (stdout and stderr)."""
        return "".join(
            self.log_path(run).read_text(errors="replace") for run in range(1, self.runs + 1)
        )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)

    async def wait(self, within: float) -> int | None:
        """The exit code, or None if the process still runs after `within` seconds."""
        assert self.process is not None
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                return code
            await asyncio.sleep(0.02)
        return self.process.poll()

    async def terminate(self, within: float = 30.0) -> int | None:
        """SIGTERM and wait for the graceful exit."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return await self.wait(within)

    def stop(self) -> None:
        """Cleanup: make sure the process this object started is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def peak_rss_kib(pid: int) -> int:
    """VmHWM (peak resident memory since start or the last reset) of a process, in KiB."""
    return _status_kib(pid, "VmHWM")


def reset_peak_rss(pid: int) -> int:
    """Reset a process's VmHWM to its current resident memory (Linux); returns that, in KiB."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return _status_kib(pid, "VmRSS")


# --- a stack in a background thread, for sync tests ---------------------------------------------


class BackgroundStack:
    """run_stack(...) served by its own event loop in a thread, so sync tests (Hypothesis,
    Schemathesis, requests) can talk to it over HTTP and still reach its state through `run`."""

    def __init__(self, data_dir: Path, **kwargs: Any) -> None:
        self.data_dir = data_dir
        self.kwargs = kwargs
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="reliability-stack", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stack: Stack | None = None
        self._error: BaseException | None = None

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            async with run_stack(self.data_dir, **self.kwargs) as stack:
                self._stack = stack
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    def __enter__(self) -> BackgroundStack:
        self._thread.start()
        self._ready.wait(60)
        if self._error is not None or self._stack is None:
            raise RuntimeError("the stack did not start") from self._error
        return self

    def __exit__(self, *_: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
        if self._error is not None:
            raise self._error

    @property
    def stack(self) -> Stack:
        assert self._stack is not None
        return self._stack

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
        """Run a coroutine on the stack's loop (sandbox state and castbridge live there)."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)
