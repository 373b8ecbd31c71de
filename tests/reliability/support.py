"""Shared plumbing of the reliability runs: the size switch, castbridge as a process, a stack
served from a background thread for sync (Hypothesis, Schemathesis) tests, and counters.

`CASTBRIDGE_RELIABILITY_SCALE=ci` (the default) runs reduced sizes that fit CI; `full` runs the
sizes of the issue ("Measure it", part 2). docs/reliability.md records both.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from castbridge.sandbox.cast import DEFAULT_API_KEY, CastSandboxConfig, SandboxAccount
from castbridge.sandbox.ghl import GHLSandboxConfig
from castbridge.sandbox.process import Castbridge
from castbridge.sandbox.stack import Stack, run_stack
from tests.support.db import crashed_jobs, job_states, messages_by_ghl_id, row_counts, stuck
from tests.support.webhooks import (
    Delivery,
    all_terminal,
    deliver_until_acknowledged,
    highlevel_counts,
    post_signed,
    restart_window,
    signed,
    terminal,
)

__all__ = [
    "Castbridge",
    "Delivery",
    "all_terminal",
    "crashed_jobs",
    "deliver_until_acknowledged",
    "highlevel_counts",
    "job_states",
    "messages_by_ghl_id",
    "post_signed",
    "restart_window",
    "row_counts",
    "signed",
    "stuck",
    "terminal",
]

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
    "gateway_settings": {"cast": {"rate_limit": 150.0, "ip_rate_limit": 400.0}},
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


def billing_counts(snapshot: dict[str, Any]) -> dict[str, int]:
    """From the Cast sandbox: distinct idempotency keys billed, and keys billed more than once."""
    billed: dict[str, int] = snapshot["billed"]
    return {
        "billed": len(billed),
        "billed_twice": sum(1 for n in billed.values() if n > 1),
    }


# --- castbridge as a process ------------------------------------------------------------------


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
