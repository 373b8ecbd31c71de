"""Waking an idle worker: at once for work this process queued, else at the next due time."""

from __future__ import annotations

import asyncio
import contextlib


class Wake:
    """An in-process signal; set by intake and by finished jobs."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self, seconds: float) -> None:
        self._event.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout=max(seconds, 0.005))
