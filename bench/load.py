"""The load generator: pre-signed Delivery-URL webhooks posted over keep-alive connections."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx2

from bench.harness import percentile, self_cpu_seconds
from castbridge.sandbox.ghl import GHLSandbox

# One GSM-7 part, the common case (appointment reminders, order updates).
TEXT = "Hi! Your appointment at Makati Dental is confirmed for tomorrow 10:00 AM. Ref {n}"
# Each location texts a pool of contacts, as a sub-account does; the pool also keeps the
# sandbox's linear contact lookups cheap while payloads are being built.
PHONES_PER_LOCATION = 25


@dataclass(slots=True)
class Webhook:
    message_id: str
    body: bytes
    headers: dict[str, str]
    payload: dict[str, Any]


def prepare(ghl: GHLSandbox, count: int, locations: list[str]) -> list[Webhook]:
    """`count` signed webhooks with distinct messageIds, round-robin over `locations`.

    Bodies come from the HighLevel sandbox (`delivery_payload`, with `timestamp` and `webhookId`
    as HighLevel's own posts carry them) and are signed with its Ed25519 key, ahead of time, so
    firing costs the generator one HTTP request each and nothing else.
    """
    contacts: dict[tuple[str, str], str] = {}
    out: list[Webhook] = []
    cycle = itertools.cycle(locations)
    for n in range(count):
        location = next(cycle)
        slot = (n // len(locations)) % PHONES_PER_LOCATION
        phone = f"+63918{n % len(locations) % 1000:03d}{slot:04d}"
        payload = ghl.delivery_payload(
            phone=phone,
            message=TEXT.format(n=n),
            location_id=location,
            contact_id=contacts.get((location, phone)),
            webhook_fields=True,
        )
        contacts[(location, phone)] = payload["contactId"]
        body = ghl.encode(payload)
        headers = {"Content-Type": "application/json", **ghl.sign(body)}
        out.append(Webhook(payload["messageId"], body, headers, payload))
    return out


@dataclass
class FireResult:
    sent: int
    acknowledged: int  # answered 200
    statuses: dict[str, int]
    errors: int  # transport errors (no answer)
    seconds: float
    latencies_ms: list[float] = field(repr=False)
    posted_at: dict[str, float] = field(repr=False)  # messageId -> wall clock of the post
    generator_cpu_seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.acknowledged / self.seconds if self.seconds > 0 else 0.0

    def figures(self) -> dict[str, Any]:
        return {
            "requests": self.sent,
            "acknowledged": self.acknowledged,
            "non_200": {k: v for k, v in self.statuses.items() if k != "200"},
            "transport_errors": self.errors,
            "seconds": round(self.seconds, 3),
            "ack_per_s": round(self.rate, 1),
            "p50_ms": round(percentile(self.latencies_ms, 50), 2),
            "p99_ms": round(percentile(self.latencies_ms, 99), 2),
            "max_ms": round(max(self.latencies_ms, default=0.0), 2),
            # Share of one core the generator itself used: well under 1.0 means it was waiting
            # for the server, not the other way round.
            "generator_cpu_share": round(self.generator_cpu_seconds / self.seconds, 2)
            if self.seconds > 0
            else 0.0,
        }


class Generator:
    """A pool of `concurrency` keep-alive connections, opened before any measurement."""

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self.http = httpx2.AsyncClient(limits=limits, timeout=httpx2.Timeout(120.0))

    async def __aenter__(self) -> Generator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def warm(self, base_url: str) -> None:
        """Open every connection now, so the timed run measures requests, not TCP handshakes."""
        await asyncio.gather(
            *(self.http.get(f"{base_url}/healthz") for _ in range(self.concurrency))
        )

    async def fire(
        self, url: str, webhooks: list[Webhook], *, rate: float | None = None
    ) -> FireResult:
        """Closed loop by default: each connection posts its next webhook as soon as the last is
        answered. With `rate`, open loop: webhook i is posted at i / rate seconds, answered or
        not (steady traffic, as HighLevel sends it outside bursts)."""
        statuses: Counter[str] = Counter()
        latencies: list[float] = []
        posted_at: dict[str, float] = {}
        errors = 0

        async def post(hook: Webhook) -> None:
            nonlocal errors
            posted_at[hook.message_id] = time.time()
            started = time.perf_counter()
            try:
                response = await self.http.post(url, content=hook.body, headers=hook.headers)
            except httpx2.HTTPError:
                errors += 1
                return
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[str(response.status_code)] += 1

        queue = iter(webhooks)

        async def lane() -> None:
            for hook in queue:
                await post(hook)

        async def paced(index: int, hook: Webhook, start: float) -> None:
            assert rate is not None
            await asyncio.sleep(max(0.0, start + index / rate - time.perf_counter()))
            await post(hook)

        cpu0 = self_cpu_seconds()
        started = time.perf_counter()
        if rate is None:
            await asyncio.gather(*(lane() for _ in range(min(self.concurrency, len(webhooks)))))
        else:
            await asyncio.gather(*(paced(i, hook, started) for i, hook in enumerate(webhooks)))
        seconds = time.perf_counter() - started
        return FireResult(
            sent=len(webhooks),
            acknowledged=statuses.get("200", 0),
            statuses=dict(statuses),
            errors=errors,
            seconds=seconds,
            latencies_ms=latencies,
            posted_at=posted_at,
            generator_cpu_seconds=self_cpu_seconds() - cpu0,
        )
