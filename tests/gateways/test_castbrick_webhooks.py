"""Webhooks end to end: register_webhooks against the sandbox (idempotent), and the bodies the
sandbox pushes to a receiver on loopback parsed by the gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from castbridge.gateways.base import SendRequest, ValidationFailedError, WebhookEvent
from castbridge.gateways.castbrick import USED_EVENT_TYPES
from castbridge.sandbox.castbrick import DEFAULT_API_KEY
from tests.gateways.castbrick_support import (
    AO,
    CastBrickEnv,
    SharedServer,
    make_config,
    shared_server,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server() -> AsyncIterator[SharedServer]:
    async with shared_server() as shared:
        yield shared


def _instant(**overrides: Any) -> dict[str, Any]:
    """Statuses move at once, so reports are pushed right after the send."""
    return {"sent_after_seconds": 0.0, "final_after_seconds": 0.0, **overrides}


def _parse(env: CastBrickEnv, bodies: list[bytes]) -> list[WebhookEvent]:
    gateway = env.gateway(base_path="")
    return [event for body in bodies for event in gateway.parse_webhook(body, "application/json")]


async def test_register_creates_one_webhook_per_event_type(server: SharedServer) -> None:
    """Every event type castbridge uses is registered once for the URL."""
    env = server.sandbox()
    registered = await env.gateway(base_path="").register_webhooks(env.hook_url)
    assert [r.event_type for r in registered] == list(USED_EVENT_TYPES)
    assert {r.url for r in registered} == {env.hook_url}
    stored = {w.id: w for w in env.sandbox.webhooks.values()}
    assert {r.webhook_id for r in registered} == set(stored)
    assert all(w.is_active and w.api_key == DEFAULT_API_KEY for w in stored.values())


async def test_register_is_idempotent_and_reactivates(server: SharedServer) -> None:
    """A second registration lists first and creates nothing; a disabled registration is
    switched back on; another URL's registrations are left alone."""
    env = server.sandbox(make_config(max_page_size=3))
    gateway = env.gateway(base_path="")
    other = env.receiver.url + "/hooks/other"
    await gateway.register_webhooks(other)
    first = await gateway.register_webhooks(env.hook_url)
    victim = next(w for w in env.sandbox.webhooks.values() if w.endpoint == env.hook_url)
    victim.is_active = False
    again = await gateway.register_webhooks(env.hook_url)
    assert [r.webhook_id for r in again] == [r.webhook_id for r in first]
    assert len(env.sandbox.webhooks) == 2 * len(USED_EVENT_TYPES)
    assert victim.is_active
    assert env.sandbox.stats.calls["POST /webhooks"] == 2 * len(USED_EVENT_TYPES)


async def test_plain_http_urls_are_refused_before_any_call(server: SharedServer) -> None:
    """Only https:// (or loopback for development) may be registered: the URL's token is the
    only protection CastBrick's unsigned webhooks have."""
    env = server.sandbox()
    with pytest.raises(ValidationFailedError, match="https"):
        await env.gateway(base_path="").register_webhooks("http://example.com/hooks/t")
    assert env.sandbox.stats.requests == 0


async def test_delivery_reports_are_pushed_and_parsed(server: SharedServer) -> None:
    """After a send, SmsSent, SmsDelivered and DeliveryReceipt arrive; each parses to a status
    for the message the send returned, with distinct dedupe keys."""
    env = server.sandbox(make_config(**_instant()))
    gateway = env.gateway(base_path="")
    await gateway.register_webhooks(env.hook_url)
    result = await gateway.send(SendRequest(to_e164=AO, text="hi", reference="l:m"))
    # Each push is its own request, so arrival order is not guaranteed: compare sorted.
    events = sorted(_parse(env, await env.receiver.wait_for(3)), key=lambda e: e.event_type)
    assert [e.event_type for e in events] == ["DeliveryReceipt", "SmsDelivered", "SmsSent"]
    assert all(e.kind == "status" and e.status is not None for e in events)
    states = [(e.status.gateway_message_id, e.status.state) for e in events if e.status]
    assert states == [
        (result.gateway_message_id, "delivered"),
        (result.gateway_message_id, "delivered"),
        (result.gateway_message_id, "pending"),
    ]
    assert len({e.key for e in events}) == 3


async def test_failed_reports_and_other_shapes(server: SharedServer) -> None:
    """Flat bodies, the type under `type`, lower-case statuses: an undeliverable number still
    parses to a failure with CastBrick's reason."""
    config = make_config(
        **_instant(webhook_envelope=False, webhook_type_key="type", status_case="lower")
    )
    env = server.sandbox(config)
    gateway = env.gateway(base_path="")
    await gateway.register_webhooks(env.hook_url)
    await gateway.send(SendRequest(to_e164="+244923000404", text="hi", reference="l:m"))
    events = _parse(env, await env.receiver.wait_for(3))
    final = [e for e in events if e.event_type == "SmsFailed"]
    assert len(final) == 1
    assert final[0].status is not None
    assert (final[0].status.state, final[0].status.error_message) == (
        "failed",
        "Undeliverable: the handset is unreachable",
    )


async def test_retried_deliveries_dedupe_to_one_key(server: SharedServer) -> None:
    """The sandbox retries a non-2xx answer; both copies parse to the same key."""
    env = server.sandbox(make_config(**_instant(webhook_retry_delay=0.01)))
    gateway = env.gateway(base_path="")
    await gateway.register_webhooks(env.hook_url)
    env.receiver.fail_first = 1
    await gateway.send(SendRequest(to_e164=AO, text="retry me", reference="l:m"))
    await env.receiver.wait_for(4)
    await env.sandbox.pusher.drain(2.0)
    assert env.receiver.answers[0] == 500
    by_body: dict[bytes, int] = {}
    for body in env.receiver.bodies:
        by_body[body] = by_body.get(body, 0) + 1
    repeated = [body for body, n in by_body.items() if n == 2]
    assert len(repeated) == 1
    (first, second) = (_parse(env, [repeated[0]])[0], _parse(env, [repeated[0]])[0])
    assert first.key == second.key


async def test_replies_and_opt_outs_from_the_emitters(server: SharedServer) -> None:
    """`/_sandbox/inbound` and `/_sandbox/optout` post InboundMessage and OptOut events that
    parse to a reply and an opt-out; a later send to that number fails as opted out."""
    env = server.sandbox(make_config(**_instant()))
    gateway = env.gateway(base_path="")
    await gateway.register_webhooks(env.hook_url)
    reply = await env.http.post(
        env.url + "/_sandbox/inbound", json={"from": AO, "text": "Yes, Friday works"}
    )
    assert reply.status_code == 200
    optout = await env.http.post(env.url + "/_sandbox/optout", json={"phone": AO})
    assert optout.status_code == 200
    inbound, opted = sorted(_parse(env, await env.receiver.wait_for(2)), key=lambda e: e.kind)
    assert inbound.kind == "inbound"
    assert inbound.inbound is not None
    assert (inbound.inbound.from_number, inbound.inbound.text) == (AO, "Yes, Friday works")
    assert inbound.inbound.to_number == "+244923999999"
    assert opted.kind == "optout"
    assert opted.optout is not None
    assert (opted.optout.phone, opted.optout.opted_in) == (AO, False)
    result = await gateway.send(SendRequest(to_e164=AO, text="promo", reference="l:m2"))
    status = await gateway.status(result.gateway_message_id or "", to_e164=AO)
    assert (status.state, status.opted_out, status.error_code) == ("failed", True, "OPTED_OUT")


async def test_low_balance_is_ignored(server: SharedServer) -> None:
    """A send that takes the balance under its threshold posts LowBalance, parsed as ignored."""
    env = server.sandbox(make_config(**_instant()))
    env.sandbox.account(DEFAULT_API_KEY).balance = 505.0
    gateway = env.gateway(base_path="")
    await gateway.register_webhooks(env.hook_url)
    await gateway.send(SendRequest(to_e164=AO, text="hi", reference="l:m"))
    events = _parse(env, await env.receiver.wait_for(4))
    low = [e for e in events if e.event_type == "LowBalance"]
    assert len(low) == 1
    assert low[0].kind == "ignored"
