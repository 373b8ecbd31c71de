"""Send once, then reconcile by customString: ambiguous sends are found, or proven absent."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import pytest
import pytest_asyncio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from castbridge.gateways.base import GatewayError, SendRequest
from castbridge.gateways.cellcast import CellcastClient, CellcastGateway, custom_string
from castbridge.gateways.cellcast.adapter import RECONCILE_MAX_PAGES, RECONCILE_SETTLE
from castbridge.sandbox.cellcast import DEFAULT_API_KEY
from tests.gateways.cellcast_support import (
    AU,
    CellcastEnv,
    ManualClock,
    SharedServer,
    make_config,
    shared_server,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

REF = "LocAAA111:MsgBBB222"
CS = custom_string(REF)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server() -> AsyncIterator[SharedServer]:
    async with shared_server() as shared:
        yield shared


def _request(text: str = "Your appointment is at 3pm") -> SendRequest:
    return SendRequest(to_e164=AU, text=text, reference=REF)


def _settled(after: datetime) -> Callable[[], datetime]:
    """A gateway clock far enough past the attempt for absence to count."""
    return lambda: after + RECONCILE_SETTLE + timedelta(seconds=1)


async def _ambiguous_send(env: CellcastEnv, gateway: CellcastGateway, fault: str) -> None:
    setattr(env.sandbox.faults, fault, 1)
    env.sandbox.faults.timeout_seconds = 2.0
    with pytest.raises(GatewayError) as caught:
        await gateway.send(_request())
    assert caught.value.outcome_unknown


@pytest.mark.parametrize("fault", ["timeout_next", "drop_next", "garble_next"])
async def test_a_send_cellcast_took_is_found_and_never_resent(
    server: SharedServer, fault: str
) -> None:
    """The answer was lost after Cellcast queued the message: find_sent returns the same id
    the sandbox gave it, so the core records it instead of sending again."""
    env = server.sandbox()
    async with httpx2.AsyncClient(timeout=0.3) as http:
        gateway = env.gateway(http=http)
        since = datetime.now(UTC)
        await _ambiguous_send(env, gateway, fault)
        until = datetime.now(UTC)
        found = await gateway.find_sent(_request(), since=since, until=until)
    (message,) = env.sandbox.messages.values()
    assert found.conclusive
    assert found.found is not None
    assert (found.found.gateway_message_id, found.found.parts) == (message.message_id, 1)
    assert env.sandbox.billed(CS) == 1
    assert env.sandbox.billed_to(AU, _request().text) == 1


@pytest.mark.parametrize(("fault", "fails"), [("cut_before_next", None), ("fail_next", [502])])
async def test_a_send_cellcast_never_took_is_proven_absent_then_sent_once(
    server: SharedServer, fault: str, fails: list[int] | None
) -> None:
    """Cut before processing, or a 502 in front of it: after the settle time the filtered list
    is conclusive, the core sends again, and the message is billed exactly once."""
    env = server.sandbox()
    since = datetime.now(UTC)
    gateway = env.gateway()
    if fails is not None:
        env.sandbox.faults.fail_next = fails
        with pytest.raises(GatewayError) as caught:
            await gateway.send(_request())
        assert caught.value.outcome_unknown
    else:
        await _ambiguous_send(env, gateway, fault)
    until = datetime.now(UTC)
    early = await gateway.find_sent(_request(), since=since, until=until)
    assert (early.found, early.conclusive) == (None, False)  # too soon to be sure
    later = env.gateway(clock=_settled(until))
    absent = await later.find_sent(_request(), since=since, until=until)
    assert (absent.found, absent.conclusive) == (None, True)
    assert env.sandbox.billed(CS) == 0
    result = await later.send(_request())
    assert env.sandbox.billed(CS) == 1
    again = await later.find_sent(_request(), since=since, until=datetime.now(UTC))
    assert again.found is not None
    assert again.found.gateway_message_id == result.gateway_message_id


async def test_account_local_days_are_covered(server: SharedServer) -> None:
    """A send at 23:30 UTC is on the next day in Sydney; the day either side still finds it."""
    clock = ManualClock(datetime(2026, 3, 2, 23, 30, tzinfo=UTC).timestamp())
    env = server.sandbox(clock=clock)
    gateway = env.gateway()
    await gateway.send(_request())
    when = datetime.fromtimestamp(clock.now, UTC)
    found = await gateway.find_sent(
        _request(), since=when - timedelta(seconds=5), until=when + timedelta(seconds=5)
    )
    assert found.found is not None
    day = env.sandbox.report_list(
        env.sandbox.account(DEFAULT_API_KEY),
        {"campType": "sms", "fromDate": "2026-03-02", "toDate": "2026-03-02"},
    )
    assert day["data"]["items"] == []  # the naive same-day query would have missed it


async def test_rows_with_another_custom_string_do_not_match(server: SharedServer) -> None:
    """When rows carry customString, a row for another message to the same number is not
    ours; absence stays conclusive once settled."""
    env = server.sandbox(make_config(list_custom_string=True))
    other = SendRequest(to_e164=AU, text=_request().text, reference="LocAAA111:Other")
    await env.gateway().send(other)
    now = datetime.now(UTC)
    result = await env.gateway(clock=_settled(now)).find_sent(
        _request(), since=now - timedelta(minutes=1), until=now
    )
    assert (result.found, result.conclusive) == (None, True)


def _list_app(pages: list[list[Any]], *, endless: bool = False) -> FastAPI:
    """A Cellcast list endpoint that ignores the customString filter and pages `pages`."""
    app = FastAPI()

    @app.get("/api/v2/report/message")
    async def listing(request: Request) -> Response:
        page = int(request.query_params.get("page", "1"))
        items = (
            pages[min(page, len(pages)) - 1]
            if endless
            else (pages[page - 1] if page <= len(pages) else [])
        )
        more = endless or page < len(pages)
        data = {"items": items, "hasNextPage": more, "nextPage": page + 1 if more else None}
        return JSONResponse({"status": True, "message": "Success", "data": data})

    return app


def _row(row_id: str, receiver: str = "412345678", message: str | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"_id": row_id, "status": "sent", "receiver": receiver}
    if message is not None:
        row["message"] = message
    return row


def _canned_gateway(server: SharedServer, app: FastAPI) -> CellcastGateway:
    server.switch.app = app
    client = CellcastClient(server.http, api_key=DEFAULT_API_KEY, base_url=server.canned_url)
    return CellcastGateway(client, clock=_settled(datetime.now(UTC)))


async def test_every_page_is_read_before_concluding(server: SharedServer) -> None:
    """A server that ignored the filter returns other rows first; the match on page 2 (in
    national form without the 0, text with \\r\\n) is found."""
    text = "Line one\nline two"
    pages = [
        [_row("a" * 24, receiver="491570156"), _row("b" * 24, receiver="400000001")],
        [_row("c" * 24, message="Line one\r\nline two")],
    ]
    gateway = _canned_gateway(server, _list_app(pages))
    now = datetime.now(UTC)
    found = await gateway.find_sent(_request(text), since=now, until=now)
    assert found.found is not None
    assert found.found.gateway_message_id == "c" * 24


@pytest.mark.parametrize(
    ("rows", "why"),
    [
        ([_row("a" * 24, message="some other text")], "same number, other text"),
        ([{"status": "sent"}], "an unreadable row"),
        ([{"_id": "d" * 24, "status": "sent"}], "a row without receiver"),
    ],
)
async def test_doubtful_rows_make_absence_inconclusive(
    server: SharedServer, rows: list[Any], why: str
) -> None:
    """Rows that could be ours but cannot be told apart never prove absence."""
    gateway = _canned_gateway(server, _list_app([rows]))
    now = datetime.now(UTC)
    result = await gateway.find_sent(_request(), since=now, until=now)
    assert (result.found, result.conclusive) == (None, False), why


async def test_the_page_cap_makes_absence_inconclusive(server: SharedServer) -> None:
    """A list that never ends is read up to the cap, then nothing is concluded."""
    gateway = _canned_gateway(
        server, _list_app([[_row("e" * 24, receiver="400000001")]], endless=True)
    )
    now = datetime.now(UTC)
    result = await gateway.find_sent(_request(), since=now, until=now)
    assert (result.found, result.conclusive) == (None, False)
    assert RECONCILE_MAX_PAGES >= 2


async def test_an_empty_list_is_conclusive_once_settled(server: SharedServer) -> None:
    """No rows at all, every page read and the settle time passed: provably not sent."""
    gateway = _canned_gateway(server, _list_app([[]]))
    now = datetime.now(UTC)
    result = await gateway.find_sent(_request(), since=now, until=now)
    assert (result.found, result.conclusive) == (None, True)
