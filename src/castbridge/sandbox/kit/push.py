"""Webhooks a sandbox posts to castbridge (delivery reports, replies, opt-outs), retried on a
non-2xx answer the way the real gateways appear to, and recorded for tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

import httpx2


@dataclass
class Delivery:
    url: str
    body: bytes
    statuses: list[int | None] = field(default_factory=list)  # None: no answer

    @property
    def delivered(self) -> bool:
        return any(status is not None and 200 <= status < 300 for status in self.statuses)

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookPusher:
    """Posts webhook bodies in the background; `attempts` tries each, `retry_delay` apart."""

    def __init__(
        self, *, attempts: int = 3, retry_delay: float = 0.5, timeout: float = 10.0
    ) -> None:
        self.attempts = attempts
        self.retry_delay = retry_delay
        self.timeout = timeout
        self.deliveries: list[Delivery] = []
        self.enabled = True  # False: pushes are recorded but never posted (a webhook "down")
        self._tasks: set[asyncio.Task[None]] = set()

    def schedule(self, url: str | None, payload: Any, *, delay: float = 0.0) -> Delivery | None:
        """Post `payload` (JSON) to `url` after `delay` seconds; None when no URL is set."""
        if not url:
            return None
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        delivery = Delivery(url, body)
        self.deliveries.append(delivery)
        task = asyncio.get_running_loop().create_task(self._run(delivery, delay))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return delivery

    async def _run(self, delivery: Delivery, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        if not self.enabled:
            return
        async with httpx2.AsyncClient(timeout=self.timeout) as http:
            for attempt in range(self.attempts):
                if attempt:
                    await asyncio.sleep(self.retry_delay)
                try:
                    response = await http.post(
                        delivery.url,
                        content=delivery.body,
                        headers={"Content-Type": "application/json"},
                    )
                    delivery.statuses.append(response.status_code)
                    if response.is_success:
                        return
                except httpx2.TransportError:
                    delivery.statuses.append(None)

    async def drain(self, within: float = 10.0) -> None:
        """Wait for every scheduled push to finish (tests)."""
        if not self._tasks:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*list(self._tasks), return_exceptions=True), within
            )

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
