"""Fair claiming end to end: one location's backlog does not hold back another location's
message, on the same gateway account or on its own (issue 8 §3). Orders, not timings: the
figures live in bench/fairness.py."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from castbridge.gateways.cast.retry import send_limit
from castbridge.sandbox.cast import DEFAULT_API_KEY, SandboxAccount
from castbridge.sandbox.stack import Stack, run_stack, wait_for
from tests.e2e.support import FAST, LOCATIONS, PH_MOBILE, cast_config, ghl_config, terminal

BACKLOG = 40
RATE = 3.0  # messages per second on the shared account: the backlog takes 13 s to drain
BURST = send_limit(RATE).burst  # what the account may send at once before spacing starts


def _send_order(s: Stack) -> list[str]:
    """HighLevel message ids in the order the Cast sandbox accepted them (the idempotency key
    is `<location>:<message>[:generation]`)."""
    sent = sorted(s.cast.messages.values(), key=lambda m: m.created_at)
    return [(m.idempotency_key or "").split(":")[1] for m in sent if m.idempotency_key]


@contextlib.asynccontextmanager
async def _shared_account(tmp_path: Path) -> AsyncIterator[Stack]:
    """A stack whose first two locations both send on the operator's account at RATE/s."""
    limited = cast_config(
        accounts=[SandboxAccount(api_key=DEFAULT_API_KEY, credits=10_000, rate_limit=RATE)]
    )
    overrides = {**FAST, "gateway_settings": {"cast": {"rate_limit": RATE}}}
    async with run_stack(tmp_path, cast_config=limited, ghl_config=ghl_config(), **overrides) as s:
        await s.install(LOCATIONS[0])
        await s.install(LOCATIONS[1])
        yield s


async def _sent_once_each(s: Stack, everyone: list[str]) -> list[str]:
    """Once every message is final at HighLevel: the send order, each message in it once."""
    assert await wait_for(lambda: all(terminal(s.ghl, m) for m in everyone), within=60)
    order = _send_order(s)
    assert sorted(order) == sorted(everyone)
    return order


async def test_a_message_behind_another_locations_backlog_on_the_same_account_goes_next(
    tmp_path: Path,
) -> None:
    """A has 40 messages queued on the operator's account, limited to 3/s; B's one message,
    arriving after all of them, is among the next few sent instead of waiting 13 seconds
    behind A's backlog; every message is sent once and delivered."""
    backlog_location, other = LOCATIONS[0], LOCATIONS[1]
    async with _shared_account(tmp_path) as s:
        started = time.monotonic()
        results = await asyncio.gather(
            *(
                s.ghl.send_delivery_webhook(
                    s.delivery_url,
                    phone=PH_MOBILE.format(n),
                    message=f"backlog {n}",
                    location_id=backlog_location,
                )
                for n in range(BACKLOG)
            )
        )
        assert {r.status_code for r in results} == {200}
        # On a loaded machine posting the backlog can take seconds. What went out meanwhile
        # was not waiting, and A's messages whose slot (A's queue is spaced at the account's
        # rate) came before B arrived were due first: B may wait behind those, not the rest.
        sent_before = len(s.cast.messages)
        lone = await s.ghl.send_delivery_webhook(
            s.delivery_url, phone=PH_MOBILE.format(999), message="hi", location_id=other
        )
        due_first = math.ceil(BURST + (time.monotonic() - started) * RATE)
        assert lone.status_code == 200
        everyone = [r.message_id for r in results] + [lone.message_id]
        order = await _sent_once_each(s, everyone)
        # B arrived after A's 40 were queued; oldest-first claiming would send it after every
        # one of them still waiting.
        waited_behind = order.index(lone.message_id) - sent_before
        assert sent_before < BACKLOG - 10, sent_before  # a backlog really was there
        assert due_first < BACKLOG - 10, due_first  # and most of it was not yet due
        assert waited_behind <= max(0, due_first - sent_before) + 3, (
            waited_behind,
            sent_before,
            due_first,
        )
        assert s.ghl.statuses(lone.message_id) == ["delivered"]
        assert {tuple(s.ghl.statuses(m)) for m in everyone} == {("delivered",)}


async def test_a_message_arriving_while_a_backlog_drains_at_the_accounts_rate_goes_next(
    tmp_path: Path,
) -> None:
    """B's message arrives while A's backlog goes out on time at the shared account's full
    rate, so the bucket is empty and B is refused at first. A refused send keeps its place: the
    next token is B's, not that of A's next pre-spaced message falling due just as it refills
    (B used to be requeued a little after each refill and lost every one to A's next message,
    until noise let it through or A's backlog drained)."""
    backlog_location, other = LOCATIONS[0], LOCATIONS[1]
    async with _shared_account(tmp_path) as s:

        def post(n: int, location: str) -> Any:
            return s.ghl.send_delivery_webhook(
                s.delivery_url, phone=PH_MOBILE.format(n), message=f"m {n}", location_id=location
            )

        # One message first, so tokens are minted and the worker is warm: A's backlog then
        # goes out exactly on its pre-spaced schedule, each message due as the bucket refills.
        first = await post(0, backlog_location)
        assert await wait_for(lambda: len(s.cast.messages) == 1, within=30)
        await asyncio.sleep(1.0 / RATE * BURST)  # the bucket is full again
        results = [
            first,
            *await asyncio.gather(*(post(n, backlog_location) for n in range(1, BACKLOG))),
        ]
        assert {r.status_code for r in results} == {200}
        assert await wait_for(lambda: len(s.cast.messages) >= BURST + 6, within=30)
        sent_before = len(s.cast.messages)
        lone = await post(999, other)
        assert lone.status_code == 200
        everyone = [r.message_id for r in results] + [lone.message_id]
        order = await _sent_once_each(s, everyone)
        waited_behind = order.index(lone.message_id) - sent_before
        assert sent_before < BACKLOG - 10, sent_before  # most of the backlog was still queued
        # One of A's may have been in flight when B arrived, and the next may have booked its
        # token just before B asked (bookings go two tokens ahead); then B has the next one.
        # Before the fix B lost the refills that followed: up to 6 of them in eight runs here.
        assert waited_behind <= 2, (waited_behind, sent_before)
        assert {tuple(s.ghl.statuses(m)) for m in everyone} == {("delivered",)}
