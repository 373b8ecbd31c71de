"""CastBrickClient against the sandbox on loopback: sends, reads, the base-path probe."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from castbridge.gateways.castbrick import (
    CastBrickBasePathError,
    CastBrickCredentialsError,
    CastBrickForbiddenError,
    CastBrickUnavailableError,
)
from castbridge.sandbox.castbrick import DEFAULT_SENDER_ID
from tests.gateways.castbrick_support import (
    AO,
    AO_OTHER,
    SMS_ONLY_KEY,
    UNKNOWN_KEY,
    SharedServer,
    make_config,
    shared_server,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server() -> AsyncIterator[SharedServer]:
    async with shared_server() as shared:
        yield shared


async def test_send_posts_one_recipient_with_explicit_fallback(server: SharedServer) -> None:
    """The body has exactly one recipient, the sender, `fallback` and never `scheduledAt`;
    the answer's messageId is the stored message."""
    env = server.sandbox()
    client = env.client(base_path="")
    result = await client.send(AO, "Hello", sender_id=DEFAULT_SENDER_ID, fallback=False)
    assert result.message_id is not None
    stored = env.sandbox.messages[result.message_id]
    assert (stored.phone, stored.text, stored.sender_id) == (AO, "Hello", DEFAULT_SENDER_ID)
    assert stored.scheduled_at is None
    assert (result.status, result.recipient_count, result.cost_aoa) == ("Queued", 1, 10.0)
    assert env.sandbox.billed(AO, "Hello") == 1


@pytest.mark.parametrize("base_path", ["", "/v1"])
async def test_probe_finds_the_base_path_the_api_answers_on(
    server: SharedServer, base_path: str
) -> None:
    """The probe keeps whichever of the bare host and `/v1` answers with CastBrick's JSON,
    and returns the balance it read there."""
    env = server.sandbox(make_config(base_path=base_path))
    client = env.client()
    probe = await client.probe()
    assert probe.base_path == base_path
    assert client.base_path == base_path
    assert probe.balance is not None
    assert probe.balance.balance == 10_000.0
    assert probe.error is None


async def test_first_call_probes_once_then_uses_the_path(server: SharedServer) -> None:
    """Without a stored base path the first call probes (bare host 404, then /v1), and later
    calls go straight to the path found: one probe per client."""
    env = server.sandbox(make_config(base_path="/v1"))
    client = env.client()
    assert client.base_path is None
    await client.send(AO, "one", sender_id=None, fallback=False)
    await client.send(AO, "two", sender_id=None, fallback=False)
    calls = env.sandbox.stats.calls
    assert calls["GET <404>"] == 1  # the bare host, once
    assert calls["GET /billing/balance"] == 1
    assert calls["POST /sms/send"] == 2
    assert client.base_path == "/v1"


async def test_api_url_ending_in_v1_means_base_path_v1(server: SharedServer) -> None:
    """An operator URL `…/v1` is read as host + `/v1`: no probe, no `/v1/v1`."""
    env = server.sandbox(make_config(base_path="/v1"))
    client = env.client(api_url=env.url + "/v1/")
    assert client.base_path == "/v1"
    assert (await client.balance()).balance == 10_000.0
    assert env.sandbox.stats.calls["GET <404>"] == 0


async def test_probe_with_a_refused_key_still_finds_the_path(server: SharedServer) -> None:
    """A JSON 401 is CastBrick speaking: the path is decided and the refusal returned."""
    env = server.sandbox(make_config(base_path="/v1"))
    probe = await env.client(UNKNOWN_KEY).probe()
    assert probe.base_path == "/v1"
    assert probe.balance is None
    assert isinstance(probe.error, CastBrickCredentialsError)


async def test_probe_with_a_key_without_billing_scope(server: SharedServer) -> None:
    """An `Sms`-scoped key gets 403 on the balance: the path is decided, the key is valid."""
    env = server.sandbox()
    probe = await env.client(SMS_ONLY_KEY).probe()
    assert probe.base_path == ""
    assert isinstance(probe.error, CastBrickForbiddenError)
    assert probe.error.pauses_account is False


async def test_probe_fails_when_no_path_answers_as_castbrick(server: SharedServer) -> None:
    """Two 404s (or non-JSON pages) mean a wrong API URL: a permanent, pausing error."""
    client = server.canned(404, {"error": "NotFound", "message": "nope"}, base_path=None)
    with pytest.raises(CastBrickBasePathError) as caught:
        await client.probe()
    assert caught.value.pauses_account
    assert client.base_path is None


async def test_html_pages_are_not_castbrick(server: SharedServer) -> None:
    """A 200 that is not JSON (a website on the host) does not decide the base path."""
    client = server.canned(200, "<html>Welcome</html>", base_path=None)
    with pytest.raises(CastBrickBasePathError):
        await client.probe()


async def test_probe_that_cannot_judge_raises_the_transient_error(server: SharedServer) -> None:
    """A 503 on both candidates decides nothing: the transient error is raised, the path
    stays unknown and a send never left."""
    client = server.canned(503, {"error": "ServiceUnavailable", "message": "down"}, base_path=None)
    with pytest.raises(CastBrickUnavailableError) as caught:
        await client.send(AO, "x", sender_id=None, fallback=False)
    assert caught.value.outcome_unknown is False
    assert client.base_path is None


async def test_list_reads_pages_filters_and_both_spellings(server: SharedServer) -> None:
    """`GET /sms` filters by phone and pages; items read the SDK or the OpenAPI spelling."""
    for style in ("sdk", "openapi", "both"):
        env = server.sandbox(make_config(field_style=style, max_page_size=2))
        client = env.client(base_path="")
        for text in ("a", "b", "c"):
            await client.send(AO, text, sender_id=None, fallback=False)
        await client.send(AO_OTHER, "other", sender_id=None, fallback=False)
        first = await client.list_messages(phone=AO, page=1, page_size=100)
        assert first.page_size == 2
        assert first.more_after(1, 2) is True
        second = await client.list_messages(phone=AO, page=2, page_size=100)
        assert second.more_after(2, 2) is False
        items = [*first.items, *second.items]
        assert sorted(i.text or "" for i in items) == ["a", "b", "c"], style
        assert {i.phone for i in items} == {AO}
        assert all(i.key for i in items)
        assert first.unreadable == 0


async def test_balance_is_read_in_aoa(server: SharedServer) -> None:
    """`GET /billing/balance` → balance, threshold and alert address, currency AOA."""
    env = server.sandbox()
    balance = await env.client(base_path="").balance()
    assert (balance.balance, balance.currency, balance.low_balance_threshold) == (
        10_000.0,
        "AOA",
        500.0,
    )
    assert balance.alert_email == "alerts@example.invalid"


async def test_client_repr_hides_the_key(server: SharedServer) -> None:
    """Neither repr nor str of the client shows the key."""
    env = server.sandbox()
    client = env.client(base_path="")
    assert "cb_live" not in repr(client)
