"""After an ambiguous send, find_sent proves what happened through GET /sms: found → the same
id and nothing re-sent; absent → conclusive only when every page was read and the window has
settled, so a resend never bills twice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from castbridge.gateways.base import GatewayError, SendRequest
from tests.gateways.castbrick_support import (
    AO,
    AO_OTHER,
    CastBrickEnv,
    SharedServer,
    make_config,
    shared_server,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

SETTLE = timedelta(minutes=3).total_seconds()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server() -> AsyncIterator[SharedServer]:
    async with shared_server() as shared:
        yield shared


def _request(text: str = "Your code is 1234", to: str = AO) -> SendRequest:
    return SendRequest(to_e164=to, text=text, reference="loc-1:msg-1")


async def _ambiguous_send(env: CastBrickEnv, request: SendRequest, **faults: Any) -> None:
    for name, value in faults.items():
        setattr(env.sandbox.faults, name, value)
    with pytest.raises(GatewayError) as caught:
        await env.gateway(base_path="", timeout_seconds=0.3).send(request)
    assert caught.value.outcome_unknown


@pytest.mark.parametrize(
    "faults",
    [{"timeout_next": 1, "timeout_seconds": 5.0}, {"drop_next": 1}, {"garble_next": 1}],
    ids=["timeout", "dropped", "garbled"],
)
async def test_an_ambiguous_send_that_happened_is_found(
    server: SharedServer, faults: dict[str, Any]
) -> None:
    """CastBrick took and billed the send but the answer was lost: find_sent returns its id,
    conclusively, so the core marks it sent and never sends it again."""
    env = server.sandbox()
    request = _request()
    since = env.now()
    await _ambiguous_send(env, request, **faults)
    until = env.now()
    (stored,) = env.sandbox.messages.values()
    found = await env.gateway(base_path="").find_sent(request, since=since, until=until)
    assert found.conclusive
    assert found.found is not None
    assert found.found.gateway_message_id == stored.batch_id
    assert env.sandbox.billed(AO, request.text) == 1


async def test_a_send_that_never_happened_is_absent_once_settled(server: SharedServer) -> None:
    """Cut before CastBrick processed it: absent but not conclusive while the window is
    fresh; conclusive once it settled, and the one resend is billed exactly once."""
    env = server.sandbox()
    request = _request()
    since = env.now()
    await _ambiguous_send(env, request, cut_before_next=1)
    until = env.now()
    gateway = env.gateway(base_path="")
    fresh = await gateway.find_sent(request, since=since, until=until)
    assert (fresh.found, fresh.conclusive) == (None, False)
    env.clock.advance(SETTLE)
    settled = await gateway.find_sent(request, since=since, until=until)
    assert (settled.found, settled.conclusive) == (None, True)
    await gateway.send(request)
    assert env.sandbox.billed(AO, request.text) == 1


async def test_a_queued_message_hidden_by_a_sent_at_filter_is_not_declared_absent(
    server: SharedServer,
) -> None:
    """If `from`/`to` filter on sentAt, a message still queued is not listed yet: the fresh
    window is inconclusive, and once settled the (now sent) message is found, not resent."""
    env = server.sandbox(make_config(date_filter="sentAt", sent_after_seconds=60))
    request = _request()
    since = env.now()
    await _ambiguous_send(env, request, timeout_next=1, timeout_seconds=5.0)
    until = env.now()
    gateway = env.gateway(base_path="")
    fresh = await gateway.find_sent(request, since=since, until=until)
    assert (fresh.found, fresh.conclusive) == (None, False)
    env.clock.advance(SETTLE)
    later = await gateway.find_sent(request, since=since, until=until)
    assert later.found is not None
    assert env.sandbox.billed(AO, request.text) == 1


async def test_every_page_is_read(server: SharedServer) -> None:
    """The match on the last of three pages is found; an absence is conclusive only after
    the last page said there is no next one."""
    env = server.sandbox(make_config(max_page_size=50))
    gateway = env.gateway(base_path="")
    since = env.now()
    target = _request("the one")
    await gateway.send(target)
    for n in range(110):
        await gateway.send(_request(f"noise {n}"))
    await gateway.send(_request("the one", to=AO_OTHER))
    until = env.now()
    env.clock.advance(SETTLE)
    env.sandbox.stats.calls.clear()
    found = await gateway.find_sent(target, since=since, until=until)
    assert found.found is not None
    assert env.sandbox.messages[found.found.gateway_message_id or ""].phone == AO
    assert env.sandbox.stats.calls["GET /sms"] == 3
    absent = await gateway.find_sent(_request("never sent"), since=since, until=until)
    assert (absent.found, absent.conclusive) == (None, True)


async def test_text_and_window_must_match(server: SharedServer) -> None:
    """Another text to the same number, or the same text outside the window (wider than the
    clock margin), is not it."""
    env = server.sandbox()
    gateway = env.gateway(base_path="")
    await gateway.send(_request("something else"))
    env.clock.advance(20 * 60)
    since = env.now()
    env.clock.advance(SETTLE)
    result = await gateway.find_sent(_request("something else"), since=since, until=since)
    assert result.found is None
    other = await gateway.find_sent(_request(), since=since, until=since)
    assert (other.found, other.conclusive) == (None, True)


_PAST = datetime.now(UTC) - timedelta(hours=1)


def _item(**fields: Any) -> dict[str, Any]:
    return {
        "id": "m-1",
        "recipientPhone": "244923000000",
        "message": "Your code is 1234\r\n",
        "status": "Sent",
        "createdAt": _PAST.isoformat(),
        **fields,
    }


async def test_numbers_and_line_endings_are_normalised(server: SharedServer) -> None:
    """An item listing the number without '+' and the text with CRLF is still the send."""
    gateway = server.canned_gateway(200, {"items": [_item()], "hasNextPage": False})
    result = await gateway.find_sent(_request(), since=_PAST, until=_PAST)
    assert result.found is not None
    assert (result.found.gateway_message_id, result.conclusive) == ("m-1", True)


@pytest.mark.parametrize(
    "page",
    [
        {"items": [_item(message="other")]},
        {"items": [_item(message="other"), {"status": "Sent"}], "hasNextPage": False},
        {"items": [_item(message="other", recipientPhone=None)], "hasNextPage": False},
    ],
    ids=["no-paging-info", "unreadable-item", "item-without-phone"],
)
async def test_absence_is_inconclusive_when_coverage_is_unproven(
    server: SharedServer, page: dict[str, Any]
) -> None:
    """A page that says nothing about further pages, or holds an item we cannot read, proves
    nothing about the window."""
    gateway = server.canned_gateway(200, page)
    result = await gateway.find_sent(_request(), since=_PAST, until=_PAST)
    assert (result.found, result.conclusive) == (None, False)


async def test_the_candidate_nearest_the_attempt_wins(server: SharedServer) -> None:
    """Two identical sends in the window: the one closest to the attempt is taken."""
    near = _item(id="near", createdAt=(_PAST + timedelta(seconds=2)).isoformat())
    far = _item(id="far", createdAt=(_PAST + timedelta(minutes=8)).isoformat())
    gateway = server.canned_gateway(200, {"items": [far, near], "hasNextPage": False})
    result = await gateway.find_sent(_request(), since=_PAST, until=_PAST)
    assert result.found is not None
    assert result.found.gateway_message_id == "near"
