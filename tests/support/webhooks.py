"""Posting signed webhooks the way HighLevel does, and reading what it saw afterwards."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx2

from castbridge.sandbox.ghl import GHLSandbox


@dataclass(frozen=True, slots=True)
class Posted:
    message_id: str
    payload: dict[str, Any]
    status_code: int | None  # None: no answer (connection refused or cut)


def signed(ghl: GHLSandbox, payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """The exact bytes HighLevel would post and their headers (Ed25519 signature)."""
    body = ghl.encode(payload)
    return body, {"Content-Type": "application/json", **ghl.sign(body)}


async def post_signed(
    ghl: GHLSandbox, url: str, payload: dict[str, Any], http: httpx2.AsyncClient
) -> int | None:
    """POST a payload exactly as HighLevel would (signed); None when nothing answered."""
    body, headers = signed(ghl, payload)
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


def payloads(
    ghl: GHLSandbox,
    phones: Iterable[str],
    *,
    location_id: str | None = None,
    text: str = "hello from castbridge",
    **fields: Any,
) -> list[dict[str, Any]]:
    """Delivery-URL bodies, registered with the sandbox so it accepts status updates for them."""
    return [
        ghl.delivery_payload(phone=phone, message=text, location_id=location_id, **fields)
        for phone in phones
    ]


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
