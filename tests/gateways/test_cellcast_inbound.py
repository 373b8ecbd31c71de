"""poll_inbound over getResponses (newest first): watermark ties, page caps, resumed walks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import pytest_asyncio

from castbridge.gateways.cellcast import Cursor
from castbridge.sandbox.cellcast import DEFAULT_API_KEY, SHARED_NUMBER
from tests.gateways.cellcast_support import (
    CellcastEnv,
    ManualClock,
    SharedServer,
    make_config,
    shared_server,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server() -> AsyncIterator[SharedServer]:
    async with shared_server() as shared:
        yield shared


def _env(server: SharedServer, page_size: int = 10) -> tuple[CellcastEnv, ManualClock]:
    clock = ManualClock()
    return server.sandbox(make_config(responses_page_size=page_size), clock=clock), clock


def _reply(env: CellcastEnv, text: str, number: str = "0412345678") -> str:
    result = env.sandbox.emit_reply(DEFAULT_API_KEY, number, text)
    return str(result["message_id"])


async def test_replies_come_newest_first_and_are_not_reported_twice(server: SharedServer) -> None:
    """A first poll returns every reply, newest first; polling again with its cursor returns
    nothing until a new reply arrives, then only that one."""
    env, clock = _env(server)
    gateway = env.gateway()
    _reply(env, "one")
    clock.advance(1)
    _reply(env, "two")
    page = await gateway.poll_inbound(None, max_pages=5)
    assert [i.text for i in page.items] == ["two", "one"]
    first = page.items[0]
    assert (first.from_number, first.to_number) == ("61412345678", SHARED_NUMBER)
    assert first.received_at == datetime.fromtimestamp(clock.now, UTC)
    again = await gateway.poll_inbound(page.cursor, max_pages=5)
    assert again.items == ()
    assert Cursor.decode(again.cursor) == Cursor.decode(page.cursor)
    clock.advance(1)
    _reply(env, "three")
    newer = await gateway.poll_inbound(again.cursor, max_pages=5)
    assert [i.text for i in newer.items] == ["three"]


async def test_replies_sharing_the_watermark_time_are_neither_lost_nor_repeated(
    server: SharedServer,
) -> None:
    """Two replies at the watermark's exact time were reported; a third at that same time
    arriving later is new, the first two are not."""
    env, _clock = _env(server)
    gateway = env.gateway()
    _reply(env, "a", "0412345001")
    _reply(env, "b", "0412345002")
    page = await gateway.poll_inbound(None, max_pages=5)
    assert sorted(i.text for i in page.items) == ["a", "b"]
    _reply(env, "c", "0412345003")  # same clock reading as a and b
    later = await gateway.poll_inbound(page.cursor, max_pages=5)
    assert [i.text for i in later.items] == ["c"]
    assert (await gateway.poll_inbound(later.cursor, max_pages=5)).items == ()


async def test_a_page_cap_resumes_where_it_stopped(server: SharedServer) -> None:
    """Seven replies, two a page, two pages a run: the next run resumes at page 3 (even after
    a new reply pushed rows down), and a run after that picks up the new reply. Every reply
    is reported; repeats only ever come from the shift, and castbridge dedupes those."""
    env, clock = _env(server, page_size=2)
    gateway = env.gateway()
    ids = []
    for n in range(7):
        ids.append(_reply(env, f"r{n}", f"041234500{n}"))
        clock.advance(1)
    first = await gateway.poll_inbound(None, max_pages=2)
    assert [i.text for i in first.items] == ["r6", "r5", "r4", "r3"]
    assert Cursor.decode(first.cursor).resume_page == 3
    ids.append(_reply(env, "late", "0412345999"))
    second = await gateway.poll_inbound(first.cursor, max_pages=2)
    third = await gateway.poll_inbound(second.cursor, max_pages=2)
    fourth = await gateway.poll_inbound(third.cursor, max_pages=2)
    seen = [i.gateway_message_id for p in (first, second, third) for i in p.items]
    assert set(seen) == set(ids)
    assert "late" in [i.text for i in third.items]
    assert fourth.items == ()
    assert Cursor.decode(fourth.cursor).resume_page is None


async def test_a_bare_time_cursor_starts_there(server: SharedServer) -> None:
    """An ISO time as the first cursor skips older replies (no importing old history); a reply
    at exactly that time is reported."""
    env, clock = _env(server)
    gateway = env.gateway()
    _reply(env, "old")
    clock.advance(5)
    start = datetime.fromtimestamp(clock.now, UTC).isoformat()
    _reply(env, "at the start")
    clock.advance(5)
    _reply(env, "new")
    page = await gateway.poll_inbound(start, max_pages=5)
    assert [i.text for i in page.items] == ["new", "at the start"]


async def test_an_empty_inbox_keeps_an_empty_watermark(server: SharedServer) -> None:
    """No replies at all: nothing found, and the cursor still means "from the beginning"."""
    env, _ = _env(server)
    page = await env.gateway().poll_inbound(None, max_pages=3)
    assert page.items == ()
    assert Cursor.decode(page.cursor) == Cursor()
