"""Waking an idle worker: at once for new work (in-process, or LISTEN/NOTIFY on PostgreSQL),
else at the next due time."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from typing import Any

from castbridge.logging import get_logger
from castbridge.store.dialect import JOBS_CHANNEL

log = get_logger(__name__)

# How often a quiet LISTEN connection is checked: a connection cut without a FIN (a NAT
# timeout, a failover) would otherwise look alive while no notification can arrive.
LISTEN_CHECK_SECONDS = 30.0
RECONNECT_MAX_SECONDS = 30.0


class Wake:
    """An in-process signal; set by intake and by finished jobs."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    async def wait(self, seconds: float) -> None:
        """Until set (also if it was set before the wait began, after the last clear)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout=max(seconds, 0.005))


class JobListener:
    """LISTEN for new due work on a dedicated asyncpg connection, one per worker process.

    The connection is not from the pool: a pooled connection is handed to other work and its
    LISTEN would be lost. While the connection is down the worker falls back to polling
    (`listening` is False), and after every (re)connect it looks at every lane once, because
    notifications sent while it was away are gone.
    """

    def __init__(self, dsn: str, on_lane: Callable[[str | None], None]) -> None:
        self._dsn = dsn
        self._on_lane = on_lane
        self._connected = False

    @property
    def listening(self) -> bool:
        return self._connected

    async def run(self) -> None:
        """Listen until cancelled, reconnecting with jittered backoff."""
        delay = 0.5
        while True:
            try:
                if await self._listen_once():
                    delay = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("worker_listen_lost", error=type(exc).__name__)
            finally:
                self._connected = False
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    async def _listen_once(self) -> bool:
        """One connection's life; True when it did connect (the backoff starts over)."""
        import asyncpg

        lost = asyncio.Event()
        connection: Any = await asyncpg.connect(self._dsn, timeout=10)
        try:
            connection.add_termination_listener(lambda _conn: lost.set())
            await connection.add_listener(JOBS_CHANNEL, self._notified)
            self._connected = True
            log.info("worker_listening", channel=JOBS_CHANNEL)
            self._on_lane(None)
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), LISTEN_CHECK_SECONDS)
                if not lost.is_set():
                    await connection.fetchval("SELECT 1", timeout=10)
            log.warning("worker_listen_lost", error="connection closed")
            return True
        finally:
            self._connected = False
            with contextlib.suppress(Exception):
                await asyncio.shield(connection.close(timeout=2))

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self._on_lane(payload or None)
