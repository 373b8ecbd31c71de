"""UgsmsClient against the UGSMS sandbox (and canned answers) over real HTTP: sends, the tolerant
success parser, balance shapes and the index-mapped bulk."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from castbridge.sandbox.ugsms import DEFAULT_API_KEY, DEFAULT_SENDER_ID, UgsmsSandboxConfig
from tests.gateways.ugsms_support import UG_LOCAL, SharedServer, UgsmsEnv, shared_server

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server() -> AsyncIterator[SharedServer]:
    async with shared_server() as shared:
        yield shared


@pytest.fixture
def env(server: SharedServer) -> UgsmsEnv:
    return server.sandbox()


async def test_send_is_accepted_with_the_documented_data(env: UgsmsEnv) -> None:
    """200 {success:true, data:{message_id, recipients, estimated_cost, remaining_balance}}."""
    result = await env.client().send(UG_LOCAL, "Hello", sender_id=DEFAULT_SENDER_ID)
    assert result.message_id is not None
    assert uuid.UUID(result.message_id).version == 4
    assert (result.recipients, result.estimated_cost, result.remaining_balance) == (
        1,
        35.0,
        9965.0,
    )
    assert result.message == "Message sent successfully"
    stored = env.sandbox.messages[result.message_id]
    assert (stored.numbers, stored.sender_id, stored.api_version) == (
        (UG_LOCAL,),
        DEFAULT_SENDER_ID,
        "v2",
    )
    assert env.sandbox.billed(UG_LOCAL, "Hello", DEFAULT_API_KEY) == 1
    assert dict(env.sandbox.stats.auth_via) == {"header": 1}


async def test_several_numbers_go_comma_separated(env: UgsmsEnv) -> None:
    """A sequence of numbers is sent as UGSMS's comma-separated `numbers` string."""
    result = await env.client().send([UG_LOCAL, "0776913451"], "Hi")
    assert result.recipients == 2
    assert env.sandbox.billed(text="Hi") == 2


async def test_the_key_travels_only_in_the_x_api_key_header(server: SharedServer) -> None:
    """Never as an `api_key` parameter (it would land in logs), never as a Bearer token; the
    body has exactly UGSMS's fields."""
    canned = server.canned(200, {"success": True, "data": {"message_id": "m-1", "balance": 5}})
    await canned.client.send(UG_LOCAL, "Hello", sender_id="SHOP")
    await canned.client.balance()
    send, balance = canned.requests
    assert (send.method, send.path, send.query) == ("POST", "/api/v2/sms/send", "")
    assert (balance.method, balance.path, balance.query) == ("GET", "/api/v2/account/balance", "")
    for recorded in (send, balance):
        assert recorded.headers["x-api-key"] == DEFAULT_API_KEY
        assert "authorization" not in recorded.headers
        assert b"api_key" not in recorded.body
    assert json.loads(send.body) == {
        "numbers": UG_LOCAL,
        "message_body": "Hello",
        "sender_id": "SHOP",
    }


async def test_no_sender_id_is_left_out_of_the_body(server: SharedServer) -> None:
    """`sender_id` is optional; an empty one is not sent at all."""
    canned = server.canned(200, {"success": True})
    await canned.client.send(UG_LOCAL, "Hello", sender_id="")
    assert set(json.loads(canned.requests[0].body)) == {"numbers", "message_body"}


@pytest.mark.parametrize(
    ("body", "message_id"),
    [
        ({"success": True, "message": "Message sent successfully"}, None),
        ({"success": True, "data": None}, None),
        ({"success": True, "message_id": "top-level"}, "top-level"),
        ({"success": True, "data": {"message_id": 12345}}, "12345"),
        ({"success": "true", "data": {"message_id": "s"}}, "s"),
        ({"success": 1, "data": {"message_id": "one"}}, "one"),
        ({"success": True, "data": {"message_id": "x" * 400}}, "x" * 100),
        ({"success": True, "data": {"message_id": ["odd"]}}, None),
    ],
)
async def test_success_bodies_are_read_defensively(
    server: SharedServer, body: dict[str, Any], message_id: str | None
) -> None:
    """The v2 body is undocumented: `data.message_id` when present (else a top-level one),
    ids cut to 100 characters, `success` read as true from true, "true" or 1."""
    result = await server.canned(200, body).client.send(UG_LOCAL, "Hello")
    assert result.message_id == message_id


async def test_bare_success_body_from_the_sandbox_has_no_id(server: SharedServer) -> None:
    """The sandbox's `success_body="bare"` (v2 without `data`) is still an acceptance."""
    env = server.sandbox(UgsmsSandboxConfig(success_body="bare"))
    result = await env.client().send(UG_LOCAL, "Hello")
    assert result.message_id is None
    assert env.sandbox.billed(UG_LOCAL, "Hello") == 1


@pytest.mark.parametrize("shape", ["data", "top_level"])
async def test_balance_in_either_shape(server: SharedServer, shape: str) -> None:
    """`data.balance` or a top-level `balance`, in UGX."""
    env = server.sandbox(UgsmsSandboxConfig(balance_body=shape))  # type: ignore[arg-type]
    balance = await env.client().balance()
    assert (balance.balance, balance.currency) == (10_000.0, "UGX")


@pytest.mark.parametrize(
    ("body", "amount", "currency"),
    [
        ({"success": True, "data": {"balance": "1,500.50", "currency": "ugx"}}, 1500.5, "UGX"),
        ({"balance": 42}, 42.0, "UGX"),
        ({"success": True, "data": {"balance": None}, "balance": "7"}, 7.0, "UGX"),
        ({"success": True, "data": {"balance": 3, "currency": "X" * 50}}, 3.0, "X" * 8),
    ],
)
async def test_balance_bodies_are_read_defensively(
    server: SharedServer, body: dict[str, Any], amount: float, currency: str
) -> None:
    """Numeric strings, a missing success flag on a read and a missing currency are tolerated."""
    balance = await server.canned(200, body).client.balance()
    assert (balance.balance, balance.currency) == (amount, currency)


async def test_bulk_results_map_back_by_index(env: UgsmsEnv) -> None:
    """Each message of a bulk keeps its own outcome: index 1 (a bad number) is refused, the
    others accepted with their part counts; the batch reference is billed once."""
    result = await env.client().send_bulk(
        [(UG_LOCAL, "one"), ("0812345678", "two"), ("0776913451", "x" * 200)],
        sender_id=DEFAULT_SENDER_ID,
        reference="batch-1",
    )
    assert result.success
    assert [o.accepted for o in result.outcomes] == [True, False, True]
    assert [o.parts for o in result.outcomes] == [1, None, 2]
    assert result.outcomes[1].error == "Invalid phone number"
    assert result.unknown == ()
    assert env.sandbox.billed(UG_LOCAL, "one") == 1
    assert env.sandbox.billed("0812345678") == 0
    assert env.sandbox.billed_reference("batch-1") == 1


@pytest.mark.parametrize(
    ("data", "accepted"),
    [
        ({"successful_messages": [{"index": 0}], "failed_messages": None}, [True, None]),
        (
            {
                "successful_messages": [{"index": 0}, {"index": 1}],
                "failed_messages": [{"index": 1, "error": "x"}],
            },
            [True, None],
        ),
        ({"successful_messages": [{"index": "1"}, {"index": 9}, "junk"]}, [None, True]),
        ({}, [None, None]),
    ],
)
async def test_bulk_indexes_not_clearly_answered_are_unknown(
    server: SharedServer, data: dict[str, Any], accepted: list[bool | None]
) -> None:
    """An index UGSMS does not mention, or names as both sent and failed, has no known outcome."""
    canned = server.canned(200, {"success": True, "data": data})
    result = await canned.client.send_bulk([(UG_LOCAL, "a"), (UG_LOCAL, "b")])
    assert [o.accepted for o in result.outcomes] == accepted


async def test_bulk_with_every_message_refused_is_a_result(env: UgsmsEnv) -> None:
    """success:false with per-index failures is returned, not raised: each message is refused."""
    result = await env.client().send_bulk([("0812345678", "a"), ("12", "b")])
    assert not result.success
    assert [o.accepted for o in result.outcomes] == [False, False]
    assert env.sandbox.stats.sends == 0
